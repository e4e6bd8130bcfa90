//! The ledger's in-memory state and the one place where transactions are judged.
//!
//! The sequencer judges a group of commands against the committed [`State`] plus a
//! [`Group`] overlay that holds what earlier commands of the same group changed; only
//! after the group is durable is the overlay applied to the state that readers see.
//! Replay on open runs the very same code over the records of the log, so live
//! validation and recovery cannot disagree.

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::cold::{Ahead, Cold, Probe};
use crate::currency::Currency;
use crate::ledger::HistoryQuery;
use crate::model::{Balance, BatchSummary, Kind, Reject, Tx, TxId, TxOutcome, TxRecord, TxState};
use crate::records::{Records, Stored};

pub(crate) type Account = (u64, Currency);

/// Committed state. Readers see it through a lock the sequencer takes only to apply a
/// durable group (and a checkpoint, to swap tiers).
///
/// Transactions live in three tiers, newest first: `records` (committed since the last
/// checkpoint began, in memory), `frozen` (the tier a checkpoint is writing out, in
/// memory until its run is on disk) and `cold` (runs on disk). A lookup asks them in
/// that order and the first answer is the transaction as it stands now.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The hot tier.
    pub(crate) records: Records,
    /// The tier a checkpoint is writing out, if one is.
    pub(crate) frozen: Option<Arc<Records>>,
    /// The runs on disk.
    pub(crate) cold: Cold,
    /// Every batch; `batch_id` is the position + 1.
    pub(crate) batches: Vec<BatchSummary>,
    /// The open batch of each account that has one.
    pub(crate) open: HashMap<Account, u64>,
    /// Client -> its batch ids, oldest first.
    pub(crate) client_batches: HashMap<u64, Vec<u64>>,
    /// Running totals of each account (`open_net` is filled in on read).
    pub(crate) balances: HashMap<Account, Balance>,
    /// Seq and timestamp of the last record (transaction or batch close).
    pub(crate) last_seq: u64,
    pub(crate) last_ts: u64,
}

/// What the group changed, detached from the state it was judged against.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// New transactions, at positions `base_len..` in order.
    new: Vec<Stored>,
    /// The hash of each new transaction's id under the state's index hasher: computed
    /// once when it is judged, used by `new_index` and again when it is applied.
    new_hashes: Vec<u64>,
    /// Positions of the new transactions, by `new_hashes`, for lookups within the group.
    new_index: HashTable<u32>,
    /// Hot rows the group changed (payments captured, voided, refunded).
    modified: HashMap<u32, Stored>,
    /// Older transactions (frozen or cold, or already promoted) the group changed, hashed
    /// with the state's index hasher; applied as promoted rows of the hot tier.
    promoted: HashTable<Stored>,
    base_len: u32,
    /// Each account the group changed, as the group leaves it: one probe finds
    /// everything judging a transaction needs (its open batch and its balance).
    /// Keyed by `account_hasher`'s hash of the account, which judging computes once and
    /// commit reuses.
    accounts: HashTable<(Account, AccountChange)>,
    account_hasher: DefaultHashBuilder,
    /// Batches the group closed, as closed.
    closed: Vec<BatchSummary>,
    /// How many batches the group opened (their ids follow the state's last one).
    opened: u64,
    last_seq: u64,
    last_ts: u64,
}

/// One account as a group leaves it.
#[derive(Debug, Clone, Copy)]
struct AccountChange {
    /// The open batch with what the group counted in it; `None` when there is none.
    open: Option<BatchSummary>,
    balance: Balance,
}

/// A group being judged: the committed state plus this group's changes.
#[derive(Debug)]
pub(crate) struct Group<'s> {
    base: &'s State,
    changes: Changes,
}

/// Where a transaction found by id lives.
#[derive(Debug, Clone, Copy)]
enum Loc {
    /// A row of the hot tier, or new in this group: its position.
    Pos(u32),
    /// An older transaction (promoted, frozen or cold): changed by id.
    Older,
}

/// A transaction found by id: where it lives, its id's hash and its record.
#[derive(Debug, Clone, Copy)]
struct Payment {
    loc: Loc,
    hash: u64,
    record: TxRecord,
}

/// How an accepted transaction moves money.
#[derive(Debug, Clone, Copy)]
enum Effect {
    Sale,
    Authorize,
    Capture(Payment),
    Void(Payment),
    Refund(Payment),
    Adjust,
}

