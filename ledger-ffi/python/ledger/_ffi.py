"""The C ABI of ``ledger-ffi`` (``include/ledger.h``) as ctypes declarations.

Everything here mirrors the header exactly: the constants with the same names and
values, the structs with the same field order and types, and one prototype per
function. ``shared/design/ffi-contract.md`` is the contract; the tests compare this
module with the committed header (constants, and field offsets through a C compiler).

The library is loaded when this module is imported, from the first of:

1. ``LEDGER_LIBRARY`` (a path to the shared library), when set;
2. the copy bundled into the installed package (``ledger/libledger.so``);
3. in a source checkout, ``<repo>/target/release/libledger.so`` (or under
   ``CARGO_TARGET_DIR``), as built by ``cargo build --release -p ledger-ffi``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = [
    "LIBRARY_ENV",
    "LIBRARY_FILE",
    "lib",
    "library_path",
    "library_source",
    "ledger",
    "ledger_p",
    "ledger_id",
    "ledger_options",
    "ledger_tx",
    "ledger_tx_record",
    "ledger_batch_summary",
    "ledger_balance",
    "CONSTANTS",
]

# ----- constants (names and values of include/ledger.h) ------------------------------

LEDGER_OK = 0
LEDGER_ERR_INVALID_ARGUMENT = 1
LEDGER_ERR_IO = 2
LEDGER_ERR_CORRUPT = 3
LEDGER_ERR_NOT_FOUND = 4
LEDGER_ERR_LOCKED = 5
LEDGER_ERR_INTERNAL = 7

LEDGER_FEED_TRANSACTION = 1
LEDGER_FEED_BATCH_CLOSE = 2
LEDGER_FEED_HOLD = 1

LEDGER_KIND_PAYMENT = 1
LEDGER_KIND_CAPTURE = 2
LEDGER_KIND_VOID = 3
LEDGER_KIND_REFUND = 4
LEDGER_KIND_ADJUSTMENT = 5

LEDGER_FLAG_AUTH_ONLY = 1

LEDGER_TX_OK = 0
LEDGER_TX_EXISTS = 1
LEDGER_TX_EXISTS_DIFFERENT = 2
LEDGER_TX_INVALID_AMOUNT = 3
LEDGER_TX_INVALID_CURRENCY = 4
LEDGER_TX_INVALID_KIND = 5
LEDGER_TX_REF_NOT_FOUND = 6
LEDGER_TX_REF_WRONG_STATE = 7
LEDGER_TX_EXCEEDS_REF_AMOUNT = 8
LEDGER_TX_CURRENCY_MISMATCH = 9

LEDGER_STATE_AUTHORIZED = 1
LEDGER_STATE_CAPTURED = 2
LEDGER_STATE_PARTIALLY_REFUNDED = 3
LEDGER_STATE_REFUNDED = 4
LEDGER_STATE_VOIDED = 5
LEDGER_STATE_APPLIED = 6

LEDGER_SYNC_ALWAYS = 0
LEDGER_SYNC_NONE = 1

#: Every ``LEDGER_*`` constant of the header, by name.
CONSTANTS = {name: value for name, value in globals().items() if name.startswith("LEDGER_")}
__all__ += sorted(CONSTANTS)

# ----- structs -------------------------------------------------------------------------


class ledger(Structure):
    """The opaque handle (``typedef struct ledger ledger``); only pointers to it exist."""


ledger_p = POINTER(ledger)


class ledger_id(Structure):
    """``typedef struct { uint64_t lo, hi; } ledger_id``: a 128-bit id."""

    _fields_ = [("lo", c_uint64), ("hi", c_uint64)]


class ledger_options(Structure):
    _fields_ = [
        ("sync", c_uint32),
        ("reserved", c_uint32),
        ("segment_bytes", c_uint64),
        ("hot_bytes_max", c_uint64),
        ("checkpoint_every_records", c_uint64),
    ]


class ledger_tx(Structure):
    _fields_ = [
        ("id", ledger_id),
        ("ref", ledger_id),
        ("client_id", c_uint64),
        ("device_id", c_uint64),
        ("amount", c_int64),
        ("kind", c_uint32),
        ("flags", c_uint32),
        ("currency", c_char * 4),
        ("reserved", c_uint32),
        ("user_data", c_uint64),
    ]


class ledger_tx_record(Structure):
    _fields_ = [
        ("tx", ledger_tx),
        ("seq", c_uint64),
        ("batch_id", c_uint64),
        ("timestamp_ns", c_uint64),
        ("state", c_uint32),
        ("reserved", c_uint32),
        ("captured", c_int64),
        ("refunded", c_int64),
    ]


class ledger_batch_summary(Structure):
    _fields_ = [
        ("batch_id", c_uint64),
        ("client_id", c_uint64),
        ("currency", c_char * 4),
        ("reserved", c_uint32),
        ("first_seq", c_uint64),
        ("last_seq", c_uint64),
        ("opened_ns", c_uint64),
        ("closed_ns", c_uint64),
        ("payment_count", c_uint64),
        ("payment_total", c_int64),
        ("refund_count", c_uint64),
        ("refund_total", c_int64),
        ("adjustment_count", c_uint64),
        ("adjustment_total", c_int64),
        ("net", c_int64),
    ]


class ledger_balance(Structure):
    _fields_ = [
        ("captured", c_int64),
        ("refunded", c_int64),
        ("adjusted", c_int64),
        ("net", c_int64),
        ("settled_net", c_int64),
        ("open_net", c_int64),
    ]


class ledger_stats(Structure):
    _fields_ = [
        (name, c_uint64)
        for name in (
            "transactions",
            "hot_transactions",
            "hot_bytes",
            "frozen_transactions",
            "cold_runs",
            "cold_entries",
            "cold_bytes",
            "checkpoints",
            "checkpoint_failures",
            "checkpoint_seq",
            "checkpoint_ns",
            "checkpoint_run_bytes",
            "merges",
            "merged_entries",
            "merge_failures",
        )
    ]


class ledger_feed(Structure):
    """The opaque feed handle (``typedef struct ledger_feed ledger_feed``)."""


ledger_feed_p = POINTER(ledger_feed)


class ledger_feed_record(Structure):
    _fields_ = [
        ("kind", c_uint32),
        ("reserved", c_uint32),
        ("seq", c_uint64),
        ("tx", ledger_tx_record),
        ("batch", ledger_batch_summary),
    ]


# The sizes the Rust side asserts (ledger-ffi/src/lib.rs); a mismatch here would mean a
# wrong declaration above, so refuse to load rather than corrupt memory.
assert ctypes.sizeof(ledger_id) == 16
assert ctypes.sizeof(ledger_options) == 32
assert ctypes.sizeof(ledger_stats) == 120
assert ctypes.sizeof(ledger_tx) == 80
assert ctypes.sizeof(ledger_tx_record) == 128
assert ctypes.sizeof(ledger_batch_summary) == 112
assert ctypes.sizeof(ledger_balance) == 48

# ----- locating and loading the library ------------------------------------------------

LIBRARY_ENV = "LEDGER_LIBRARY"

if sys.platform == "darwin":
    LIBRARY_FILE = "libledger.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "ledger.dll"
else:
    LIBRARY_FILE = "libledger.so"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _source_tree_root() -> Optional[Path]:
    """The repository root when this package runs from its source tree
    (``<repo>/ledger-ffi/python/ledger``), else None."""
    root = _PACKAGE_DIR.parent.parent.parent
    if (root / "ledger-ffi" / "include" / "ledger.h").is_file():
        return root
    return None


def candidates() -> List[Tuple[str, Path]]:
    """Where the library is looked for, in order, as (source, path) pairs."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return [("env", Path(env))]
    found = [("bundled", _PACKAGE_DIR / LIBRARY_FILE)]
    root = _source_tree_root()
    if root is not None:
        target = os.environ.get("CARGO_TARGET_DIR")
        target_dir = (root / target) if target else (root / "target")
        found.append(("development", target_dir / "release" / LIBRARY_FILE))
    return found


