"""Packed transactions: contiguous arrays of the ABI's ``ledger_tx`` (80 bytes each).

A packed buffer goes to ``ledger_submit`` as it is, in one call and without a Python
loop: :meth:`ledger.Ledger.submit_packed` takes ``bytes``, ``bytearray``, a
``memoryview`` or any buffer, or a numpy structured array of :data:`TX_DTYPE`.

Build one with :func:`pack_txs` (from ``Tx`` objects or tuples, with ``struct``), with
:func:`pack_columns` (from numpy columns, vectorised), or fill :func:`tx_array` yourself.

Layout (native byte order, no padding; the same as the C struct)::

    offset  size  field
       0     8    id.lo         uint64
       8     8    id.hi         uint64
      16     8    ref.lo        uint64
      24     8    ref.hi        uint64
      32     8    client_id     uint64
      40     8    device_id     uint64
      48     8    amount        int64
      56     4    kind          uint32
      60     4    flags         uint32
      64     4    currency      char[4]  ("USD\\0")
      68     4    reserved      uint32   (0)
      72     8    user_data     uint64
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping
from typing import Any, Iterable, List, Sequence

from . import _ffi
from .errors import InvalidArgumentError
from .model import Balance, BatchSummary, Kind, Tx, TxRecord, TxState

__all__ = [
    "TX_SIZE",
    "TX_FORMAT",
    "TX_STRUCT",
    "RECORD_FORMAT",
    "RECORD_STRUCT",
    "BATCH_FORMAT",
    "BALANCE_FORMAT",
    "tx_dtype",
    "tx_array",
    "pack_txs",
    "pack_columns",
    "unpack_txs",
    "as_tx",
    "currency_field",
]

_M64 = (1 << 64) - 1

TX_FORMAT = "=QQQQQQqII4sIQ"
TX_STRUCT = struct.Struct(TX_FORMAT)
TX_SIZE = TX_STRUCT.size
RECORD_FORMAT = TX_FORMAT + "QQQIIqq"
RECORD_STRUCT = struct.Struct(RECORD_FORMAT)
BATCH_FORMAT = "=QQ4sIQQQQQqQqQqq"
BATCH_STRUCT = struct.Struct(BATCH_FORMAT)
BALANCE_FORMAT = "=qqqqqq"
BALANCE_STRUCT = struct.Struct(BALANCE_FORMAT)

assert TX_SIZE == 80 == __import__("ctypes").sizeof(_ffi.ledger_tx)
assert RECORD_STRUCT.size == 128 and BATCH_STRUCT.size == 112 and BALANCE_STRUCT.size == 48

_BAD = _ffi.LEDGER_ERR_INVALID_ARGUMENT

# ----- fields ----------------------------------------------------------------------------

_CURRENCIES: dict = {}


def currency_field(currency: Any) -> bytes:
    """The 4 bytes of ``char currency[4]`` for a code: ``"USD"`` -> ``b"USD\\0"``.

    Any code of at most 4 bytes is packed as given (the ledger judges it: an unknown or
    lower-case code is ``TxResult.INVALID_CURRENCY``); a longer one cannot be expressed
    and raises :class:`InvalidArgumentError`.
    """
    cached = _CURRENCIES.get(currency) if isinstance(currency, (str, bytes)) else None
    if cached is not None:
        return cached
    if isinstance(currency, str):
        try:
            raw = currency.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidArgumentError(_BAD, f"currency {currency!r} is not ASCII") from None
    elif isinstance(currency, (bytes, bytearray, memoryview)):
        raw = bytes(currency)
    else:
        raise TypeError(f"currency must be str or bytes, not {type(currency).__name__}")
    if len(raw) > 4:
        raise InvalidArgumentError(_BAD, f"currency {currency!r} does not fit char[4]")
    field = raw.ljust(4, b"\0")
    if len(_CURRENCIES) < 512:
        _CURRENCIES[currency if not isinstance(currency, (bytearray, memoryview)) else raw] = field
    return field


def currency_arg(currency: Any) -> bytes:
    """A currency as a NUL-terminated C string argument (``ledger_batch_close``,
    ``ledger_balance_get``)."""
    if isinstance(currency, str):
        raw = currency.encode("utf-8")
    elif isinstance(currency, (bytes, bytearray)):
        raw = bytes(currency)
    else:
        raise TypeError(f"currency must be str or bytes, not {type(currency).__name__}")
    if b"\0" in raw:
        raise InvalidArgumentError(_BAD, f"currency {currency!r} contains a NUL byte")
    return raw


def decode_currency(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("ascii", "replace")


def check_u64(value: Any, what: str) -> int:
    value = int(value)
    if not 0 <= value <= _M64:
        raise InvalidArgumentError(_BAD, f"{what} {value} is outside uint64")
    return value


def check_id(value: Any, what: str = "id") -> int:
    value = int(value)
    if not 0 <= value < (1 << 128):
        raise InvalidArgumentError(_BAD, f"{what} {value} is outside 0..2**128")
    return value


def as_tx(t: Any) -> Tx:
    """A :class:`Tx` from a ``Tx``, a tuple/list in ``Tx`` order, or a mapping of its fields."""
    if isinstance(t, Tx):
        return t
    if isinstance(t, Mapping):
        return Tx(**t)
    if isinstance(t, (tuple, list)):
        return Tx(*t)
    raise TypeError(f"a transaction must be a Tx, a tuple or a mapping, not {type(t).__name__}")


_RANGES = (
    ("id", 0, (1 << 128) - 1),
    ("ref", 0, (1 << 128) - 1),
    ("client_id", 0, _M64),
    ("device_id", 0, _M64),
    ("amount", -(1 << 63), (1 << 63) - 1),
    ("kind", 0, (1 << 32) - 1),
    ("flags", 0, (1 << 32) - 1),
    ("reserved", 0, (1 << 32) - 1),
    ("user_data", 0, _M64),
)


def _explain(index: int, tx: Tx) -> Exception:
    for name, low, high in _RANGES:
        value = getattr(tx, name)
        if not isinstance(value, int):
            return TypeError(f"transaction {index}: {name} must be an int, not {type(value).__name__}")
        if not low <= value <= high:
            return InvalidArgumentError(_BAD, f"transaction {index}: {name} {value} does not fit its C field")
    return InvalidArgumentError(_BAD, f"transaction {index}: a field does not fit ledger_tx")


# ----- struct packing ------------------------------------------------------------------------


def pack_txs(txs: Iterable[Any]) -> bytearray:
    """Packs transactions (``Tx``, tuples in ``Tx`` order, or mappings) into a new
    ``bytearray`` of ``len(txs) * 80`` bytes, ready for ``Ledger.submit_packed``.

    Every value is range-checked (``struct`` refuses what does not fit its C field):
    nothing is truncated or wrapped; a bad value raises :class:`InvalidArgumentError`
    naming the transaction and field.
    """
    if not isinstance(txs, (list, tuple)):
        txs = list(txs)
    buf = bytearray(len(txs) * TX_SIZE)
    pack_into = TX_STRUCT.pack_into
    currencies = _CURRENCIES
    offset = 0
    tx = None
    try:
        for tx in txs:
            if type(tx) is not Tx:
                tx = as_tx(tx)
            id_, client_id, amount, currency, kind, ref, flags, device_id, user_data, reserved = tx
            cur = currencies.get(currency) if type(currency) is str else None
            if cur is None:
                cur = currency_field(currency)
            pack_into(
                buf, offset,
                id_ & _M64, id_ >> 64, ref & _M64, ref >> 64,
                client_id, device_id, amount, kind, flags, cur, reserved, user_data,
            )  # fmt: skip
            offset += TX_SIZE
    except (struct.error, TypeError) as e:
        if isinstance(tx, Tx):
            raise _explain(offset // TX_SIZE, tx) from e
        raise
    return buf


def unpack_txs(buf: Any) -> List[Tx]:
    """The transactions of a packed buffer, as ``Tx`` values (the inverse of
    :func:`pack_txs`)."""
    view = memoryview(buf).cast("B")
    if view.nbytes % TX_SIZE:
        raise InvalidArgumentError(_BAD, f"a packed buffer holds a multiple of {TX_SIZE} bytes, not {view.nbytes}")
    return [tx_from_fields(f) for f in TX_STRUCT.iter_unpack(view)]


_KINDS = {int(k): k for k in Kind}
_STATES = {int(s): s for s in TxState}


def tx_from_fields(f: Sequence[Any]) -> Tx:
    id_lo, id_hi, ref_lo, ref_hi, client_id, device_id, amount, kind, flags, cur, reserved, user_data = f[:12]
    return Tx(
        id_lo | (id_hi << 64),
        client_id,
        amount,
        decode_currency(cur),
        _KINDS.get(kind, kind),
        ref_lo | (ref_hi << 64),
        flags,
        device_id,
        user_data,
        reserved,
    )


def record_from_fields(f: Sequence[Any]) -> TxRecord:
    seq, batch_id, timestamp_ns, state, _reserved, captured, refunded = f[12:]
    return TxRecord(tx_from_fields(f), seq, batch_id, timestamp_ns, _STATES.get(state, state), captured, refunded)


def batch_from_fields(f: Sequence[Any]) -> BatchSummary:
    batch_id, client_id, cur, _reserved, *rest = f
    return BatchSummary(batch_id, client_id, decode_currency(cur), *rest)


def balance_from_fields(f: Sequence[Any]) -> Balance:
    return Balance(*f)


# ----- numpy ---------------------------------------------------------------------------------

_TX_DTYPE = None


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("this function needs numpy (pip install numpy)") from None
    return numpy


def tx_dtype():
    """The numpy dtype of ``ledger_tx`` (needs numpy): fields ``id_lo, id_hi, ref_lo,
    ref_hi, client_id, device_id, amount, kind, flags, currency (S4), reserved,
    user_data`` at the C offsets, itemsize 80."""
    global _TX_DTYPE
    if _TX_DTYPE is None:
        np = _numpy()
        dtype = np.dtype(
            [
                ("id_lo", "=u8"),
                ("id_hi", "=u8"),
                ("ref_lo", "=u8"),
                ("ref_hi", "=u8"),
                ("client_id", "=u8"),
                ("device_id", "=u8"),
                ("amount", "=i8"),
                ("kind", "=u4"),
                ("flags", "=u4"),
                ("currency", "S4"),
                ("reserved", "=u4"),
                ("user_data", "=u8"),
            ]
        )
        assert dtype.itemsize == TX_SIZE
        _TX_DTYPE = dtype
    return _TX_DTYPE


def __getattr__(name: str):  # PEP 562: TX_DTYPE without importing numpy at import time
    if name == "TX_DTYPE":
        return tx_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tx_array(n: int):
    """A zeroed numpy array of ``n`` transactions (dtype :func:`tx_dtype`)."""
    return _numpy().zeros(n, dtype=tx_dtype())


def _column(np, name: str, value: Any, target: str, n: int):
    """``value`` (scalar or array) as a column of ``target`` dtype, refusing what would
    wrap or truncate."""
    a = np.asarray(value)
    if a.dtype.kind == "O" or a.dtype.kind == "U" or a.dtype.kind == "S":
        try:
            a = np.array(value, dtype=target)
        except (OverflowError, ValueError, TypeError) as e:
            raise InvalidArgumentError(_BAD, f"{name}: {e}") from None
    if a.dtype.kind not in "iub":
        raise InvalidArgumentError(_BAD, f"{name} must be integers, not {a.dtype}")
    info = np.iinfo(np.dtype(target))
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise InvalidArgumentError(_BAD, f"{name} has values outside {np.dtype(target)}")
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != n):
        raise InvalidArgumentError(_BAD, f"{name} has shape {a.shape}, expected ({n},) or a scalar")
    return a


def pack_columns(
    id: Any,
    client_id: Any,
    amount: Any,
    currency: Any,
    kind: Any = Kind.PAYMENT,
    ref: Any = 0,
    flags: Any = 0,
    device_id: Any = 0,
    user_data: Any = 0,
    *,
    id_hi: Any = 0,
    ref_hi: Any = 0,
    reserved: Any = 0,
):
    """A numpy array of transactions built column by column, vectorised (needs numpy).

    Each argument is a scalar or a 1-D array; arrays must share one length. ``id`` and
    ``ref`` are the low 64 bits (``id_hi``/``ref_hi`` the high ones, default 0).
    ``currency`` is one code for all or an array of codes. Values are range-checked:
    nothing wraps.
    """
    np = _numpy()
    columns = dict(
        id_lo=(id, "u8"), id_hi=(id_hi, "u8"), ref_lo=(ref, "u8"), ref_hi=(ref_hi, "u8"),
        client_id=(client_id, "u8"), device_id=(device_id, "u8"), amount=(amount, "i8"),
        kind=(kind, "u4"), flags=(flags, "u4"), reserved=(reserved, "u4"), user_data=(user_data, "u8"),
    )  # fmt: skip
    lengths = {np.shape(v)[0] for v, _ in columns.values() if np.ndim(v) == 1}
    if not isinstance(currency, (str, bytes)):
        lengths.add(len(currency))
    if len(lengths) > 1:
        raise InvalidArgumentError(_BAD, f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 1
    out = np.zeros(n, dtype=tx_dtype())
    for name, (value, target) in columns.items():
        out[name] = _column(np, name, value, target, n)
    if isinstance(currency, (str, bytes)):
        out["currency"] = currency_field(currency)
    else:
        out["currency"] = [currency_field(c) for c in currency]
    return out


def numpy_module():
    """numpy if it has been imported by anyone, else None (never imports it)."""
    return sys.modules.get("numpy")
