//! The ledger's vocabulary: ids, kinds, transactions as submitted and as committed,
//! outcomes, batch summaries and balances. The numeric values are those of the C ABI
//! contract (`shared/design/ffi-contract.md`).

use crate::currency::Currency;

/// A caller-chosen 128-bit transaction id; it is the idempotency key. Zero is never valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TxId(pub u128);

impl TxId {
    /// The "no id" value, used as the ref of transactions that refer to none.
    pub const NONE: TxId = TxId(0);

    /// From the C ABI's halves.
    pub const fn from_parts(lo: u64, hi: u64) -> TxId {
        TxId(((hi as u128) << 64) | lo as u128)
    }

    /// The low 64 bits.
    #[allow(clippy::cast_possible_truncation)] // taking the low half is the point
    pub const fn lo(self) -> u64 {
        self.0 as u64
    }

    /// The high 64 bits.
    pub const fn hi(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// True for the zero id.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// A sale (captured at once) or, with [`Tx::AUTH_ONLY`], an authorization. Amount > 0.
    Payment = 1,
    /// Captures an authorized payment (`ref_id`), once; 0 < amount <= authorized.
    Capture = 2,
    /// Voids an authorized, uncaptured payment (`ref_id`); amount = 0.
    Void = 3,
    /// Refunds a captured payment (`ref_id`); the sum of its refunds <= captured.
    Refund = 4,
    /// A non-zero amount of either sign; no ref.
    Adjustment = 5,
}

impl Kind {
    /// The kind with this C ABI code.
    pub fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Payment,
            2 => Kind::Capture,
            3 => Kind::Void,
            4 => Kind::Refund,
            5 => Kind::Adjustment,
            _ => return None,
        })
    }

    /// Whether this kind refers to a payment through `ref_id`.
    pub fn has_ref(self) -> bool {
        matches!(self, Kind::Capture | Kind::Void | Kind::Refund)
    }
}

/// Status of a stored transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TxState {
    /// A payment authorized and not (yet) captured or voided.
    Authorized = 1,
    /// A payment captured (at once as a sale, or by a capture), not refunded.
    Captured = 2,
    /// A captured payment with refunds below its captured amount.
    PartiallyRefunded = 3,
    /// A captured payment refunded in full.
    Refunded = 4,
    /// An authorization voided.
    Voided = 5,
    /// Captures, voids, refunds and adjustments.
    Applied = 6,
}

impl TxState {
    /// The state's name as the tools and the portal's API spell it.
    pub fn name(self) -> &'static str {
        match self {
            TxState::Authorized => "authorized",
            TxState::Captured => "captured",
            TxState::PartiallyRefunded => "partially_refunded",
            TxState::Refunded => "refunded",
            TxState::Voided => "voided",
            TxState::Applied => "applied",
        }
    }

    /// The state with this C ABI code.
    pub fn from_code(code: u32) -> Option<TxState> {
        Some(match code {
            1 => TxState::Authorized,
            2 => TxState::Captured,
            3 => TxState::PartiallyRefunded,
            4 => TxState::Refunded,
            5 => TxState::Voided,
            6 => TxState::Applied,
            _ => return None,
        })
    }
}

/// A transaction as submitted: exactly the fields of the C ABI's `ledger_tx`, kept raw
/// so that validation can say precisely what is wrong with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tx {
    /// The idempotency key.
    pub id: TxId,
    /// Capture, void, refund: the payment; otherwise [`TxId::NONE`].
    pub ref_id: TxId,
    /// The client (tenant); non-zero.
    pub client_id: u64,
    /// The device, 0 for none.
    pub device_id: u64,
    /// Minor units of the currency.
    pub amount: i64,
    /// A [`Kind`] code.
    pub kind: u32,
    /// [`Tx::AUTH_ONLY`] or 0.
    pub flags: u32,
    /// Upper-case ISO 4217 code and a NUL.
    pub currency: [u8; 4],
    /// Opaque to the ledger, stored and returned.
    pub user_data: u64,
}

impl Tx {
    /// Flag: a payment that only authorizes; it counts in no batch until captured.
    pub const AUTH_ONLY: u32 = 1;
    /// Every flag the ledger knows.
    pub const KNOWN_FLAGS: u32 = Self::AUTH_ONLY;

    fn new(id: TxId, kind: Kind, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx {
            id,
            ref_id: TxId::NONE,
            client_id,
            device_id: 0,
            amount,
            kind: kind as u32,
            flags: 0,
            currency: currency.c_bytes(),
            user_data: 0,
        }
    }

    /// A sale: a payment captured at once.
    pub fn sale(id: TxId, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx::new(id, Kind::Payment, client_id, amount, currency)
    }

    /// An authorization: a payment to be captured or voided later.
    pub fn authorization(id: TxId, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx { flags: Tx::AUTH_ONLY, ..Tx::new(id, Kind::Payment, client_id, amount, currency) }
    }

    /// A capture of the authorization `payment`.
    pub fn capture(id: TxId, payment: TxId, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx { ref_id: payment, ..Tx::new(id, Kind::Capture, client_id, amount, currency) }
    }

    /// A void of the authorization `payment`.
    pub fn void(id: TxId, payment: TxId, client_id: u64, currency: Currency) -> Tx {
        Tx { ref_id: payment, ..Tx::new(id, Kind::Void, client_id, 0, currency) }
    }

    /// A refund of the captured `payment`.
    pub fn refund(id: TxId, payment: TxId, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx { ref_id: payment, ..Tx::new(id, Kind::Refund, client_id, amount, currency) }
    }

    /// An adjustment of either sign.
    pub fn adjustment(id: TxId, client_id: u64, amount: i64, currency: Currency) -> Tx {
        Tx::new(id, Kind::Adjustment, client_id, amount, currency)
    }

