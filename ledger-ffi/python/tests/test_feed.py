"""The change feed over the C ABI: every committed record once, in seq order, as it was
right after its commit; an iterator that follows a writer and ends when the ledger
closes; history the log no longer holds read back the same from the cold tier."""

from __future__ import annotations

import threading

import pytest

from ledger import BatchClose, InvalidArgumentError, Ledger, Tx, TxRecord, TxResult, TxState


def test_feed_returns_each_record_as_committed(book):
    feed = book.feed()
    assert feed.read() == []
    assert book.submit(
        [
            Tx.sale(1, 7, 10_00, "USD"),
            Tx.authorization(2, 7, 5_00, "USD"),
            Tx.refund(3, 1, 7, 10_00, "USD"),
            Tx.capture(4, 2, 7, 4_00, "USD"),
        ]
    ) == [TxResult.OK] * 4
    summary = book.batch_close(7, "USD")
    records = feed.read(timeout=5)
    while len(records) < 5:
        more = feed.read(timeout=5)
        assert more, "every record arrives"
        records += more
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    sale = records[0]
    assert isinstance(sale, TxRecord) and sale.id == 1
    assert (sale.state, sale.captured, sale.refunded) == (TxState.CAPTURED, 10_00, 0)  # then
    assert book.lookup(1).state is TxState.REFUNDED  # now
    assert records[1].state is TxState.AUTHORIZED
    assert records[3].state is TxState.APPLIED and records[3].tx.ref == 2
    assert records[4] == BatchClose(5, summary)
    assert feed.next_seq == 6
    assert feed.read(timeout=0.05) == []
    feed.close()
    feed.close()  # idempotent
    with pytest.raises(InvalidArgumentError):
        feed.read()

    with book.feed(from_seq=4) as later:
        assert later.read(timeout=5) == records[3:]
    with pytest.raises(InvalidArgumentError, match="ahead"):
        book.feed(from_seq=7)


def test_iterating_follows_a_writer_and_ends_when_the_ledger_closes(open_ledger):
    book = open_ledger(sync="none")
    feed = book.feed(hold=True)
    total = 3_000

    def write():
        for start in range(1, total + 1, 100):
            book.submit([Tx.sale(i, 1, i, "USD") for i in range(start, start + 100)])
        book.close()

    writer = threading.Thread(target=write)
    writer.start()
    seen = [(r.seq, r.id) for r in feed]  # ends once the ledger is closed and drained
    writer.join()
    assert seen == [(i, i) for i in range(1, total + 1)]
    feed.close()


def test_history_below_the_logs_start_reads_the_same(tmp_path):
    book = Ledger(tmp_path / "ledger", sync="none", segment_bytes=64 << 10, checkpoint_every_records=500)
    try:
        with book.feed() as follower:
            seen = []
            for start in range(1, 12_001, 200):
                book.submit([Tx.sale(i, 1 + i % 3, i, "USD") for i in range(start, start + 200)])
                if start % 2_000 == 1:
                    book.batch_close(1, "USD")
                seen += follower.read(timeout=5)
            while len(seen) < 12_006:
                more = follower.read(timeout=5)
                assert more, "every record arrives"
                seen += more
        assert book.stats()["checkpoints"] >= 3
        with book.feed(from_seq=1) as again:  # the log's start was removed: from the runs
            records = []
            while len(records) < len(seen):
                more = again.read(timeout=5)
                assert more
                records += more
        assert records == seen
        assert any(isinstance(r, BatchClose) for r in records)
    finally:
        book.close()
