"""``ledger``: Python bindings of the ledger engine's C ABI (``ledger-ffi/include/ledger.h``),
through ctypes.

::

    import ledger
    from ledger import Ledger, Tx, TxResult

    with Ledger("data/ledger") as book:                       # sync="always": durable
        results = book.submit([
            Tx.sale(1, client_id=7, amount=10_00, currency="USD"),
            Tx.refund(2, payment=1, client_id=7, amount=2_50, currency="USD"),
        ])
        assert results == [TxResult.OK, TxResult.OK]
        summary = book.batch_close(7, "USD")
        print(summary.net, book.balance(7, "USD"))

Many transactions per call, without a Python loop: ``book.submit_packed(buf)`` with
``buf = ledger.pack_txs(txs)`` (bytes) or ``ledger.pack_columns(...)`` (numpy).

The shared library is loaded at import: ``LEDGER_LIBRARY`` if set, else the copy
bundled into the package, else (in a source checkout) ``target/release/libledger.so``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import _ffi
from ._ffi import (  # noqa: F401  (the header's constants, same names and values)
    LEDGER_ERR_CORRUPT,
    LEDGER_ERR_INTERNAL,
    LEDGER_ERR_INVALID_ARGUMENT,
    LEDGER_ERR_IO,
    LEDGER_ERR_LOCKED,
    LEDGER_ERR_NOT_FOUND,
    LEDGER_FEED_BATCH_CLOSE,
    LEDGER_FEED_HOLD,
    LEDGER_FEED_TRANSACTION,
    LEDGER_FLAG_AUTH_ONLY,
    LEDGER_KIND_ADJUSTMENT,
    LEDGER_KIND_CAPTURE,
    LEDGER_KIND_PAYMENT,
    LEDGER_KIND_REFUND,
    LEDGER_KIND_VOID,
    LEDGER_OK,
    LEDGER_STATE_APPLIED,
    LEDGER_STATE_AUTHORIZED,
    LEDGER_STATE_CAPTURED,
    LEDGER_STATE_PARTIALLY_REFUNDED,
    LEDGER_STATE_REFUNDED,
    LEDGER_STATE_VOIDED,
    LEDGER_SYNC_ALWAYS,
    LEDGER_SYNC_NONE,
    LEDGER_TX_CURRENCY_MISMATCH,
    LEDGER_TX_EXCEEDS_REF_AMOUNT,
    LEDGER_TX_EXISTS,
    LEDGER_TX_EXISTS_DIFFERENT,
    LEDGER_TX_INVALID_AMOUNT,
    LEDGER_TX_INVALID_CURRENCY,
    LEDGER_TX_INVALID_KIND,
    LEDGER_TX_OK,
    LEDGER_TX_REF_NOT_FOUND,
    LEDGER_TX_REF_WRONG_STATE,
    ledger_balance,
    ledger_batch_summary,
    ledger_feed_record,
    ledger_id,
    ledger_options,
    ledger_tx,
    ledger_tx_record,
    library_path,
    library_source,
)
from ._ffi import last_error, version
from ._ledger import DEFAULT_LIST_LIMIT, Feed, Ledger
from .errors import (
    CorruptError,
    InternalError,
    InvalidArgumentError,
    IOError_,
    LedgerError,
    LockedError,
    NotFoundError,
    error_for_status,
)
from .model import FLAG_AUTH_ONLY, Balance, BatchClose, BatchSummary, Kind, Status, Sync, Tx, TxRecord, TxResult, TxState
from .packing import TX_SIZE, pack_columns, pack_txs, tx_array, tx_dtype, unpack_txs

__all__ = [
    "__version__",
    # the handle
    "Ledger",
    "Feed",
    "DEFAULT_LIST_LIMIT",
    # values
    "Tx",
    "TxRecord",
    "BatchSummary",
    "BatchClose",
    "Balance",
    "Kind",
    "TxResult",
    "TxState",
    "Sync",
    "Status",
    "FLAG_AUTH_ONLY",
    # errors
    "LedgerError",
    "InvalidArgumentError",
    "IOError_",
    "CorruptError",
    "NotFoundError",
    "LockedError",
    "InternalError",
    "error_for_status",
    # packed batches
    "TX_SIZE",
    "tx_dtype",
    "tx_array",
    "pack_txs",
    "pack_columns",
    "unpack_txs",
    # the library
    "version",
    "last_error",
    "library_path",
    "library_source",
    # the C structs (ctypes)
    "ledger_id",
    "ledger_options",
    "ledger_tx",
    "ledger_tx_record",
    "ledger_batch_summary",
    "ledger_balance",
    "ledger_feed_record",
] + sorted(_ffi.CONSTANTS)


def __getattr__(name: str):  # PEP 562: ledger.TX_DTYPE imports numpy only when asked for
    if name == "TX_DTYPE":
        return tx_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
