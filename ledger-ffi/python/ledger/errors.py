"""Exceptions: one per ``LEDGER_ERR_*`` status, all subclasses of :class:`LedgerError`."""

from __future__ import annotations

from typing import Dict, Type

from . import _ffi

__all__ = [
    "LedgerError",
    "InvalidArgumentError",
    "IOError_",
    "CorruptError",
    "NotFoundError",
    "LockedError",
    "InternalError",
    "error_for_status",
]


class LedgerError(Exception):
    """A call into the ledger failed as a whole.

    ``status`` is the ``LEDGER_ERR_*`` code the call returned and ``message`` the text of
    ``ledger_last_error()`` on the calling thread right after it (or, for an argument the
    wrapper refuses before calling, the wrapper's own text).
    """

    status: int
    message: str

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(status, message)
        self.status = int(status)
        self.message = message

    def __str__(self) -> str:
        return f"{self.message or 'ledger call failed'} (status {self.status}: {_status_name(self.status)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class InvalidArgumentError(LedgerError, ValueError):
    """``LEDGER_ERR_INVALID_ARGUMENT``: null pointer, bad option, bad UTF-8 path, unknown
    currency argument, a closed ledger, or a value that does not fit its C field."""


class IOError_(LedgerError):
    """``LEDGER_ERR_IO``: an operating-system error (I/O, permissions, disk full). After a
    failed submit the outcome of that call is unknown; resubmitting the same ids after a
    reopen is safe (idempotent)."""


class CorruptError(LedgerError):
    """``LEDGER_ERR_CORRUPT``: damage beyond a torn tail; the ledger refuses to open."""


class NotFoundError(LedgerError, LookupError):
    """``LEDGER_ERR_NOT_FOUND``: no such transaction or batch, or nothing to close."""


class LockedError(LedgerError):
    """``LEDGER_ERR_LOCKED``: another handle or process holds the directory."""


class InternalError(LedgerError):
    """``LEDGER_ERR_INTERNAL``: a bug in the library (a Rust panic caught at the boundary)."""


_BY_STATUS: Dict[int, Type[LedgerError]] = {
    _ffi.LEDGER_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    _ffi.LEDGER_ERR_IO: IOError_,
    _ffi.LEDGER_ERR_CORRUPT: CorruptError,
    _ffi.LEDGER_ERR_NOT_FOUND: NotFoundError,
    _ffi.LEDGER_ERR_LOCKED: LockedError,
    _ffi.LEDGER_ERR_INTERNAL: InternalError,
}

_NAMES = {
    value: name for name, value in _ffi.CONSTANTS.items() if name.startswith("LEDGER_ERR_") or name == "LEDGER_OK"
}


def _status_name(status: int) -> str:
    return _NAMES.get(status, "unknown status")


def error_for_status(status: int, message: str) -> LedgerError:
    """The exception for a non-OK status: its subclass, or :class:`LedgerError` itself for
    a status this version does not know."""
    return _BY_STATUS.get(status, LedgerError)(status, message)
