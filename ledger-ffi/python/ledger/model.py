"""Python values for the ABI's codes and structs: IntEnums for kinds, results, states
and sync modes; NamedTuples for transactions, records, batch summaries and balances.

Ids are Python ints of up to 128 bits (the ABI's ``ledger_id`` ``{lo, hi}`` halves are
split and joined by the wrapper). Amounts are ints in minor units (cents for USD).
Currencies are ``str`` ISO 4217 codes such as ``"USD"``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple, Union

from . import _ffi

__all__ = [
    "Kind",
    "TxResult",
    "TxState",
    "Sync",
    "Status",
    "FLAG_AUTH_ONLY",
    "Tx",
    "TxRecord",
    "BatchSummary",
    "Balance",
    "BatchClose",
]


class Status(IntEnum):
    """Status of a call (``LEDGER_OK`` / ``LEDGER_ERR_*``)."""

    OK = _ffi.LEDGER_OK
    ERR_INVALID_ARGUMENT = _ffi.LEDGER_ERR_INVALID_ARGUMENT
    ERR_IO = _ffi.LEDGER_ERR_IO
    ERR_CORRUPT = _ffi.LEDGER_ERR_CORRUPT
    ERR_NOT_FOUND = _ffi.LEDGER_ERR_NOT_FOUND
    ERR_LOCKED = _ffi.LEDGER_ERR_LOCKED
    ERR_INTERNAL = _ffi.LEDGER_ERR_INTERNAL


class Kind(IntEnum):
    """Kind of transaction (``LEDGER_KIND_*``)."""

    PAYMENT = _ffi.LEDGER_KIND_PAYMENT
    CAPTURE = _ffi.LEDGER_KIND_CAPTURE
    VOID = _ffi.LEDGER_KIND_VOID
    REFUND = _ffi.LEDGER_KIND_REFUND
    ADJUSTMENT = _ffi.LEDGER_KIND_ADJUSTMENT


#: ``LEDGER_FLAG_AUTH_ONLY``: a payment that only authorizes.
FLAG_AUTH_ONLY = _ffi.LEDGER_FLAG_AUTH_ONLY


class TxResult(IntEnum):
    """Result of one submitted transaction (``LEDGER_TX_*``)."""

    OK = _ffi.LEDGER_TX_OK
    EXISTS = _ffi.LEDGER_TX_EXISTS
    EXISTS_DIFFERENT = _ffi.LEDGER_TX_EXISTS_DIFFERENT
    INVALID_AMOUNT = _ffi.LEDGER_TX_INVALID_AMOUNT
    INVALID_CURRENCY = _ffi.LEDGER_TX_INVALID_CURRENCY
    INVALID_KIND = _ffi.LEDGER_TX_INVALID_KIND
    REF_NOT_FOUND = _ffi.LEDGER_TX_REF_NOT_FOUND
    REF_WRONG_STATE = _ffi.LEDGER_TX_REF_WRONG_STATE
    EXCEEDS_REF_AMOUNT = _ffi.LEDGER_TX_EXCEEDS_REF_AMOUNT
    CURRENCY_MISMATCH = _ffi.LEDGER_TX_CURRENCY_MISMATCH

    @property
    def accepted(self) -> bool:
        """True when the transaction is in the ledger after the call (OK or EXISTS)."""
        return self in (TxResult.OK, TxResult.EXISTS)


class TxState(IntEnum):
    """Status of a stored transaction (``LEDGER_STATE_*``)."""

    AUTHORIZED = _ffi.LEDGER_STATE_AUTHORIZED
    CAPTURED = _ffi.LEDGER_STATE_CAPTURED
    PARTIALLY_REFUNDED = _ffi.LEDGER_STATE_PARTIALLY_REFUNDED
    REFUNDED = _ffi.LEDGER_STATE_REFUNDED
    VOIDED = _ffi.LEDGER_STATE_VOIDED
    APPLIED = _ffi.LEDGER_STATE_APPLIED


class Sync(IntEnum):
    """Durability of a submit (``LEDGER_SYNC_*``)."""

    ALWAYS = _ffi.LEDGER_SYNC_ALWAYS
    NONE = _ffi.LEDGER_SYNC_NONE


class Tx(NamedTuple):
    """A transaction to submit (the ABI's ``ledger_tx``).

    Positional order puts what every transaction has first: ``Tx(id, client_id, amount,
    currency)`` is a sale; a plain tuple in the same order is accepted wherever a ``Tx``
    is. The constructors :meth:`sale`, :meth:`authorization`, :meth:`capture`,
    :meth:`void`, :meth:`refund` and :meth:`adjustment` fill in kind, flags and ref.
    ``reserved`` must be 0 for a valid transaction; it exists so that every field of
    the C struct can be expressed.
    """

    id: int
    client_id: int
    amount: int
    currency: str
    kind: int = Kind.PAYMENT
    ref: int = 0
    flags: int = 0
    device_id: int = 0
    user_data: int = 0
    reserved: int = 0

    @classmethod
    def sale(
        cls, id: int, client_id: int, amount: int, currency: str, *, device_id: int = 0, user_data: int = 0
    ) -> "Tx":
        """A payment captured at once."""
        return cls(id, client_id, amount, currency, Kind.PAYMENT, 0, 0, device_id, user_data)

    @classmethod
    def authorization(
        cls, id: int, client_id: int, amount: int, currency: str, *, device_id: int = 0, user_data: int = 0
    ) -> "Tx":
        """A payment that only authorizes; capture or void it later."""
        return cls(id, client_id, amount, currency, Kind.PAYMENT, 0, FLAG_AUTH_ONLY, device_id, user_data)

    @classmethod
    def capture(
        cls,
        id: int,
        payment: int,
        client_id: int,
        amount: int,
        currency: str,
        *,
        device_id: int = 0,
        user_data: int = 0,
    ) -> "Tx":
        """Captures the authorization ``payment`` (once; 0 < amount <= authorized)."""
        return cls(id, client_id, amount, currency, Kind.CAPTURE, payment, 0, device_id, user_data)

    @classmethod
    def void(
        cls, id: int, payment: int, client_id: int, currency: str, *, device_id: int = 0, user_data: int = 0
    ) -> "Tx":
        """Voids the authorized, uncaptured ``payment``."""
        return cls(id, client_id, 0, currency, Kind.VOID, payment, 0, device_id, user_data)

    @classmethod
    def refund(
        cls,
        id: int,
        payment: int,
        client_id: int,
        amount: int,
        currency: str,
        *,
        device_id: int = 0,
        user_data: int = 0,
    ) -> "Tx":
        """Refunds (part of) the captured ``payment``."""
        return cls(id, client_id, amount, currency, Kind.REFUND, payment, 0, device_id, user_data)

    @classmethod
    def adjustment(
        cls, id: int, client_id: int, amount: int, currency: str, *, device_id: int = 0, user_data: int = 0
    ) -> "Tx":
        """A non-zero amount of either sign, no ref."""
        return cls(id, client_id, amount, currency, Kind.ADJUSTMENT, 0, 0, device_id, user_data)


class TxRecord(NamedTuple):
    """A committed transaction as it stands now (the ABI's ``ledger_tx_record``)."""

    tx: Tx
    seq: int
    batch_id: int
    timestamp_ns: int
    state: Union[TxState, int]
    captured: int
    refunded: int

    @property
    def id(self) -> int:
        return self.tx.id


class BatchSummary(NamedTuple):
    """Totals of a settlement batch (the ABI's ``ledger_batch_summary``)."""

    batch_id: int
    client_id: int
    currency: str
    first_seq: int
    last_seq: int
    opened_ns: int
    closed_ns: int
    payment_count: int
    payment_total: int
    refund_count: int
    refund_total: int
    adjustment_count: int
    adjustment_total: int
    net: int

    @property
    def is_open(self) -> bool:
        return self.closed_ns == 0


class Balance(NamedTuple):
    """A client's money in one currency (the ABI's ``ledger_balance``)."""

    captured: int
    refunded: int
    adjusted: int
    net: int
    settled_net: int
    open_net: int


class BatchClose(NamedTuple):
    """A batch close as a change feed returns it: the close's own log position and the
    closed batch."""

    seq: int
    batch: BatchSummary
