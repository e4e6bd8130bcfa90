"""Opening, closing, the directory lock, persistence across reopen, garbage collection
and fork."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

import ledger
from ledger import Balance, InvalidArgumentError, Ledger, LockedError, Sync, Tx, TxResult, TxState
from conftest import SEGMENT, child_env


def test_context_manager_closes_and_releases_the_lock(tmp_path):
    path = tmp_path / "ledger"
    with Ledger(path, segment_bytes=SEGMENT) as book:
        assert not book.closed and book.sync is Sync.ALWAYS
        assert book.submit([Tx.sale(1, 7, 10_00, "USD")]) == [TxResult.OK]
        with pytest.raises(LockedError):  # a second open while open
            Ledger(path, segment_bytes=SEGMENT)
        with pytest.raises(LockedError):  # the same directory by another spelling
            Ledger(tmp_path / "." / "ledger" / ".." / "ledger", segment_bytes=SEGMENT)
    assert book.closed
    with pytest.raises(InvalidArgumentError):
        book.lookup(1)
    with Ledger(path, segment_bytes=SEGMENT) as again:  # after close it succeeds
        assert again.lookup(1).tx.amount == 10_00


def test_open_creates_missing_parents(tmp_path):
    path = tmp_path / "a" / "b" / "c"
    with Ledger(path, segment_bytes=SEGMENT) as book:
        assert book.submit([Tx.sale(1, 7, 1, "USD")]) == [TxResult.OK]
    assert (path / "LOCK").is_file()
    with Ledger(str(path).encode(), segment_bytes=SEGMENT) as book:  # a bytes path
        assert book.lookup(1).tx.amount == 1


def test_context_manager_closes_on_exception(tmp_path):
    path = tmp_path / "ledger"
    with pytest.raises(RuntimeError):
        with Ledger(path, segment_bytes=SEGMENT) as book:
            raise RuntimeError("boom")
    assert book.closed
    Ledger(path, segment_bytes=SEGMENT).close()


def test_garbage_collection_closes_the_handle(tmp_path):
    path = tmp_path / "ledger"
    book = Ledger(path, segment_bytes=SEGMENT)
    assert book.submit([Tx.sale(1, 7, 1, "USD")]) == [TxResult.OK]
    del book
    gc.collect()
    with Ledger(path, segment_bytes=SEGMENT) as again:  # __del__ freed it and released the lock
        assert again.lookup(1).tx.amount == 1


def test_lock_across_processes(tmp_path):
    path = tmp_path / "ledger"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, ledger
            book = ledger.Ledger({str(path)!r}, segment_bytes={SEGMENT})
            print("open", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(LockedError) as excinfo:
            Ledger(path, segment_bytes=SEGMENT)
        assert excinfo.value.status == ledger.LEDGER_ERR_LOCKED
    finally:
        holder.kill()
        holder.wait()
    with Ledger(path, segment_bytes=SEGMENT):  # the lock died with the process
        pass


@pytest.mark.parametrize("sync", ["always", "none"])
def test_reopen_keeps_everything(tmp_path, sync):
    path = tmp_path / "ledger"
    with Ledger(path, sync=sync, segment_bytes=8192) as book:  # small segments: several files
        txs = []
        for i in range(1, 301):
            txs.append(Tx.sale(i * 10, 1 + i % 3, 1_00 + i, "USD", device_id=i, user_data=i * 7))
            if i % 4 == 0:
                txs.append(Tx.refund(i * 10 + 1, i * 10, 1 + i % 3, 50, "USD"))
            if i % 5 == 0:
                txs.append(Tx.authorization(i * 10 + 2, 1 + i % 3, 9_00, "EUR"))
                txs.append(Tx.capture(i * 10 + 3, i * 10 + 2, 1 + i % 3, 8_00, "EUR"))
        for start in range(0, len(txs), 37):
            assert set(book.submit(txs[start : start + 37])) == {TxResult.OK}
        closed = book.batch_close(1, "USD")
        assert book.submit([Tx.adjustment(5, 1, -3, "USD"), Tx.authorization(6, 2, 1, "USD")]) == [TxResult.OK] * 2
        records = {c: book.list(c, limit=10_000) for c in (1, 2, 3)}
        balances = {(c, cur): book.balance(c, cur) for c in (1, 2, 3) for cur in ("USD", "EUR")}
        batches = [book.batch_get(b) for b in range(1, closed.batch_id + 3)]
    assert sum(map(len, records.values())) == len(txs) + 2

    with Ledger(path, sync=sync, segment_bytes=8192) as book:
        assert {c: book.list(c, limit=10_000) for c in (1, 2, 3)} == records  # timestamps, seqs, states too
        assert {(c, cur): book.balance(c, cur) for c in (1, 2, 3) for cur in ("USD", "EUR")} == balances
        assert [book.batch_get(b) for b in range(1, closed.batch_id + 3)] == batches
        assert book.batch_get(closed.batch_id) == closed and not closed.is_open
        assert balances[(1, "USD")].settled_net == closed.net
        assert book.lookup(6).state is TxState.AUTHORIZED
        # Idempotency survives the reopen; new transactions follow the old ones.
        assert book.submit([txs[0], txs[0]._replace(amount=1)]) == [TxResult.EXISTS, TxResult.EXISTS_DIFFERENT]
        assert book.submit([Tx.capture(7, 6, 2, 1, "USD")]) == [TxResult.OK]
        last = max(r.seq for rs in records.values() for r in rs)
        assert book.lookup(7).seq > last
        assert book.lookup(7).timestamp_ns > max(r.timestamp_ns for rs in records.values() for r in rs)


def test_sync_none_is_accepted_and_named(open_ledger):
    book = open_ledger(sync="none")
    assert book.sync is Sync.NONE
    assert book.submit([Tx.sale(1, 7, 1, "USD")]) == [TxResult.OK]
    assert "sync=" in repr(book)
    assert open_ledger("other", sync=Sync.NONE).sync is Sync.NONE


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork")
def test_forked_child_cannot_use_or_hang_on_the_parents_handle(tmp_path):
    """The engine's threads do not survive fork: a child's calls raise at once, and its
    exit (which garbage collects the copy) does not hang waiting for them."""
    script = textwrap.dedent(f"""
        import os, sys, ledger
        book = ledger.Ledger({str(tmp_path / "ledger")!r}, segment_bytes={SEGMENT})
        assert book.submit([ledger.Tx.sale(1, 7, 1, "USD")]) == [ledger.TxResult.OK]
        pid = os.fork()
        if pid == 0:
            try:
                book.submit([ledger.Tx.sale(2, 7, 1, "USD")])
                print("child: no error", flush=True)
            except ledger.InvalidArgumentError as e:
                print("child: refused", "fork" in e.message, flush=True)
            sys.exit(0)  # normal exit: finalization collects `book`
        _, status = os.waitpid(pid, 0)
        print("parent: child exit", os.waitstatus_to_exitcode(status), flush=True)
        assert book.submit([ledger.Tx.sale(3, 7, 1, "USD")]) == [ledger.TxResult.OK]
        book.close()
        print("parent: done", flush=True)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=child_env(), stdout=subprocess.PIPE, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["child: refused True", "parent: child exit 0", "parent: done"]


