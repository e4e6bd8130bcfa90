"""One Ledger used from several Python threads at once."""

from __future__ import annotations

import threading
import time

import ledger
from ledger import InvalidArgumentError, Tx, TxResult
from conftest import SEGMENT


def test_many_threads_on_one_ledger(book):
    writers, calls, per_call = 6, 30, 40
    errors = []
    start = threading.Barrier(writers + 2)
    done = threading.Event()

    def writer(w):
        try:
            start.wait()
            for c in range(calls):
                base = (w * calls + c) * 1000
                client = 100 + w
                txs = []
                for k in range(per_call // 2):
                    txs.append(Tx.sale(base + 2 * k + 1, client, 10_00, "USD"))
                    txs.append(Tx.refund(base + 2 * k + 2, base + 2 * k + 1, client, 1_00, "USD"))
                if c % 2:
                    results = book.submit(txs)
                else:
                    results = list(book.submit_packed(ledger.pack_txs(txs)))
                if any(r != TxResult.OK for r in results):
                    errors.append((w, c, results))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            start.wait()
            while not done.is_set():
                for w in range(writers):
                    book.balance(100 + w, "USD")
                    records = book.list(100 + w, limit=50)
                    for r in records:
                        assert book.lookup(r.id).id == r.id
                    b = book.balance(100 + w, "USD")
                    assert b.net == b.captured - b.refunded  # a consistent view, never half a call
                    assert b.captured % (per_call // 2 * 10_00) == 0
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads[:writers]:
        t.join()
    done.set()
    for t in threads[writers:]:
        t.join()
    assert errors == []
    for w in range(writers):
        records = list(book.iter_list(100 + w, page=500))
        assert len(records) == calls * per_call
        seqs = [r.seq for r in records]
        assert seqs == sorted(seqs)
        assert book.balance(100 + w, "USD").net == calls * (per_call // 2) * 9_00


def test_calls_release_the_gil(open_ledger):
    """While one thread is inside a long ledger_submit, other Python threads run."""
    book = open_ledger(sync="always", segment_bytes=1 << 24)
    packed = ledger.pack_txs([Tx.sale(i, 1 + i % 16, 1, "USD") for i in range(1, 200_001)])
    ticks = []
    inside = threading.Event()
    finished = threading.Event()

    def ticker():
        inside.wait()
        while not finished.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    t = threading.Thread(target=ticker)
    t.start()
    inside.set()
    time.sleep(0.01)
    begin = time.perf_counter()
    codes = book.submit_packed(packed)
    end = time.perf_counter()
    finished.set()
    t.join()
    assert set(codes) == {0}
    during = [x for x in ticks if begin < x < end]
    assert end - begin > 0.02, "the call was too short to tell"
    assert len(during) >= 3, f"{len(during)} ticks during a {end - begin:.3f} s call"


def test_close_waits_for_calls_in_flight(tmp_path):
    """close() from one thread while others submit: the calls in flight finish, later ones
    raise InvalidArgumentError('closed'), nothing crashes, and every acknowledged
    transaction is there after a reopen."""
    path = tmp_path / "ledger"
    book = ledger.Ledger(path, sync="always", segment_bytes=SEGMENT)
    acked = [[] for _ in range(4)]
    refused = []
    running = threading.Barrier(5)

    def writer(w):
        running.wait()
        n = 0
        while True:
            ids = [(w << 40) | (n + k) for k in range(1, 51)]
            try:
                results = book.submit([Tx.sale(i, 1 + w, 1, "USD") for i in ids])
            except InvalidArgumentError as e:
                refused.append(e.message)
                return
            assert results == [TxResult.OK] * 50
            acked[w].extend(ids)
            n += 50

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    running.wait()
    time.sleep(0.2)
    book.close()
    for t in threads:
        t.join()
    assert len(refused) == 4 and all("closed" in m for m in refused)
    assert all(acked)
    with ledger.Ledger(path, segment_bytes=SEGMENT) as again:
        for w in range(4):
            assert len(list(again.iter_list(1 + w))) >= len(acked[w])
            assert all(again.get(i) is not None for i in acked[w])


def batches_of(book, client, currency):
    found, batch_id = {}, 1
    while True:
        try:
            summary = book.batch_get(batch_id)
        except ledger.NotFoundError:
            return found
        if (summary.client_id, summary.currency) == (client, currency):
            found[batch_id] = summary
        batch_id += 1


def check_batch_accounting(book, client):
    """Every committed sale, capture, refund and adjustment counts in exactly one batch,
    and the batches' totals are the sums of what counts in them."""
    batches = batches_of(book, client, "USD")
    balance = book.balance(client, "USD")
    assert sum(b.net for b in batches.values()) == balance.net
    assert sum(b.net for b in batches.values() if not b.is_open) == balance.settled_net
    assert sum(1 for b in batches.values() if b.is_open) <= 1
    totals = {}
    for r in book.iter_list(client):
        counted = r.tx.kind in (ledger.Kind.CAPTURE, ledger.Kind.REFUND, ledger.Kind.ADJUSTMENT) or (
            r.tx.kind == ledger.Kind.PAYMENT and not r.tx.flags
        )
        if not counted:
            continue
        b = batches[r.batch_id]
        assert b.first_seq <= r.seq <= b.last_seq and (b.is_open or r.timestamp_ns < b.closed_ns)
        t = totals.setdefault(r.batch_id, [0] * 6)
        slot = {ledger.Kind.PAYMENT: 0, ledger.Kind.CAPTURE: 0, ledger.Kind.REFUND: 2, ledger.Kind.ADJUSTMENT: 4}[
            r.tx.kind
        ]
        t[slot] += 1
        t[slot + 1] += r.tx.amount
    for batch_id, b in batches.items():
        expected = [
            b.payment_count,
            b.payment_total,
            b.refund_count,
            b.refund_total,
            b.adjustment_count,
            b.adjustment_total,
        ]
        assert totals.get(batch_id, [0] * 6) == expected, batch_id
    return batches


def test_batch_closes_concurrent_with_submits(tmp_path):
    path = tmp_path / "ledger"
    client = 7
    book = ledger.Ledger(path, sync="none", segment_bytes=1 << 22)
    stop = threading.Event()
    closed = []
    errors = []

    def closer():
        while not stop.is_set():
            try:
                closed.append(book.batch_close(client, "USD"))
            except ledger.NotFoundError:
                pass

    def writer(w):
        try:
            for c in range(60):
                base = (w * 1000 + c) * 100
                txs = []
                for k in range(0, 30, 3):
                    txs.append(Tx.sale(base + k + 1, client, 10_00 + k, "USD"))
                    txs.append(Tx.authorization(base + k + 2, client, 5_00, "USD"))
                    txs.append(Tx.refund(base + k + 3, base + k + 1, client, 10, "USD"))
                later = [Tx.capture(base + 90 + j, base + 3 * j + 2, client, 4_00, "USD") for j in range(5)]
                later.append(Tx.adjustment(base + 99, client, -3 if c % 2 else 5, "USD"))
                if set(book.submit(txs)) != {TxResult.OK} or set(book.submit(later)) != {TxResult.OK}:
                    errors.append((w, c))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    closing = threading.Thread(target=closer)
    closing.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    closing.join()
    assert errors == []
    assert len(closed) >= 2
    batches = check_batch_accounting(book, client)
    assert {b.batch_id for b in closed} <= set(batches)
    book.close()
    with ledger.Ledger(path, segment_bytes=1 << 22) as again:  # replay reproduces every batch
        assert check_batch_accounting(again, client) == batches
