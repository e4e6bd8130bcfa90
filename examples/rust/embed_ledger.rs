//! Embedding the ledger engine in a Rust service: open, take payments from several
//! threads, refund, capture an authorization, close the day's batch, read balances,
//! and reopen to show that everything acknowledged is there.
//!
//! `cargo run --release -p ledger-core --example embed_ledger -- [DIR]`
//! (DIR defaults to a fresh temporary directory.)

use std::sync::Arc;
use std::time::Instant;

use ledger_core::money::{format_minor, parse_minor};
use ledger_core::{Currency, Ledger, LedgerOptions, Tx, TxId, TxOutcome};

const MERCHANT: u64 = 42;
const THREADS: u64 = 4;
const SALES_PER_THREAD: u64 = 25_000;
const CALL_TXS: usize = 250;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let usd = Currency::from_code("USD").ok_or("USD is a known currency")?;

    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    println!("opened {} ({} transactions replayed)", dir.display(), ledger.open_report().transactions);
    let base = ledger.last_seq() as u128 * 1_000_000; // fresh ids on every run over the same DIR

    // Several threads submit sales at once; the sequencer commits them in groups, one
    // sync per group. Amounts come in as decimal strings, as from an API.
    let price = parse_minor("12.34", usd)?;
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || -> Result<u64, ledger_core::SubmitError> {
                let mut committed = 0;
                let ids: Vec<u128> =
                    (0..SALES_PER_THREAD).map(|i| base + u128::from(t * SALES_PER_THREAD + i) + 1).collect();
                for chunk in ids.chunks(CALL_TXS) {
                    let txs: Vec<Tx> =
                        chunk.iter().map(|&id| Tx::sale(TxId(id), MERCHANT, price, usd).with_device(t + 1)).collect();
                    committed +=
                        ledger.submit(&txs)?.iter().filter(|o| matches!(o, TxOutcome::Committed(_))).count() as u64;
                }
                Ok(committed)
            })
        })
        .collect();
    let mut committed = 0;
    for worker in workers {
        committed += worker.join().map_err(|_| "a worker panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{committed} sales committed durably by {THREADS} threads in {secs:.2} s ({:.0} tx/s)",
        committed as f64 / secs
    );

    // A refund, an authorization captured for less, and an idempotent retry.
    let first_sale = TxId(base + 1);
    let auth = TxId(base + 10_000_000);
    let outcomes = ledger.submit(&[
        Tx::refund(TxId(base + 10_000_001), first_sale, MERCHANT, parse_minor("2.34", usd)?, usd),
        Tx::authorization(auth, MERCHANT, parse_minor("50", usd)?, usd),
        Tx::capture(TxId(base + 10_000_002), auth, MERCHANT, parse_minor("45.50", usd)?, usd),
    ])?;
    assert!(outcomes.iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    let retry = ledger.submit(&[Tx::sale(first_sale, MERCHANT, price, usd).with_device(1)])?;
    println!("retrying the first sale: {:?}", retry[0].code()); // 1: exists, nothing changed

    let batch = ledger.close_batch(MERCHANT, usd)?;
    println!(
        "closed batch {}: {} payments {} USD, {} refunds {} USD, net {} USD",
        batch.batch_id,
        batch.payment_count,
        format_minor(batch.payment_total, usd),
        batch.refund_count,
        format_minor(batch.refund_total, usd),
        format_minor(batch.net, usd)
    );
    let before = ledger.balance(MERCHANT, usd).ok_or("a balance exists")?;
    ledger.close()?;
    drop(ledger);

    // Everything acknowledged is there after reopening.
    let ledger = Arc::new(Ledger::open(&dir, LedgerOptions::default())?);
    let after = ledger.balance(MERCHANT, usd).ok_or("a balance exists")?;
    assert_eq!(before, after);
    println!(
        "reopened: settled {} USD, open {} USD, {} transactions in memory",
        format_minor(after.settled_net, usd),
        format_minor(after.open_net, usd),
        ledger.transaction_count()
    );
    Ok(())
}