def test_balance_of_unknown_accounts_is_zero(book):
    assert book.balance(12345, "USD") == Balance(0, 0, 0, 0, 0, 0)
    assert book.submit([Tx.authorization(1, 7, 5_00, "USD")]) == [TxResult.OK]
    assert book.balance(7, "USD") == Balance(0, 0, 0, 0, 0, 0)  # an authorization counts in nothing


def test_reopen_from_a_snapshot(tmp_path):
    """Past 2**20 records the engine writes a snapshot by itself; a reopen loads it and
    replays only the log after it. Everything must read back the same."""
    path = tmp_path / "ledger"
    per_call, calls = 8190, 132  # 1,081,080 transactions
    with Ledger(path, sync="none", segment_bytes=1 << 26) as book:
        for c in range(calls):
            first = c * per_call + 1
            txs = []
            for n in range(first, first + per_call):
                if n % 10 == 0:
                    txs.append(Tx.refund(n, n - 1, 1 + (n - 1) % 16, 1, "USD"))
                else:
                    txs.append(Tx.sale(n, 1 + n % 16, 1000, "USD", user_data=n))
            codes = book.submit_packed(ledger.pack_txs(txs))
            assert set(codes) == {0}
            if c == 60:
                summary = book.batch_close(3, "USD")
        assert book.submit([Tx.authorization(2**100, 5, 7_00, "EUR")]) == [TxResult.OK]
        balances = [book.balance(client, "USD") for client in range(1, 17)]
        samples = [book.lookup(n) for n in (1, 9, 10, 499_999, 1_000_000, calls * per_call)]
        tail = book.list(4, after_seq=1_050_000, limit=500)
    snapshots = [p.name for p in path.iterdir() if p.name.startswith("snapshot")]
    assert snapshots, "expected the engine to have written a snapshot"
    with Ledger(path, sync="none", segment_bytes=1 << 26) as book:
        assert [book.balance(client, "USD") for client in range(1, 17)] == balances
        assert [book.lookup(n) for n in (1, 9, 10, 499_999, 1_000_000, calls * per_call)] == samples
        assert book.list(4, after_seq=1_050_000, limit=500) == tail
        assert book.batch_get(summary.batch_id) == summary
        # Payments from before the snapshot can still be refunded and captured, once.
        last_sale = calls * per_call - 1
        assert book.submit(
            [
                Tx.refund(2**64 + 1, 11, 1 + 11 % 16, 999, "USD"),
                Tx.refund(2**64 + 2, 11, 1 + 11 % 16, 2, "USD"),
                Tx.capture(2**64 + 3, 2**100, 5, 7_00, "EUR"),
                Tx.sale(last_sale, 1 + last_sale % 16, 1000, "USD", user_data=last_sale),
            ]
        ) == [TxResult.OK, TxResult.EXCEEDS_REF_AMOUNT, TxResult.OK, TxResult.EXISTS]


