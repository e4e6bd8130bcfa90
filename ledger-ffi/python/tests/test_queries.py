"""list pagination, batch close/get, balances."""

from __future__ import annotations

import pytest

from ledger import Balance, BatchSummary, NotFoundError, Tx, TxResult, TxState


def test_list_pagination(book):
    txs = []
    for i in range(1, 26):
        txs.append(Tx.sale(100 + i, 7, 10 + i, "USD"))
        txs.append(Tx.sale(200 + i, 8, i, "USD"))  # interleaved with another client's
    assert set(book.submit(txs)) == {TxResult.OK}
    assert book.submit([Tx.refund(300, 101, 7, 1, "USD")]) == [TxResult.OK]

    pages, after = [], 0
    while True:
        page = book.list(7, after_seq=after, limit=10)
        if not page:
            break
        pages.append(page)
        after = page[-1].seq
    assert [len(p) for p in pages] == [10, 10, 6]
    records = [r for p in pages for r in p]
    assert [r.id for r in records] == [100 + i for i in range(1, 26)] + [300]
    assert all(r.tx.client_id == 7 for r in records)
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The records are as they stand now (101 was refunded after it was listed first).
    assert records[0].state is TxState.PARTIALLY_REFUNDED and records[0].refunded == 1

    assert book.list(7) == records  # the default limit holds them all
    assert book.list(7, limit=3) == records[:3]
    assert book.list(7, after_seq=records[4].seq, limit=2) == records[5:7]
    assert book.list(7, after_seq=records[-1].seq) == []
    assert book.list(7, limit=0) == []
    assert book.list(9) == []
    assert list(book.iter_list(7, page=4)) == records
    assert list(book.iter_list(7, page=26)) == records
    assert list(book.iter_list(8, after_seq=records[10].seq, page=7)) == book.list(8, after_seq=records[10].seq)
    assert len(book.list(8)) == 25


def test_batch_close_and_get(book):
    txs = [
        Tx.sale(1, 7, 10_00, "USD"),
        Tx.refund(2, 1, 7, 2_50, "USD"),
        Tx.authorization(3, 7, 5_00, "USD"),
        Tx.capture(4, 3, 7, 4_00, "USD"),
        Tx.adjustment(5, 7, -50, "USD"),
        Tx.authorization(6, 7, 9_00, "USD"),  # not captured: counts in no batch
        Tx.sale(7, 7, 3_00, "EUR"),  # another currency: another batch
        Tx.sale(8, 9, 1_00, "USD"),  # another client: another batch
    ]
    assert book.submit(txs) == [TxResult.OK] * len(txs)
    usd = book.lookup(1).batch_id
    assert usd != 0 and book.lookup(2).batch_id == usd and book.lookup(4).batch_id == usd
    assert book.lookup(5).batch_id == usd and book.lookup(3).batch_id == usd  # the capture made it count
    assert book.lookup(6).batch_id == 0
    assert len({usd, book.lookup(7).batch_id, book.lookup(8).batch_id}) == 3

    open_batch = book.batch_get(usd)
    assert open_batch.is_open and open_batch.closed_ns == 0

    summary = book.batch_close(7, "USD")
    assert isinstance(summary, BatchSummary)
    assert summary.batch_id == usd and summary.client_id == 7 and summary.currency == "USD"
    assert (summary.payment_count, summary.payment_total) == (2, 14_00)  # the sale and the capture
    assert (summary.refund_count, summary.refund_total) == (1, 2_50)
    assert (summary.adjustment_count, summary.adjustment_total) == (1, -50)
    assert summary.net == 14_00 - 2_50 - 50
    assert summary.first_seq == book.lookup(1).seq and summary.last_seq == book.lookup(5).seq
    assert summary.opened_ns == book.lookup(1).timestamp_ns
    assert summary.closed_ns > book.lookup(8).timestamp_ns and not summary.is_open
    assert book.batch_get(usd) == summary
    assert book.batch_get(usd)._replace(closed_ns=0) == open_batch._replace(closed_ns=0, last_seq=summary.last_seq)

    with pytest.raises(NotFoundError):
        book.batch_close(7, "USD")  # the new open batch holds nothing yet
    assert book.batch_close(7, "EUR").net == 3_00  # the other batches are untouched
    assert book.batch_get(book.lookup(8).batch_id).is_open

    # Later transactions count in a new batch; a capture counts where it is committed.
    assert book.submit([Tx.capture(9, 6, 7, 9_00, "USD"), Tx.refund(10, 1, 7, 1_00, "USD")]) == [TxResult.OK] * 2
    second = book.lookup(9).batch_id
    assert second not in (0, usd) and book.lookup(10).batch_id == second and book.lookup(6).batch_id == second
    summary2 = book.batch_close(7, "USD")
    assert (summary2.batch_id, summary2.payment_total, summary2.refund_total, summary2.net) == (
        second,
        9_00,
        1_00,
        8_00,
    )
    assert summary2.first_seq > summary.last_seq and summary2.opened_ns > summary.closed_ns
    with pytest.raises(NotFoundError):
        book.batch_get(10_000)


def test_balances(book):
    assert book.balance(7, "USD") == Balance(0, 0, 0, 0, 0, 0)
    txs = [
        Tx.sale(1, 7, 10_00, "USD"),
        Tx.refund(2, 1, 7, 2_00, "USD"),
        Tx.authorization(3, 7, 6_00, "USD"),
        Tx.adjustment(4, 7, 75, "USD"),
        Tx.sale(5, 7, 1_00, "JPY"),
    ]
    assert book.submit(txs) == [TxResult.OK] * len(txs)
    assert book.balance(7, "USD") == Balance(
        captured=10_00, refunded=2_00, adjusted=75, net=8_75, settled_net=0, open_net=8_75
    )
    assert book.balance(7, "JPY") == Balance(1_00, 0, 0, 1_00, 0, 1_00)
    closed = book.batch_close(7, "USD")
    assert book.balance(7, "USD") == Balance(10_00, 2_00, 75, 8_75, settled_net=8_75, open_net=0)
    assert closed.net == 8_75
    assert book.submit([Tx.capture(6, 3, 7, 5_00, "USD"), Tx.refund(7, 1, 7, 1_00, "USD")]) == [TxResult.OK] * 2
    b = book.balance(7, "USD")
    assert b == Balance(15_00, 3_00, 75, 12_75, settled_net=8_75, open_net=4_00)
    assert b.net == b.settled_net + b.open_net == b.captured - b.refunded + b.adjusted
    assert book.balance(7, "EUR") == Balance(0, 0, 0, 0, 0, 0)
    assert book.balance(8, "USD") == Balance(0, 0, 0, 0, 0, 0)