def _load() -> Tuple[ctypes.CDLL, Path, str]:
    tried = []
    for source, path in candidates():
        if path.is_file():
            # CDLL (not PyDLL): every call releases the GIL, so several Python threads
            # can be inside the library at once, as the ABI allows.
            return ctypes.CDLL(str(path)), path.resolve(), source
        tried.append(f"{path} ({source})")
    hint = (
        f"set {LIBRARY_ENV} to the path of {LIBRARY_FILE}, or build it with "
        "`cargo build --release -p ledger-ffi` and reinstall the package"
    )
    raise ImportError(f"ledger: the shared library {LIBRARY_FILE} was not found; tried {', '.join(tried)}; {hint}")


lib, _library_path, _library_source = _load()


def library_path() -> Path:
    """The path of the loaded shared library."""
    return _library_path


def library_source() -> str:
    """How it was found: ``"env"`` (LEDGER_LIBRARY), ``"bundled"`` or ``"development"``."""
    return _library_source


# ----- prototypes ------------------------------------------------------------------------

lib.ledger_version.argtypes = []
lib.ledger_version.restype = c_char_p

lib.ledger_last_error.argtypes = []
lib.ledger_last_error.restype = c_char_p

lib.ledger_open.argtypes = [c_char_p, POINTER(ledger_options), POINTER(ledger_p)]
lib.ledger_open.restype = c_int