def test_a_tiny_memory_budget_keeps_old_payments_exact(tmp_path):
    """hot_bytes_max and checkpoint_every_records reach the engine: thousands of sales go
    through checkpoints into the cold tier; after a reopen the first one is still EXISTS
    and refundable, and one past its capture is refused."""
    path = tmp_path / "ledger"
    opts = dict(sync="none", segment_bytes=SEGMENT, hot_bytes_max=64 * 1024, checkpoint_every_records=100)
    with Ledger(path, **opts) as book:
        sales = [Tx.sale(i, 1 + i % 3, 100 + i, "USD") for i in range(1, 3001)]
        for start in range(0, len(sales), 100):
            assert book.submit(sales[start : start + 100]) == [TxResult.OK] * 100
    assert any(p.name.startswith("run-") for p in path.iterdir()), "runs were written"
    with Ledger(path, **opts) as book:
        stats = book.stats()
        assert stats["transactions"] == 3000 and stats["cold_runs"] >= 1, stats
        assert stats["cold_entries"] + stats["hot_transactions"] >= 3000, stats
        assert stats["hot_bytes"] <= 64 * 1024 + 100 * 130, stats
        assert book.submit([sales[0]]) == [TxResult.EXISTS]
        assert book.submit([Tx.refund(10_001, 1, 2, 60, "USD")]) == [TxResult.OK]
        assert book.submit([Tx.refund(10_002, 1, 2, 42, "USD")]) == [TxResult.EXCEEDS_REF_AMOUNT]
        assert book.lookup(1).refunded == 60