    /// The same transaction on a device.
    pub fn with_device(self, device_id: u64) -> Tx {
        Tx { device_id, ..self }
    }

    /// The same transaction carrying `user_data`.
    pub fn with_user_data(self, user_data: u64) -> Tx {
        Tx { user_data, ..self }
    }

    /// The kind, when the code is known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_code(self.kind)
    }

    /// The currency, when the code is known.
    pub fn currency(&self) -> Option<Currency> {
        Currency::from_c_bytes(self.currency)
    }
}

/// A committed transaction: the C ABI's `ledger_tx_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRecord {
    /// As committed.
    pub tx: Tx,
    /// Log position; strictly increasing in commit order.
    pub seq: u64,
    /// The settlement batch it counts in; 0 for authorizations and voids.
    pub batch_id: u64,
    /// Commit time, Unix nanoseconds; strictly increasing with `seq`.
    pub timestamp_ns: u64,
    /// Its status now.
    pub state: TxState,
    /// Payments: amount captured so far.
    pub captured: i64,
    /// Payments: sum of their refunds.
    pub refunded: i64,
}

impl TxRecord {
    /// The record as it stood right after its commit, whatever happened since: a sale
    /// `captured` in full, an authorization `authorized` in no batch, a capture, void,
    /// refund or adjustment `applied`. What the change feed gives, and what a replayed
    /// answer to the committing request says.
    pub fn as_committed(&self) -> TxRecord {
        let applied = TxRecord { state: TxState::Applied, captured: 0, refunded: 0, ..*self };
        match self.tx.kind() {
            // An authorization counts in no batch until a capture (which then gives the
            // payment the capture's batch: a record read now shows that batch).
            Some(Kind::Payment) if self.tx.flags & Tx::AUTH_ONLY != 0 => {
                TxRecord { state: TxState::Authorized, batch_id: 0, ..applied }
            }
            Some(Kind::Payment) => TxRecord { state: TxState::Captured, captured: self.tx.amount, ..applied },
            _ => applied,
        }
    }
}

/// Why a transaction was refused. Nothing was stored; resubmitting the same id later
/// is judged afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u32)]
pub enum Reject {
    /// The id was committed before with different fields.
    #[error("the id was committed before with different fields")]
    ExistsWithDifferentFields = 2,
    /// The amount is out of range for the kind, or a sum would overflow.
    #[error("invalid amount")]
    InvalidAmount = 3,
    /// Not an upper-case ISO 4217 code known to the ledger.
    #[error("invalid currency")]
    InvalidCurrency = 4,
    /// Unknown kind or flag, zero id, zero client, or a ref where none belongs.
    #[error("invalid kind, flags, id or client")]
    InvalidKind = 5,
    /// The ref is no transaction of this client.
    #[error("referenced payment not found")]
    RefNotFound = 6,
    /// The ref is in a state that does not allow this (refund of an uncaptured payment, ...).
    #[error("referenced payment is in the wrong state")]
    RefWrongState = 7,
    /// Capture above the authorization, or refunds above the capture.
    #[error("amount exceeds what the referenced payment allows")]
    ExceedsRefAmount = 8,
    /// The currency differs from the referenced payment's.
    #[error("currency differs from the referenced payment's")]
    CurrencyMismatch = 9,
}

/// The result of one submitted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Committed by this submission (durable when the submit returned).
    Committed(TxRecord),
    /// The same id with identical fields was already committed: nothing changed. The
    /// record is as it stands now.
    Exists(TxRecord),
    /// Refused; nothing stored.
    Rejected(Reject),
}

impl TxOutcome {
    /// The C ABI's `LEDGER_TX_*` code.
    pub fn code(&self) -> u32 {
        match self {
            TxOutcome::Committed(_) => 0,
            TxOutcome::Exists(_) => 1,
            TxOutcome::Rejected(r) => *r as u32,
        }
    }

    /// The record, for committed and existing transactions.
    pub fn record(&self) -> Option<&TxRecord> {
        match self {
            TxOutcome::Committed(r) | TxOutcome::Exists(r) => Some(r),
            TxOutcome::Rejected(_) => None,
        }
    }
}

/// Totals of a settlement batch: the C ABI's `ledger_batch_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Its id, from 1, in the order batches were opened.
    pub batch_id: u64,
    /// The client.
    pub client_id: u64,
    /// The currency.
    pub currency: Currency,
    /// Seq of the first and last transaction counted in it.
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Commit time of its first transaction.
    pub opened_ns: u64,
    /// Commit time of the close, 0 while open.
    pub closed_ns: u64,
    /// Sales captured at once plus captures of authorizations.
    pub payment_count: u64,
    /// Their amounts (captured amounts).
    pub payment_total: i64,
    /// Refunds.
    pub refund_count: u64,
    /// Their amounts.
    pub refund_total: i64,
    /// Adjustments.
    pub adjustment_count: u64,
    /// Their amounts (either sign).
    pub adjustment_total: i64,
    /// `payment_total - refund_total + adjustment_total`.
    pub net: i64,
}

impl BatchSummary {
    /// True while transactions still count in it.
    pub fn is_open(&self) -> bool {
        self.closed_ns == 0
    }
}

/// A client's money in one currency: the C ABI's `ledger_balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Sum of captured amounts (sales and captures).
    pub captured: i64,
    /// Sum of refunds.
    pub refunded: i64,
    /// Sum of adjustments.
    pub adjusted: i64,
    /// `captured - refunded + adjusted`.
    pub net: i64,
    /// Net of the closed batches.
    pub settled_net: i64,
    /// Net of the open batch.
    pub open_net: i64,
}