/// An accepted transaction, judged: how it moves money and, when it counts in a batch,
/// its account's batch and balance with it counted (computed once, while judging that
/// the sums fit, and stored as they are by [`Group::commit`]).
#[derive(Debug, Clone, Copy)]
struct Verdict {
    effect: Effect,
    counted: Option<Counted>,
}

/// An account's sums with one more transaction counted. `batch.batch_id` is 0 when the
/// account has no open batch: committing opens one.
#[derive(Debug, Clone, Copy)]
struct Counted {
    account: Account,
    /// The account's hash in the overlay.
    hash: u64,
    batch: BatchSummary,
    balance: Balance,
}

/// The batch close found nothing to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NothingToClose;

/// No commit time is left: the last record was committed at `u64::MAX` ns (a clock in
/// the year 2554, or a log written so). Commit times strictly increase, so nothing can
/// be committed after it: live, the group fails; on open, replay refuses the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no commit time is left after a record at u64::MAX ns")]
pub(crate) struct ClockExhausted;

/// How many transactions ahead of the one being judged the cold tier's lines are
/// prefetched (see [`State::prefetch`]).
pub(crate) const PREFETCH_AHEAD: usize = 32;

impl State {
    /// A group expected to hold about `commands` commands (sizes its overlay once).
    pub(crate) fn group(&self, commands: usize) -> Group<'_> {
        let base_len = u32::try_from(self.records.len()).expect("fewer than 2^32 transactions in memory");
        Group {
            base: self,
            changes: Changes {
                base_len,
                new: Vec::with_capacity(commands),
                new_hashes: Vec::with_capacity(commands),
                new_index: HashTable::with_capacity(commands),
                last_seq: self.last_seq,
                last_ts: self.last_ts,
                ..Changes::default()
            },
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Transactions committed, in every tier: every seq is a transaction or a batch
    /// close, and each closed batch was closed by one record.
    pub(crate) fn transaction_count(&self) -> usize {
        let closes = self.batches.iter().filter(|b| !b.is_open()).count() as u64;
        usize::try_from(self.last_seq - closes).unwrap_or(usize::MAX)
    }

    /// An older transaction as it stands now: promoted in the hot tier, else in the
    /// frozen tier, else in the runs. `hash` is the hot tier's hash of the id (the
    /// frozen tier hashes the same way).
    fn older(&self, id: TxId, hash: u64) -> Option<Stored> {
        self.records
            .promoted_hashed(id, hash)
            .or_else(|| self.frozen.as_ref().and_then(|f| f.get_hashed(id, hash)))
            .or_else(|| self.cold.get(id))
    }

    /// The transaction with this id as it stands now, from whichever tier has it.
    pub(crate) fn find_row(&self, id: TxId) -> Option<Stored> {
        let hash = self.records.hash(id);
        match self.records.find_hashed(id, hash) {
            Some(pos) => Some(self.records.row(pos)),
            None => self.older(id, hash),
        }
    }

    pub(crate) fn lookup(&self, id: TxId) -> Option<TxRecord> {
        self.find_row(id).map(|row| row.unpack())
    }

    /// Every transaction of every tier as it stands now, in seq order: linear in
    /// history, for checks (tests, the simulation, a full consistency check).
    pub(crate) fn all_records(&self) -> Vec<TxRecord> {
        let mut newest: HashMap<TxId, Stored> = HashMap::new();
        for run in self.cold.runs.iter().rev() {
            for pos in 0..run.table.len() {
                let row = run.row(pos);
                newest.insert(row.id(), row);
            }
        }
        for tier in self.frozen.as_deref().into_iter().chain(std::iter::once(&self.records)) {
            for row in tier.rows().iter().chain(tier.promoted()) {
                newest.insert(row.id(), *row);
            }
        }
        let mut out: Vec<TxRecord> = newest.into_values().map(|row| row.unpack()).collect();
        out.sort_unstable_by_key(|r| r.seq);
        out
    }

    /// Looks every id up once, for nothing but the cache: these lookups do not depend
    /// on each other, so the CPU overlaps their misses (judging one transaction at a
    /// time takes them one after another), and judging then finds the index lines, rows
    /// and the runs' Bloom blocks cached. Replay and the sequencer call it on a group
    /// before judging it.
    pub(crate) fn warm(&self, ids: impl Iterator<Item = TxId>) {
        for id in ids {
            let hash = self.records.hash(id);
            self.records.warm_hashed(id, hash);
            if let Some(frozen) = &self.frozen {
                frozen.warm_hashed(id, hash);
            }
        }
    }

    /// The cold tier's part of warming, as a software pipeline over a group's ids (each
    /// transaction's own and the payment it refers to), in stages `PREFETCH_AHEAD`
    /// transactions apart: while transaction `i` is judged, the block of the filter over
    /// all ids starts loading for `i + 4 * PREFETCH_AHEAD`; for `i + 3 * PREFETCH_AHEAD`,
    /// whose block has arrived by then, the runs' Bloom blocks if that filter admits the
    /// id (few do: most ids are new); for `i + 2 * PREFETCH_AHEAD` the run entry its
    /// search reads first, and for `i + PREFETCH_AHEAD` the second (the search's probes
    /// depend on each other: staged, their misses overlap with other ids' instead of
    /// following one another when the id is judged). None of these loads waits, so the
    /// misses of a few hundred lookups are in flight together, and the working set
    /// stays small enough to be cached when judging reaches it (warming a whole group
    /// at once fetched megabytes, and the first lines were evicted again before they
    /// were used).
    pub(crate) fn prefetch(&self, ahead: &[Ahead], judging: usize) {
        if self.cold.runs.is_empty() {
            return;
        }
        let each = |(id, ref_id): &Ahead, f: &dyn Fn(&Probe)| {
            f(id);
            if let Some(ref_id) = ref_id {
                f(ref_id);
            }
        };
        type Stage<'a> = &'a dyn Fn(&Probe);
        let stages: [(usize, Stage<'_>); 4] = [
            (4 * PREFETCH_AHEAD, &|id| self.cold.prefetch_ids(id)),
            (3 * PREFETCH_AHEAD, &|id| self.cold.prefetch_blooms(id)),
            (2 * PREFETCH_AHEAD, &|id| self.cold.prefetch_probe(id, 1)),
            (PREFETCH_AHEAD, &|id| self.cold.prefetch_probe(id, 2)),
        ];
        for (distance, stage) in stages {
            if judging == 0 {
                // The pipeline fills: the first stretch of every stage.
                for at in ahead.iter().take(distance) {
                    each(at, stage);
                }
            }
            if let Some(at) = ahead.get(judging + distance) {
                each(at, stage);
            }
        }
    }

    /// The client's transactions the query asks for (seqs, commit times), oldest first
    /// or newest first, at most its limit, each as it stands now. Cost: each tier gives
    /// at most `limit` candidates (binary searches in the runs' client index), then each
    /// of the page's transactions is looked up: proportional to the page, not to the
    /// client's history.
    pub(crate) fn history(&self, client_id: u64, query: &HistoryQuery) -> Vec<TxRecord> {
        if query.limit == 0 || query.seqs.is_empty() || query.times.is_empty() {
            return Vec::new();
        }
        let mut candidates: Vec<(u64, TxId)> = Vec::new();
        let tiers = std::iter::once(&self.records).chain(self.frozen.as_deref());
        for tier in tiers {
            candidates.extend(tier.client_rows(client_id, query).iter().map(|r| (r.seq, r.id())));
        }
        self.cold.client_candidates(client_id, query, &mut candidates);
        if query.newest_first {
            candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        } else {
            candidates.sort_unstable_by_key(|c| c.0);
        }
        candidates.dedup_by_key(|c| c.0); // a promoted transaction is in two tiers at one seq
        candidates.truncate(query.limit);
        candidates.into_iter().filter_map(|(_, id)| self.lookup(id)).collect()
    }

    /// The captures, voids and refunds of `payment`, in seq order, each as committed:
    /// from each tier's ref index, never a scan of history.
    pub(crate) fn follow_ups(&self, payment: TxId) -> Vec<TxRecord> {
        let mut found: Vec<Stored> = self.records.follow_ups(payment).collect();
        if let Some(frozen) = &self.frozen {
            found.extend(frozen.follow_ups(payment));
        }
        let mut candidates = Vec::new();
        self.cold.follow_up_candidates(crate::checkpoint::ref_group(payment), &mut candidates);
        let cold = candidates.into_iter().filter_map(|(_, id)| self.find_row(id)).filter(|r| r.ref_id() == payment);
        found.extend(cold);
        found.sort_unstable_by_key(|r| r.seq);
        found.dedup_by_key(|r| r.seq);
        found.into_iter().map(|r| r.unpack()).collect()
    }

    /// The client's transactions with `seq > after_seq`, oldest first, at most `limit`.
    pub(crate) fn list(&self, client_id: u64, after_seq: u64, limit: usize) -> Vec<TxRecord> {
        let query = HistoryQuery { seqs: after_seq.saturating_add(1)..u64::MAX, ..HistoryQuery::oldest_first(limit) };
        self.history(client_id, &query)
    }

    pub(crate) fn batch(&self, batch_id: u64) -> Option<BatchSummary> {
        let index = usize::try_from(batch_id.checked_sub(1)?).ok()?;
        self.batches.get(index).copied()
    }

    /// The client's batches with `batch_id > after_id`, oldest first, at most `limit`.
    pub(crate) fn batches_of(&self, client_id: u64, after_id: u64, limit: usize) -> Vec<BatchSummary> {
        let Some(ids) = self.client_batches.get(&client_id) else { return Vec::new() };
        let start = ids.partition_point(|&id| id <= after_id);
        ids[start..].iter().take(limit).filter_map(|&id| self.batch(id)).collect()
    }

    pub(crate) fn open_batch(&self, client_id: u64, currency: Currency) -> Option<BatchSummary> {
        self.open.get(&(client_id, currency)).and_then(|&id| self.batch(id))
    }

    /// Accounts whose open batch was opened before `cutoff_ns`, in a stable order.
    pub(crate) fn open_batches_opened_before(&self, cutoff_ns: u64) -> Vec<Account> {
        let mut out: Vec<(u64, Account)> = self
            .open
            .iter()
            .filter_map(|(&account, &id)| self.batch(id).filter(|b| b.opened_ns < cutoff_ns).map(|_| (id, account)))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, account)| account).collect()
    }

