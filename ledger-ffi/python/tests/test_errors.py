"""Failed calls raise the LedgerError subclass of their status, carrying the status and
ledger_last_error()'s message; values that do not fit the C fields are refused before
any call."""

from __future__ import annotations

import os
import threading

import pytest

import ledger
from ledger import (
    CorruptError,
    InternalError,
    InvalidArgumentError,
    IOError_,
    Ledger,
    LedgerError,
    LockedError,
    NotFoundError,
    Tx,
    TxResult,
)
from conftest import SEGMENT


def check(excinfo, cls, status, *fragments):
    e = excinfo.value
    assert type(e) is cls
    assert isinstance(e, LedgerError)
    assert e.status == status
    for fragment in fragments:
        assert fragment in e.message, e.message
    assert e.message in str(e)
    return e


def test_error_classes_by_status():
    expected = {
        ledger.LEDGER_ERR_INVALID_ARGUMENT: InvalidArgumentError,
        ledger.LEDGER_ERR_IO: IOError_,
        ledger.LEDGER_ERR_CORRUPT: CorruptError,
        ledger.LEDGER_ERR_NOT_FOUND: NotFoundError,
        ledger.LEDGER_ERR_LOCKED: LockedError,
        ledger.LEDGER_ERR_INTERNAL: InternalError,
    }
    for status, cls in expected.items():
        e = ledger.error_for_status(status, "why")
        assert type(e) is cls and e.status == status and e.message == "why"
        assert issubclass(cls, LedgerError)
    unknown = ledger.error_for_status(42, "new")
    assert type(unknown) is LedgerError and unknown.status == 42
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(NotFoundError, LookupError)
    assert "LEDGER_ERR_LOCKED" in str(ledger.error_for_status(5, "held"))


def test_not_found(book):
    with pytest.raises(NotFoundError) as excinfo:
        book.lookup(12345)
    e = check(excinfo, NotFoundError, ledger.LEDGER_ERR_NOT_FOUND, "no such transaction")
    assert ledger.last_error() == e.message  # read on this thread, right after the call
    with pytest.raises(NotFoundError) as excinfo:
        book.batch_get(1)
    check(excinfo, NotFoundError, 4, "no such batch")
    with pytest.raises(NotFoundError) as excinfo:
        book.batch_get(0)
    with pytest.raises(NotFoundError) as excinfo:
        book.batch_close(7, "USD")  # nothing to close
    check(excinfo, NotFoundError, 4, "holds no transaction")
    assert book.get(12345) is None
    with pytest.raises(NotFoundError):
        book.lookup(0)  # {0,0} is never valid


def test_locked(book, tmp_path):
    with pytest.raises(LockedError) as excinfo:
        Ledger(tmp_path / "ledger", segment_bytes=SEGMENT)
    check(excinfo, LockedError, ledger.LEDGER_ERR_LOCKED, "locked")


def test_invalid_arguments_reported_by_the_library(book, tmp_path):
    with pytest.raises(InvalidArgumentError) as excinfo:
        Ledger(tmp_path / "a", sync=7)
    check(excinfo, InvalidArgumentError, ledger.LEDGER_ERR_INVALID_ARGUMENT, "unknown sync mode 7")
    with pytest.raises(InvalidArgumentError) as excinfo:
        Ledger(tmp_path / "b", segment_bytes=1000)
    check(excinfo, InvalidArgumentError, 1, "segment_bytes")
    with pytest.raises(InvalidArgumentError) as excinfo:
        Ledger(tmp_path / "c", segment_bytes=8192 + 1)
    check(excinfo, InvalidArgumentError, 1, "4096")
    with pytest.raises(InvalidArgumentError) as excinfo:
        Ledger(os.fsencode(str(tmp_path)) + b"/\xff\xfe")
    check(excinfo, InvalidArgumentError, 1, "UTF-8")
    with pytest.raises(InvalidArgumentError) as excinfo:
        Ledger("")
    check(excinfo, InvalidArgumentError, 1, "empty")
    assert book.submit([Tx.sale(1, 7, 1, "USD")]) == [TxResult.OK]
    with pytest.raises(InvalidArgumentError) as excinfo:
        book.batch_close(7, "XYZ")
    check(excinfo, InvalidArgumentError, 1, "XYZ")
    with pytest.raises(InvalidArgumentError) as excinfo:
        book.balance(7, "usd")
    check(excinfo, InvalidArgumentError, 1, "usd")
    assert book.batch_close(7, "USD").net == 1  # the handle is fine after failed calls