lib.ledger_close.argtypes = [ledger_p]
lib.ledger_close.restype = None

# `txs` and `results` are declared as void pointers so that raw addresses of caller
# buffers (bytearray, numpy, array.array) pass without a copy; the wrapper checks sizes.
lib.ledger_submit.argtypes = [ledger_p, c_void_p, c_size_t, c_void_p]
lib.ledger_submit.restype = c_int

lib.ledger_lookup.argtypes = [ledger_p, ledger_id, POINTER(ledger_tx_record)]
lib.ledger_lookup.restype = c_int

lib.ledger_list.argtypes = [ledger_p, c_uint64, c_uint64, POINTER(ledger_tx_record), c_size_t, POINTER(c_size_t)]
lib.ledger_list.restype = c_int

lib.ledger_batch_close.argtypes = [ledger_p, c_uint64, c_char_p, POINTER(ledger_batch_summary)]
lib.ledger_batch_close.restype = c_int

lib.ledger_batch_get.argtypes = [ledger_p, c_uint64, POINTER(ledger_batch_summary)]
lib.ledger_batch_get.restype = c_int

lib.ledger_balance_get.argtypes = [ledger_p, c_uint64, c_char_p, POINTER(ledger_balance)]
lib.ledger_balance_get.restype = c_int
lib.ledger_stats_get.argtypes = [ledger_p, POINTER(ledger_stats)]
lib.ledger_stats_get.restype = c_int
lib.ledger_feed_open.argtypes = [ledger_p, c_uint64, c_uint32, POINTER(ledger_feed_p)]
lib.ledger_feed_open.restype = c_int
lib.ledger_feed_next.argtypes = [ledger_feed_p, POINTER(ledger_feed_record), c_size_t, POINTER(c_size_t), c_uint32]
lib.ledger_feed_next.restype = c_int
lib.ledger_feed_confirm.argtypes = [ledger_feed_p, c_uint64]
lib.ledger_feed_confirm.restype = c_int
lib.ledger_feed_close.argtypes = [ledger_feed_p]
lib.ledger_feed_close.restype = None

#: The functions of the header this module declares.
FUNCTIONS = (
    "ledger_version",
    "ledger_last_error",
    "ledger_open",
    "ledger_close",
    "ledger_submit",
    "ledger_lookup",
    "ledger_list",
    "ledger_batch_close",
    "ledger_batch_get",
    "ledger_balance_get",
    "ledger_stats_get",
    "ledger_feed_open",
    "ledger_feed_next",
    "ledger_feed_confirm",
    "ledger_feed_close",
)


def last_error() -> str:
    """This thread's message for its last non-OK status (``ledger_last_error``)."""
    raw = lib.ledger_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def version() -> str:
    """The library's version string (``ledger_version``), e.g. ``"ledger 0.1.0"``."""
    raw = lib.ledger_version()
    return raw.decode("utf-8", "replace") if raw else ""