    pub(crate) fn balance(&self, client_id: u64, currency: Currency) -> Option<Balance> {
        let mut balance = *self.balances.get(&(client_id, currency))?;
        balance.open_net = self.open_batch(client_id, currency).map_or(0, |b| b.net);
        Some(balance)
    }

    /// The currencies in which the client has a balance, in code order.
    pub(crate) fn currencies_of(&self, client_id: u64) -> Vec<Currency> {
        let mut out: Vec<Currency> =
            self.balances.keys().filter(|(c, _)| *c == client_id).map(|(_, cur)| *cur).collect();
        out.sort();
        out
    }

    /// Makes a durable group's changes visible.
    pub(crate) fn apply(&mut self, changes: Changes) {
        assert_eq!(changes.base_len as usize, self.records.len(), "a group applies to the state it was judged on");
        for (pos, row) in changes.modified {
            self.records.set(pos, row);
        }
        for row in changes.promoted {
            let hash = self.records.hash(row.id());
            self.records.promote(row, hash);
        }
        if let (Some(row), Some(&hash)) = (changes.new.first(), changes.new_hashes.first()) {
            // The hashes were computed with the hasher of the state judged on; this is it.
            assert_eq!(hash, self.records.hash(row.id()), "a group applies to the state it was judged on");
        }
        for (row, hash) in changes.new.into_iter().zip(changes.new_hashes) {
            self.records.push_hashed(row, hash);
        }
        let known = self.batches.len() as u64;
        // Every batch the group touched appears once: closed, or open in its account.
        let mut new_batches = Vec::with_capacity(usize::try_from(changes.opened).unwrap_or(0));
        let touched = changes.closed.iter().chain(changes.accounts.iter().filter_map(|(_, a)| a.open.as_ref()));
        for batch in touched {
            if batch.batch_id <= known {
                self.batches[batch_index(batch.batch_id)] = *batch;
            } else {
                new_batches.push(*batch);
            }
        }
        assert_eq!(new_batches.len() as u64, changes.opened, "every batch the group opened is applied");
        new_batches.sort_unstable_by_key(|b| b.batch_id);
        for batch in new_batches {
            assert_eq!(batch.batch_id, self.batches.len() as u64 + 1, "batch ids are dense");
            self.batches.push(batch);
            self.client_batches.entry(batch.client_id).or_default().push(batch.batch_id);
        }
        for (account, change) in changes.accounts {
            match change.open {
                Some(batch) => self.open.insert(account, batch.batch_id),
                None => self.open.remove(&account),
            };
            self.balances.insert(account, change.balance);
        }
        assert!(changes.last_seq >= self.last_seq && changes.last_ts >= self.last_ts);
        self.last_seq = changes.last_seq;
        self.last_ts = changes.last_ts;
    }
}