def test_io_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(IOError_) as excinfo:
        Ledger(blocker / "ledger", segment_bytes=SEGMENT)
    check(excinfo, IOError_, ledger.LEDGER_ERR_IO, str(blocker))
    with pytest.raises(LedgerError) as excinfo:  # the path itself is a file
        Ledger(blocker, segment_bytes=SEGMENT)
    check(excinfo, IOError_, ledger.LEDGER_ERR_IO, "not a directory")


def test_refused_before_calling(book):
    """Values that do not fit their C field raise InvalidArgumentError (a ValueError),
    and nothing of that call is committed."""
    good = Tx.sale(1, 7, 1, "USD")
    bad = [
        Tx.sale(2, 7, 2**63, "USD"),
        Tx.sale(2, 7, -(2**63) - 1, "USD"),
        Tx.sale(-1, 7, 1, "USD"),
        Tx.sale(2**128, 7, 1, "USD"),
        Tx.sale(2, 2**64, 1, "USD"),
        Tx.sale(2, -7, 1, "USD"),
        Tx.sale(2, 7, 1, "USD", user_data=2**64),
        Tx.sale(2, 7, 1, "USD", device_id=-1),
        Tx(2, 7, 1, "USD", kind=2**32),
        Tx(2, 7, 1, "USD", flags=-1),
        Tx(2, 7, 1, "USD", ledger.Kind.REFUND, ref=-3),
        Tx.sale(2, 7, 1, "DOLLAR"),
        Tx.sale(2, 7, 1, "€UR"),
    ]
    for tx in bad:
        with pytest.raises(InvalidArgumentError) as excinfo:
            book.submit([good, tx])
        assert excinfo.value.status == ledger.LEDGER_ERR_INVALID_ARGUMENT
        assert isinstance(excinfo.value, ValueError)
        with pytest.raises(InvalidArgumentError):
            ledger.pack_txs([tx])
    with pytest.raises(NotFoundError):
        book.lookup(1)
    with pytest.raises(TypeError):
        book.submit([Tx.sale(1.5, 7, 1, "USD")])
    with pytest.raises(TypeError):
        book.submit([object()])
    for call in (
        lambda: book.lookup(-1),
        lambda: book.lookup(2**128),
        lambda: book.list(-1),
        lambda: book.batch_get(2**64),
    ):
        with pytest.raises(InvalidArgumentError):
            call()
    with pytest.raises(InvalidArgumentError):
        book.list(7, limit=-1)
    with pytest.raises(InvalidArgumentError):
        book.balance(7, "US\0D")
    with pytest.raises(InvalidArgumentError):
        Ledger("/tmp/with\0nul")
    with pytest.raises(InvalidArgumentError):
        Ledger("/tmp/x", sync="sometimes")
    with pytest.raises(InvalidArgumentError):
        Ledger("/tmp/x", segment_bytes=-1)


def test_closed_ledger_refuses_calls(open_ledger):
    book = open_ledger()
    book.close()
    book.close()  # idempotent
    for call in (
        lambda: book.submit([Tx.sale(1, 7, 1, "USD")]),
        lambda: book.submit_packed(ledger.pack_txs([Tx.sale(1, 7, 1, "USD")])),
        lambda: book.lookup(1),
        lambda: book.list(7),
        lambda: book.batch_close(7, "USD"),
        lambda: book.batch_get(1),
        lambda: book.balance(7, "USD"),
    ):
        with pytest.raises(InvalidArgumentError) as excinfo:
            call()
        assert "closed" in excinfo.value.message


def test_last_error_is_per_thread(book):
    """ledger_last_error is thread-local: each thread's exception carries its own message
    even while another thread fails differently at the same time."""
    assert book.submit([Tx.sale(1, 7, 1, "USD")]) == [TxResult.OK]
    mismatches = []
    start = threading.Barrier(4)

    def lookups():
        start.wait()
        for _ in range(300):
            try:
                book.lookup(999)
            except NotFoundError as e:
                if e.message != "no such transaction":
                    mismatches.append(e.message)

    def bad_currency():
        start.wait()
        for _ in range(300):
            try:
                book.balance(7, "ZZZ")
            except InvalidArgumentError as e:
                if "ZZZ" not in e.message:
                    mismatches.append(e.message)

    threads = [threading.Thread(target=f) for f in (lookups, bad_currency, lookups, bad_currency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
