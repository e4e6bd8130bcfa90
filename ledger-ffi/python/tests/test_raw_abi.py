"""The C functions called directly through ctypes, for what the wrapper never does:
NULL pointers, NULL options, a NULL summary, and ledger_last_error on a fresh thread."""

from __future__ import annotations

import threading
from ctypes import byref, c_size_t, c_uint32

import pytest

import ledger
from ledger import _ffi

lib = _ffi.lib
OK, BAD, NOT_FOUND = ledger.LEDGER_OK, ledger.LEDGER_ERR_INVALID_ARGUMENT, ledger.LEDGER_ERR_NOT_FOUND


@pytest.fixture
def handle(tmp_path):
    h = _ffi.ledger_p()
    opts = _ffi.ledger_options(ledger.LEDGER_SYNC_ALWAYS, 0, 1 << 20)
    assert lib.ledger_open(str(tmp_path / "raw").encode(), byref(opts), byref(h)) == OK
    assert bool(h)
    yield h
    lib.ledger_close(h)


def sale(id_, client=7, amount=1_00):
    tx = _ffi.ledger_tx()
    tx.id.lo = id_
    tx.client_id, tx.amount, tx.kind, tx.currency = client, amount, ledger.LEDGER_KIND_PAYMENT, b"USD"
    return tx


def test_open_with_null_options_uses_the_defaults(tmp_path):
    h = _ffi.ledger_p()
    assert lib.ledger_open(str(tmp_path / "defaults").encode(), None, byref(h)) == OK
    txs = (_ffi.ledger_tx * 1)(sale(1))
    results = (c_uint32 * 1)(99)
    assert lib.ledger_submit(h, txs, 1, results) == OK and results[0] == ledger.LEDGER_TX_OK
    lib.ledger_close(h)
    segments = [p for p in (tmp_path / "defaults").iterdir() if p.name.endswith(".seg")]
    assert segments and segments[0].stat().st_size == 64 << 20  # the default segment size


def test_null_arguments_are_invalid(handle, tmp_path):
    h = _ffi.ledger_p()
    assert lib.ledger_open(None, None, byref(h)) == BAD and not h
    assert "dir" in _ffi.last_error()
    assert lib.ledger_open(str(tmp_path / "x").encode(), None, None) == BAD
    bad_opts = _ffi.ledger_options(0, 1, 0)  # reserved must be 0
    assert lib.ledger_open(str(tmp_path / "y").encode(), byref(bad_opts), byref(h)) == BAD and not h
    assert "reserved" in _ffi.last_error()

    txs = (_ffi.ledger_tx * 1)(sale(1))
    results = (c_uint32 * 1)()
    assert lib.ledger_submit(None, txs, 1, results) == BAD
    assert lib.ledger_submit(handle, None, 1, results) == BAD
    assert lib.ledger_submit(handle, txs, 1, None) == BAD
    assert lib.ledger_submit(handle, None, 0, None) == OK  # n = 0: nothing to read or write
    record = _ffi.ledger_tx_record()
    assert lib.ledger_lookup(handle, _ffi.ledger_id(1, 0), byref(record)) == NOT_FOUND  # nothing committed above

    assert lib.ledger_lookup(None, _ffi.ledger_id(1, 0), byref(record)) == BAD
    assert lib.ledger_lookup(handle, _ffi.ledger_id(1, 0), None) == BAD
    written = c_size_t(123)
    assert lib.ledger_list(handle, 7, 0, None, 0, byref(written)) == OK and written.value == 0
    assert lib.ledger_list(handle, 7, 0, None, 5, byref(written)) == BAD
    assert lib.ledger_list(handle, 7, 0, (_ffi.ledger_tx_record * 1)(), 1, None) == BAD
    assert lib.ledger_list(None, 7, 0, (_ffi.ledger_tx_record * 1)(), 1, byref(written)) == BAD
    summary = _ffi.ledger_batch_summary()
    assert lib.ledger_batch_close(handle, 7, None, byref(summary)) == BAD
    assert lib.ledger_batch_close(None, 7, b"USD", byref(summary)) == BAD
    assert lib.ledger_batch_get(handle, 1, None) == BAD
    balance = _ffi.ledger_balance()
    assert lib.ledger_balance_get(handle, 7, None, byref(balance)) == BAD
    assert lib.ledger_balance_get(handle, 7, b"USD", None) == BAD
    lib.ledger_close(None)  # a no-op


def test_batch_close_with_a_null_summary(handle):
    txs = (_ffi.ledger_tx * 2)(sale(1), sale(2))
    results = (c_uint32 * 2)()
    assert lib.ledger_submit(handle, txs, 2, results) == OK and list(results) == [0, 0]
    assert lib.ledger_batch_close(handle, 7, b"USD", None) == OK  # the summary is not wanted
    summary = _ffi.ledger_batch_summary()
    assert lib.ledger_batch_get(handle, 1, byref(summary)) == OK
    assert summary.closed_ns != 0 and summary.payment_total == 2_00 and summary.currency == b"USD"
    assert lib.ledger_batch_close(handle, 7, b"USD", None) == NOT_FOUND


def test_lookup_and_list_fill_the_structs(handle):
    tx = sale((1 << 64) | 5, client=9, amount=12_34)
    tx.id.hi, tx.device_id, tx.user_data = 3, 44, 55
    txs = (_ffi.ledger_tx * 1)(tx)
    results = (c_uint32 * 1)()
    assert lib.ledger_submit(handle, txs, 1, results) == OK and results[0] == 0
    record = _ffi.ledger_tx_record()
    assert lib.ledger_lookup(handle, _ffi.ledger_id(tx.id.lo, 3), byref(record)) == OK
    assert bytes(record.tx) == bytes(tx)
    assert record.state == ledger.LEDGER_STATE_CAPTURED and record.captured == 12_34 and record.reserved == 0
    out = (_ffi.ledger_tx_record * 4)()
    written = c_size_t(99)
    assert lib.ledger_list(handle, 9, 0, out, 4, byref(written)) == OK and written.value == 1
    assert bytes(out[0]) == bytes(record)


def test_last_error_is_empty_on_a_fresh_thread(handle):
    record = _ffi.ledger_tx_record()
    assert lib.ledger_lookup(handle, _ffi.ledger_id(42, 0), byref(record)) == NOT_FOUND
    assert _ffi.last_error() == "no such transaction"
    seen = []
    t = threading.Thread(target=lambda: seen.append(_ffi.last_error()))
    t.start()
    t.join()
    assert seen == [""]
    # A later successful call does not clear this thread's message.
    assert lib.ledger_batch_get(handle, 1, byref(_ffi.ledger_batch_summary())) == NOT_FOUND
    txs = (_ffi.ledger_tx * 1)(sale(1))
    assert lib.ledger_submit(handle, txs, 1, (c_uint32 * 1)()) == OK
    assert _ffi.last_error() == "no such batch"


def test_version_is_static():
    first = lib.ledger_version()
    assert first == lib.ledger_version() and first.startswith(b"ledger ")
