//! `ledger`: operators' tools for a ledger directory (`../shared/design/cli-contract.md`).
//!
//! `verify`, `inspect` and `dump` read the directory without taking its lock and
//! change nothing, so they run beside the process that owns it while it writes. They
//! reuse the engine's own decoders and checks (`ledger_store::inspect`,
//! `ledger_core::inspect`). Exit codes: 0 success (or clean), 1 damage found or a
//! transaction not found, 2 a usage error or a directory that cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ledger_cli::{Failure, Format, Status, backup, dump, inspect, verify};
use ledger_core::TxId;

/// Operators' tools for a ledger directory.
#[derive(Debug, Parser)]
#[command(name = "ledger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every log frame, checkpoint file and cold run file; exit 1 on damage.
    Verify {
        /// The ledger directory.
        dir: PathBuf,
    },
    /// Summarize the ledger, or print one transaction as JSON (`--tx`).
    Inspect {
        /// The ledger directory.
        dir: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// One transaction: 32 hex digits (high half, then low), or the low half in decimal.
        #[arg(long, value_name = "ID", value_parser = parse_tx_id)]
        tx: Option<TxId>,
    },
    /// Print the committed records in seq order.
    Dump {
        /// The ledger directory.
        dir: PathBuf,
        /// First seq to print (default: the first the log holds; the engine removes
        /// segments a kept checkpoint covers unless told to keep the whole log).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last seq to print (default: the last committed).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Copy DIR into DEST (new or empty), consistent as of one seq while the owner
    /// writes; verified after copying; prints the seq.
    Backup {
        /// The ledger directory.
        dir: PathBuf,
        /// Where the backup goes: a new or empty directory.
        dest: PathBuf,
    },
    /// Make DIR (new or empty) a ledger directory from a backup, cut at a seq if given.
    Restore {
        /// The backup (a directory `ledger backup` wrote).
        backup: PathBuf,
        /// The ledger directory to create: new or empty, else refused (exit 1).
        dir: PathBuf,
        /// Keep the log up to the end of the last whole commit group at or below this seq.
        #[arg(long, value_name = "N")]
        to_seq: Option<u64>,
    },
}

/// Parses a transaction id: exactly 32 hex digits (high half then low half, as the
/// 128-bit number is written), or the low half in decimal (high half 0).
fn parse_tx_id(text: &str) -> Result<TxId, String> {
    if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u128::from_str_radix(text, 16).map(TxId).map_err(|e| format!("{text:?}: {e}"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(|lo| TxId::from_parts(lo, 0))
            .map_err(|e| format!("{text:?}: not a 64-bit decimal low half ({e})"));
    }
    Err(format!("{text:?}: expected 32 hex digits (high half then low) or a decimal low half"))
}

/// Checks that `dir` is a directory that can be listed: otherwise a usage failure.
fn readable_dir(dir: &std::path::Path) -> Result<(), Failure> {
    let meta = std::fs::metadata(dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Failure::usage(format!("{}: not a directory", dir.display())));
    }
    std::fs::read_dir(dir).map_err(|e| Failure::usage(format!("{}: cannot list: {e}", dir.display())))?;
    Ok(())
}

fn run(cli: Cli) -> Result<Status, Failure> {
    match cli.command {
        Command::Verify { dir } => {
            readable_dir(&dir)?;
            verify::run(&dir)
        }
        Command::Inspect { dir, json, tx } => {
            readable_dir(&dir)?;
            match tx {
                Some(id) => inspect::transaction(&dir, id),
                None => inspect::summary(&dir, json),
            }
        }
        Command::Dump { dir, from, to, format } => {
            readable_dir(&dir)?;
            if let (Some(from), Some(to)) = (from, to)
                && to < from
            {
                return Err(Failure::usage(format!("--to {to} is below --from {from}")));
            }
            dump::run(&dir, from, to, format)
        }
        Command::Backup { dir, dest } => {
            readable_dir(&dir)?;
            backup::backup(&dir, &dest)
        }
        Command::Restore { backup, dir, to_seq } => {
            readable_dir(&backup)?;
            backup::restore(&backup, &dir, to_seq)
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's own status for them); --help and --version with 0.
    let cli = Cli::parse();
    match run(cli) {
        Ok(status) => ExitCode::from(status as u8),
        Err(Failure { status, message }) => {
            eprintln!("ledger: {message}");
            ExitCode::from(status as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_hex_or_decimal_low_half() {
        let hex = "0000000000000001000000000000002a";
        assert_eq!(parse_tx_id(hex), Ok(TxId::from_parts(42, 1)));
        assert_eq!(parse_tx_id("42"), Ok(TxId::from_parts(42, 0)));
        assert_eq!(parse_tx_id("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"), Ok(TxId(u128::MAX)));
        for bad in ["", "-1", "0x2a", "18446744073709551616", "abc", "0000000000000001000000000000002aa"] {
            assert!(parse_tx_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