impl Group<'_> {
    /// Detaches the changes from the state they were judged against.
    pub(crate) fn into_changes(self) -> Changes {
        self.changes
    }

    /// The row at `pos` (hot or new) as this group sees it.
    fn row(&self, pos: u32) -> Stored {
        match pos.checked_sub(self.changes.base_len) {
            Some(new) => self.changes.new[new as usize],
            None => self.changes.modified.get(&pos).copied().unwrap_or_else(|| self.base.records.row(pos)),
        }
    }

    fn set_row(&mut self, loc: Loc, hash: u64, row: Stored) {
        match loc {
            Loc::Pos(pos) => match pos.checked_sub(self.changes.base_len) {
                Some(new) => self.changes.new[new as usize] = row,
                None => {
                    self.changes.modified.insert(pos, row);
                }
            },
            Loc::Older => {
                let Changes { promoted, .. } = &mut self.changes;
                match promoted.find_mut(hash, |s| s.id() == row.id()) {
                    Some(slot) => *slot = row,
                    None => {
                        // Every entry was inserted with its hash: nothing is rehashed wrongly.
                        let base = self.base;
                        promoted.insert_unique(hash, row, |s| base.records.hash(s.id()));
                    }
                }
            }
        }
    }

    /// Where the transaction with this id lives and its row as this group sees it;
    /// `hash` is the state's hash of it.
    fn find(&self, id: TxId, hash: u64) -> Option<(Loc, Stored)> {
        let Changes { new, new_index, base_len, promoted, .. } = &self.changes;
        if let Some(&p) = new_index.find(hash, |&p| new[(p - base_len) as usize].id() == id) {
            return Some((Loc::Pos(p), new[(p - base_len) as usize]));
        }
        if let Some(pos) = self.base.records.find_hashed(id, hash) {
            return Some((Loc::Pos(pos), self.row(pos)));
        }
        if let Some(row) = promoted.find(hash, |s| s.id() == id) {
            return Some((Loc::Older, *row));
        }
        self.base.older(id, hash).map(|row| (Loc::Older, row))
    }

    fn tx(&self, id: TxId) -> Option<Payment> {
        self.tx_hashed(id, self.base.records.hash(id))
    }

    fn tx_hashed(&self, id: TxId, hash: u64) -> Option<Payment> {
        self.find(id, hash).map(|(loc, row)| Payment { loc, hash, record: row.unpack() })
    }

    /// The account as this group sees it: its open batch and its balance.
    fn account_hash(&self, account: Account) -> u64 {
        self.changes.account_hasher.hash_one(account)
    }

    /// The account as this group sees it; `hash` is its [`Group::account_hash`].
    fn account(&self, account: Account, hash: u64) -> AccountChange {
        let changed = self.changes.accounts.find(hash, |(a, _)| *a == account);
        changed.map(|&(_, change)| change).unwrap_or_else(|| AccountChange {
            open: self.base.open.get(&account).map(|&id| self.base.batch(id).expect("an open batch exists")),
            balance: self.base.balances.get(&account).copied().unwrap_or_default(),
        })
    }

    /// Records the account as the group now leaves it; `hash` is its [`Group::account_hash`].
    fn set_account(&mut self, account: Account, hash: u64, change: AccountChange) {
        let Changes { accounts, account_hasher, .. } = &mut self.changes;
        match accounts.find_mut(hash, |(a, _)| *a == account) {
            Some((_, slot)) => *slot = change,
            None => {
                accounts.insert_unique(hash, (account, change), |(a, _)| account_hasher.hash_one(*a));
            }
        }
    }

    fn next_batch_id(&self) -> u64 {
        self.base.batches.len() as u64 + self.changes.opened + 1
    }

    /// The open batch of an account as this group sees it.
    pub(crate) fn open_batch(&self, client_id: u64, currency: Currency) -> Option<BatchSummary> {
        let account = (client_id, currency);
        self.account(account, self.account_hash(account)).open
    }

    /// The commit time of a record committed now: `now_ns`, or just after the previous
    /// record's, whichever is later (so a clock step backwards never reorders them).
    fn next_timestamp(&self, now_ns: u64) -> Result<u64, ClockExhausted> {
        self.changes.last_ts.checked_add(1).map(|next| now_ns.max(next)).ok_or(ClockExhausted)
    }

    /// Judges `tx` and, if accepted, records it at `seq` with a commit time of
    /// `now_ns` or just after the previous record's, whichever is later.
    pub(crate) fn submit(&mut self, tx: &Tx, seq: u64, now_ns: u64) -> Result<TxOutcome, ClockExhausted> {
        if tx.id.is_none() || tx.client_id == 0 {
            return Ok(TxOutcome::Rejected(Reject::InvalidKind));
        }
        let hash = self.base.records.hash(tx.id);
        if let Some(Payment { record: existing, .. }) = self.tx_hashed(tx.id, hash) {
            return Ok(if existing.tx == *tx {
                TxOutcome::Exists(existing)
            } else {
                TxOutcome::Rejected(Reject::ExistsWithDifferentFields)
            });
        }
        Ok(match self.judge(tx) {
            Ok(verdict) => {
                let ts = self.next_timestamp(now_ns)?;
                TxOutcome::Committed(self.commit(tx, hash, verdict, seq, ts))
            }
            Err(reject) => TxOutcome::Rejected(reject),
        })
    }

    fn judge(&self, tx: &Tx) -> Result<Verdict, Reject> {
        let kind = tx.kind().ok_or(Reject::InvalidKind)?;
        let auth_only = tx.flags & Tx::AUTH_ONLY != 0;
        if tx.flags & !Tx::KNOWN_FLAGS != 0 || (auth_only && kind != Kind::Payment) {
            return Err(Reject::InvalidKind);
        }
        if kind.has_ref() == tx.ref_id.is_none() {
            return Err(Reject::InvalidKind); // a ref missing where one belongs, or present where none does
        }
        let currency = tx.currency().ok_or(Reject::InvalidCurrency)?;
        let amount_ok = match kind {
            Kind::Payment | Kind::Capture | Kind::Refund => tx.amount > 0,
            Kind::Void => tx.amount == 0,
            Kind::Adjustment => tx.amount != 0,
        };
        if !amount_ok {
            return Err(Reject::InvalidAmount);
        }
        let effect = match kind {
            Kind::Payment if auth_only => Effect::Authorize,
            Kind::Payment => Effect::Sale,
            Kind::Adjustment => Effect::Adjust,
            Kind::Capture | Kind::Void | Kind::Refund => {
                let found = self
                    .tx(tx.ref_id)
                    .filter(|p| p.record.tx.client_id == tx.client_id) // another client's payment does not exist here
                    .ok_or(Reject::RefNotFound)?;
                let payment = found.record;
                if payment.tx.kind != Kind::Payment as u32 {
                    return Err(Reject::RefWrongState);
                }
                if payment.tx.currency != tx.currency {
                    return Err(Reject::CurrencyMismatch);
                }
                match kind {
                    Kind::Capture => {
                        if payment.state != TxState::Authorized {
                            return Err(Reject::RefWrongState);
                        }
                        if tx.amount > payment.tx.amount {
                            return Err(Reject::ExceedsRefAmount);
                        }
                        Effect::Capture(found)
                    }
                    Kind::Void => {
                        if payment.state != TxState::Authorized {
                            return Err(Reject::RefWrongState);
                        }
                        Effect::Void(found)
                    }
                    _ => {
                        if !matches!(payment.state, TxState::Captured | TxState::PartiallyRefunded | TxState::Refunded)
                        {
                            return Err(Reject::RefWrongState);
                        }
                        // A sum that would leave i64 is InvalidAmount (the contract), even though it
                        // would also exceed the captured amount.
                        let refunded = payment.refunded.checked_add(tx.amount).ok_or(Reject::InvalidAmount)?;
                        if refunded > payment.captured {
                            return Err(Reject::ExceedsRefAmount);
                        }
                        Effect::Refund(found)
                    }
                }
            }
        };
        // Every sum the transaction changes must stay inside i64: overflow is a
        // rejection, never a wrap.
        let counted = if counts_in_batch(effect) {
            let account = (tx.client_id, currency);
            let hash = self.account_hash(account);
            let AccountChange { open, balance } = self.account(account, hash);
            let batch = open.unwrap_or_else(|| empty_batch(account)); // batch_id 0: commit opens one
            let batch = add_to_batch(batch, effect, tx.amount).ok_or(Reject::InvalidAmount)?;
            let balance = add_to_balance(balance, effect, tx.amount).ok_or(Reject::InvalidAmount)?;
            Some(Counted { account, hash, batch, balance })
        } else {
            None
        };
        Ok(Verdict { effect, counted })
    }

    /// Records a judged transaction. The sums judging computed are stored as they are,
    /// so the account's overlay entries are looked up once per transaction, not twice.
    fn commit(&mut self, tx: &Tx, hash: u64, verdict: Verdict, seq: u64, ts: u64) -> TxRecord {
        assert!(seq > self.changes.last_seq && ts > self.changes.last_ts, "seq and commit time must increase");
        let Verdict { effect, counted } = verdict;
        let mut batch_id = 0;
        if let Some(Counted { account, hash, mut batch, balance }) = counted {
            if batch.batch_id == 0 {
                batch.batch_id = self.next_batch_id();
                batch.first_seq = seq;
                batch.opened_ns = ts;
                self.changes.opened += 1;
            }
            batch.last_seq = seq;
            batch_id = batch.batch_id;
            self.set_account(account, hash, AccountChange { open: Some(batch), balance });
        }
        let applied =
            TxRecord { tx: *tx, seq, batch_id, timestamp_ns: ts, state: TxState::Applied, captured: 0, refunded: 0 };
        let record = match effect {
            Effect::Sale => TxRecord { state: TxState::Captured, captured: tx.amount, ..applied },
            Effect::Authorize => TxRecord { state: TxState::Authorized, ..applied },
            Effect::Adjust => applied,
            Effect::Capture(Payment { loc, hash, record: p }) => {
                let payment = TxRecord { state: TxState::Captured, captured: tx.amount, batch_id, ..p };
                self.set_row(loc, hash, Stored::pack(&payment));
                applied
            }
            Effect::Void(Payment { loc, hash, record: p }) => {
                self.set_row(loc, hash, Stored::pack(&TxRecord { state: TxState::Voided, ..p }));
                applied
            }
            Effect::Refund(Payment { loc, hash, record: p }) => {
                let refunded = p.refunded + tx.amount; // judged: fits, and <= captured
                let state = if refunded == p.captured { TxState::Refunded } else { TxState::PartiallyRefunded };
                self.set_row(loc, hash, Stored::pack(&TxRecord { refunded, state, ..p }));
                applied
            }
        };
        let pos = self.changes.base_len + u32::try_from(self.changes.new.len()).expect("a group holds < 2^32 records");
        let Changes { new, new_hashes, new_index, base_len, .. } = &mut self.changes;
        new.push(Stored::pack(&record));
        new_hashes.push(hash);
        new_index.insert_unique(hash, pos, |&p| new_hashes[(p - *base_len) as usize]);
        self.changes.last_seq = seq;
        self.changes.last_ts = ts;
        record
    }

    /// Closes the account's open batch at `seq`; later transactions count in a new one.
    pub(crate) fn close_batch(
        &mut self,
        client_id: u64,
        currency: Currency,
        seq: u64,
        now_ns: u64,
    ) -> Result<Result<BatchSummary, NothingToClose>, ClockExhausted> {
        let account = (client_id, currency);
        let hash = self.account_hash(account);
        let AccountChange { open, mut balance } = self.account(account, hash);
        let Some(mut batch) = open else {
            return Ok(Err(NothingToClose));
        };
        assert!(seq > self.changes.last_seq, "seq must increase");
        let ts = self.next_timestamp(now_ns)?;
        batch.closed_ns = ts;
        self.changes.closed.push(batch);
        // settled + open = net, and net fits: this cannot overflow.
        balance.settled_net = balance.settled_net.checked_add(batch.net).expect("settled net fits: it is at most net");
        self.set_account(account, hash, AccountChange { open: None, balance });
        self.changes.last_seq = seq;
        self.changes.last_ts = ts;
        Ok(Ok(batch))
    }
}

/// Position of a batch in `State::batches`.
fn batch_index(batch_id: u64) -> usize {
    usize::try_from(batch_id - 1).expect("batch ids count batches held in memory")
}

fn counts_in_batch(effect: Effect) -> bool {
    matches!(effect, Effect::Sale | Effect::Capture(_) | Effect::Refund(_) | Effect::Adjust)
}

fn empty_batch((client_id, currency): Account) -> BatchSummary {
    BatchSummary {
        batch_id: 0,
        client_id,
        currency,
        first_seq: 0,
        last_seq: 0,
        opened_ns: 0,
        closed_ns: 0,
        payment_count: 0,
        payment_total: 0,
        refund_count: 0,
        refund_total: 0,
        adjustment_count: 0,
        adjustment_total: 0,
        net: 0,
    }
}

/// The batch with one more transaction, or `None` if a sum would overflow.
fn add_to_batch(mut b: BatchSummary, effect: Effect, amount: i64) -> Option<BatchSummary> {
    match effect {
        Effect::Sale | Effect::Capture(_) => {
            b.payment_count += 1;
            b.payment_total = b.payment_total.checked_add(amount)?;
            b.net = b.net.checked_add(amount)?;
        }
        Effect::Refund(_) => {
            b.refund_count += 1;
            b.refund_total = b.refund_total.checked_add(amount)?;
            b.net = b.net.checked_sub(amount)?;
        }
        Effect::Adjust => {
            b.adjustment_count += 1;
            b.adjustment_total = b.adjustment_total.checked_add(amount)?;
            b.net = b.net.checked_add(amount)?;
        }
        Effect::Authorize | Effect::Void(_) => {}
    }
    Some(b)
}

/// The balance with one more transaction, or `None` if a sum would overflow.
fn add_to_balance(mut b: Balance, effect: Effect, amount: i64) -> Option<Balance> {
    match effect {
        Effect::Sale | Effect::Capture(_) => {
            b.captured = b.captured.checked_add(amount)?;
            b.net = b.net.checked_add(amount)?;
        }
        Effect::Refund(_) => {
            b.refunded = b.refunded.checked_add(amount)?;
            b.net = b.net.checked_sub(amount)?;
        }
        Effect::Adjust => {
            b.adjusted = b.adjusted.checked_add(amount)?;
            b.net = b.net.checked_add(amount)?;
        }
        Effect::Authorize | Effect::Void(_) => {}
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD")
    }

    #[test]
    fn ids_judged_in_a_group_are_found_in_it_and_after_apply() {
        let mut state = State::default();
        let mut group = state.group(2);
        let sale = Tx::sale(TxId(7), 1, 100, usd());
        assert!(matches!(group.submit(&sale, 1, 10), Ok(TxOutcome::Committed(_))));
        assert!(matches!(group.submit(&sale, 2, 11), Ok(TxOutcome::Exists(_))), "found in the overlay");
        let refund = Tx::refund(TxId(8), TxId(7), 1, 40, usd());
        assert!(matches!(group.submit(&refund, 2, 11), Ok(TxOutcome::Committed(_))));
        let changes = group.into_changes();
        state.apply(changes);
        assert_eq!(state.lookup(TxId(7)).map(|r| r.refunded), Some(40), "found in the index after apply");
        let mut group = state.group(1);
        assert!(matches!(group.submit(&refund, 3, 12), Ok(TxOutcome::Exists(_))), "found in the state");
    }

    #[test]
    fn batches_opened_closed_and_reopened_in_one_group_apply_in_id_order() {
        let mut state = State::default();
        let mut group = state.group(4);
        let sale = |id, client| Tx::sale(TxId(id), client, 100, usd());
        assert!(matches!(group.submit(&sale(1, 1), 1, 10), Ok(TxOutcome::Committed(r)) if r.batch_id == 1));
        assert!(matches!(group.submit(&sale(2, 2), 2, 11), Ok(TxOutcome::Committed(r)) if r.batch_id == 2));
        assert!(matches!(group.close_batch(1, usd(), 3, 12), Ok(Ok(b)) if b.batch_id == 1 && b.closed_ns == 12));
        assert_eq!(group.close_batch(1, usd(), 4, 13), Ok(Err(NothingToClose)));
        assert!(matches!(group.submit(&sale(3, 1), 4, 13), Ok(TxOutcome::Committed(r)) if r.batch_id == 3));
        assert_eq!(group.open_batch(1, usd()).map(|b| b.batch_id), Some(3));
        state.apply(group.into_changes());
        let ids: Vec<(u64, u64, u64)> = state.batches.iter().map(|b| (b.batch_id, b.client_id, b.closed_ns)).collect();
        assert_eq!(ids, [(1, 1, 12), (2, 2, 0), (3, 1, 0)]);
        assert_eq!(state.open_batch(1, usd()).map(|b| b.batch_id), Some(3));
        let balance = state.balance(1, usd()).expect("client 1 has a balance");
        assert_eq!((balance.net, balance.settled_net, balance.open_net), (200, 100, 100));

        // A later group changes a batch the state already holds, in place.
        let mut group = state.group(2);
        assert!(matches!(group.submit(&sale(4, 2), 5, 14), Ok(TxOutcome::Committed(r)) if r.batch_id == 2));
        assert!(matches!(group.close_batch(2, usd(), 6, 15), Ok(Ok(b)) if b.payment_total == 200));
        state.apply(group.into_changes());
        assert_eq!(state.batches.len(), 3);
        assert_eq!(state.batch(2).map(|b| (b.payment_count, b.closed_ns)), Some((2, 15)));
        assert_eq!(state.open_batch(2, usd()), None);
        assert_eq!(state.balance(2, usd()).map(|b| b.settled_net), Some(200));
    }

    #[test]
    #[should_panic(expected = "a group applies to the state it was judged on")]
    fn a_group_applies_only_to_the_state_it_was_judged_on() {
        // Same length, different index hasher: the ids' carried hashes would not find them.
        let judged_on = State::default();
        let mut other = State::default();
        let mut group = judged_on.group(1);
        assert!(matches!(group.submit(&Tx::sale(TxId(1), 1, 100, usd()), 1, 10), Ok(TxOutcome::Committed(_))));
        other.apply(group.into_changes());
    }
}
