"""Every LEDGER_TX_* result code and every LEDGER_STATE_*, through `submit`."""

from __future__ import annotations

import pytest

from ledger import FLAG_AUTH_ONLY, Balance, Kind, NotFoundError, Tx, TxResult, TxState

I64_MAX = 2**63 - 1
I64_MIN = -(2**63)
C = 7  # client
OTHER = 8


def one(book, tx):
    (result,) = book.submit([tx])
    return result


def test_ok_and_exists(book):
    sale = Tx.sale(1, C, 10_00, "USD", device_id=3, user_data=99)
    assert one(book, sale) is TxResult.OK
    first = book.lookup(1)
    assert first.tx == sale and first.state is TxState.CAPTURED and first.captured == 10_00
    # The same id with identical fields: EXISTS, nothing changed.
    assert one(book, sale) is TxResult.EXISTS
    assert book.lookup(1) == first
    assert book.balance(C, "USD").captured == 10_00
    assert TxResult.OK.accepted and TxResult.EXISTS.accepted and not TxResult.EXISTS_DIFFERENT.accepted


@pytest.mark.parametrize(
    "changed",
    [
        dict(amount=11_00),
        dict(user_data=98),
        dict(device_id=4),
        dict(currency="EUR"),
        dict(client_id=OTHER),
        dict(flags=FLAG_AUTH_ONLY),
    ],
)
def test_exists_different(book, changed):
    sale = Tx.sale(1, C, 10_00, "USD", device_id=3, user_data=99)
    assert one(book, sale) is TxResult.OK
    before = book.lookup(1)
    assert one(book, sale._replace(**changed)) is TxResult.EXISTS_DIFFERENT
    assert book.lookup(1) == before


@pytest.mark.parametrize(
    "tx",
    [
        Tx.sale(2, C, 0, "USD"),
        Tx.sale(2, C, -1, "USD"),
        Tx.authorization(2, C, 0, "USD"),
        Tx.capture(2, 100, C, 0, "USD"),  # 100: an authorization made by the test
        Tx.capture(2, 100, C, -5, "USD"),
        Tx.refund(2, 1, C, 0, "USD"),
        Tx.refund(2, 1, C, -1, "USD"),
        Tx(2, C, 1, "USD", Kind.VOID, ref=100),  # a void carries amount 0
        Tx.adjustment(2, C, 0, "USD"),
    ],
    ids=["sale0", "sale-neg", "auth0", "capture0", "capture-neg", "refund0", "refund-neg", "void-nonzero", "adjust0"],
)
def test_invalid_amount(book, tx):
    assert book.submit([Tx.sale(1, C, 10_00, "USD"), Tx.authorization(100, C, 5_00, "USD")]) == [TxResult.OK] * 2
    assert one(book, tx) is TxResult.INVALID_AMOUNT
    with pytest.raises(NotFoundError):
        book.lookup(2)


def test_invalid_amount_when_a_sum_would_overflow(book):
    assert one(book, Tx.sale(1, C, I64_MAX, "USD")) is TxResult.OK
    assert one(book, Tx.sale(2, C, 1, "USD")) is TxResult.INVALID_AMOUNT  # captured would pass i64::MAX
    assert one(book, Tx.adjustment(3, C, 1, "USD")) is TxResult.INVALID_AMOUNT  # net would
    assert one(book, Tx.sale(4, C, 1, "EUR")) is TxResult.OK  # another account is not affected
    assert one(book, Tx.sale(5, OTHER, I64_MAX, "USD")) is TxResult.OK
    # Negative side: adjustments down to i64::MIN, then one more is refused.
    assert one(book, Tx.adjustment(6, 9, I64_MIN, "USD")) is TxResult.OK
    assert one(book, Tx.adjustment(7, 9, -1, "USD")) is TxResult.INVALID_AMOUNT
    assert book.balance(C, "USD") == Balance(I64_MAX, 0, 0, I64_MAX, 0, I64_MAX)
    assert book.balance(9, "USD").net == I64_MIN


@pytest.mark.parametrize("currency", ["usd", "XYZ", "EURO", "", "US", "U\0D", "US\0"])
def test_invalid_currency(book, currency):
    assert one(book, Tx.sale(1, C, 10_00, currency)) is TxResult.INVALID_CURRENCY
    with pytest.raises(NotFoundError):
        book.lookup(1)


def test_known_currencies(book):
    results = book.submit(
        [Tx.sale(i + 1, C, 1, cur) for i, cur in enumerate(["USD", "EUR", "JPY", "KWD", "GBP", "CHF"])]
    )
    assert results == [TxResult.OK] * 6


@pytest.mark.parametrize(
    "tx",
    [
        Tx(2, C, 5, "USD", kind=0),
        Tx(2, C, 5, "USD", kind=6),
        Tx(2, C, 5, "USD", kind=2**32 - 1),
        Tx(2, C, 5, "USD", Kind.PAYMENT, flags=2),
        Tx(2, C, 5, "USD", Kind.PAYMENT, flags=FLAG_AUTH_ONLY | 4),
        Tx(2, C, 5, "USD", Kind.REFUND, ref=1, flags=FLAG_AUTH_ONLY),
        Tx(2, C, 5, "USD", Kind.ADJUSTMENT, flags=FLAG_AUTH_ONLY),
        Tx.sale(0, C, 5, "USD"),  # zero id
        Tx.sale(2, 0, 5, "USD"),  # zero client
        Tx(2, C, 5, "USD", Kind.PAYMENT, ref=1),  # a ref where none belongs
        Tx(2, C, 5, "USD", Kind.ADJUSTMENT, ref=1),
        Tx(2, C, 5, "USD", Kind.REFUND),  # no ref where one belongs
        Tx(2, C, 5, "USD", Kind.CAPTURE),
        Tx(2, C, 0, "USD", Kind.VOID),
        Tx.sale(2, C, 5, "USD")._replace(reserved=1),  # ledger_tx.reserved must be 0
    ],
    ids=[
        "kind0", "kind6", "kind-max", "flag2", "flag4", "auth-refund", "auth-adjust", "zero-id", "zero-client",
        "ref-on-sale", "ref-on-adjust", "refund-no-ref", "capture-no-ref", "void-no-ref", "reserved",
    ],
)  # fmt: skip
def test_invalid_kind(book, tx):
    assert one(book, Tx.sale(1, C, 10_00, "USD")) is TxResult.OK
    assert one(book, tx) is TxResult.INVALID_KIND
    with pytest.raises(NotFoundError):
        book.lookup(2)


def test_ref_not_found(book):
    assert one(book, Tx.sale(1, C, 10_00, "USD")) is TxResult.OK
    assert one(book, Tx.authorization(3, C, 10_00, "USD")) is TxResult.OK
    assert one(book, Tx.refund(2, 999, C, 1, "USD")) is TxResult.REF_NOT_FOUND
    assert one(book, Tx.capture(2, 999, C, 1, "USD")) is TxResult.REF_NOT_FOUND
    assert one(book, Tx.void(2, 999, C, "USD")) is TxResult.REF_NOT_FOUND
    # Another client's payment does not exist for this one.
    assert one(book, Tx.refund(2, 1, OTHER, 1, "USD")) is TxResult.REF_NOT_FOUND
    assert one(book, Tx.capture(2, 3, OTHER, 1, "USD")) is TxResult.REF_NOT_FOUND
    assert book.lookup(1).refunded == 0


def test_ref_wrong_state(book):
    assert (
        book.submit(
            [
                Tx.sale(1, C, 10_00, "USD"),
                Tx.authorization(2, C, 10_00, "USD"),
                Tx.authorization(3, C, 10_00, "USD"),
                Tx.void(4, 3, C, "USD"),
                Tx.refund(5, 1, C, 1_00, "USD"),
                Tx.adjustment(6, C, 50, "USD"),
            ]
        )
        == [TxResult.OK] * 6
    )
    W = TxResult.REF_WRONG_STATE
    assert one(book, Tx.refund(10, 2, C, 1, "USD")) is W  # refund of an uncaptured authorization
    assert one(book, Tx.capture(10, 1, C, 1, "USD")) is W  # capture of a sale (already captured)
    assert one(book, Tx.capture(10, 3, C, 1, "USD")) is W  # capture of a voided authorization
    assert one(book, Tx.void(10, 1, C, "USD")) is W  # void of a captured payment
    assert one(book, Tx.void(10, 3, C, "USD")) is W  # void of a voided one
    assert one(book, Tx.refund(10, 5, C, 1, "USD")) is W  # a refund refers to a refund
    assert one(book, Tx.capture(10, 6, C, 1, "USD")) is W  # a capture refers to an adjustment
    assert one(book, Tx.refund(10, 3, C, 1, "USD")) is W  # refund of a voided authorization
    # A payment is captured once: the second capture is refused.
    assert one(book, Tx.capture(11, 2, C, 4_00, "USD")) is TxResult.OK
    assert one(book, Tx.capture(12, 2, C, 1_00, "USD")) is W
    assert one(book, Tx.void(12, 2, C, "USD")) is W  # and a captured one cannot be voided
    assert book.lookup(2).captured == 4_00


def test_exceeds_ref_amount(book):
    assert book.submit([Tx.sale(1, C, 10_00, "USD"), Tx.authorization(2, C, 5_00, "USD")]) == [TxResult.OK] * 2
    X = TxResult.EXCEEDS_REF_AMOUNT
    assert one(book, Tx.capture(3, 2, C, 5_01, "USD")) is X  # above the authorization
    assert one(book, Tx.refund(3, 1, C, 10_01, "USD")) is X  # above the capture
    assert one(book, Tx.refund(3, 1, C, 6_00, "USD")) is TxResult.OK
    assert one(book, Tx.refund(4, 1, C, 4_01, "USD")) is X  # refunds would sum above it
    assert one(book, Tx.refund(4, 1, C, 4_00, "USD")) is TxResult.OK
    assert one(book, Tx.refund(5, 1, C, 1, "USD")) is X
    # A partial capture bounds the refunds.
    assert one(book, Tx.capture(6, 2, C, 3_00, "USD")) is TxResult.OK
    assert one(book, Tx.refund(7, 2, C, 3_01, "USD")) is X
    assert one(book, Tx.refund(7, 2, C, I64_MAX, "USD")) is X
    assert one(book, Tx.refund(7, 2, C, 3_00, "USD")) is TxResult.OK


def test_currency_mismatch(book):
    assert book.submit([Tx.sale(1, C, 10_00, "USD"), Tx.authorization(2, C, 5_00, "USD")]) == [TxResult.OK] * 2
    M = TxResult.CURRENCY_MISMATCH
    assert one(book, Tx.refund(3, 1, C, 1_00, "EUR")) is M
    assert one(book, Tx.capture(3, 2, C, 1_00, "EUR")) is M
    assert one(book, Tx.void(3, 2, C, "JPY")) is M
    assert book.balance(C, "EUR") == Balance(0, 0, 0, 0, 0, 0)


def test_every_result_code_is_reachable(book):
    """One call producing all ten codes, in order."""
    txs = [
        Tx.sale(1, C, 10_00, "USD"),  # OK
        Tx.sale(1, C, 10_00, "USD"),  # EXISTS (an earlier entry of the same call)
        Tx.sale(1, C, 11_00, "USD"),  # EXISTS_DIFFERENT
        Tx.sale(2, C, 0, "USD"),  # INVALID_AMOUNT
        Tx.sale(3, C, 1, "usd"),  # INVALID_CURRENCY
        Tx(4, C, 1, "USD", kind=42),  # INVALID_KIND
        Tx.refund(5, 77, C, 1, "USD"),  # REF_NOT_FOUND
        Tx.capture(6, 1, C, 1, "USD"),  # REF_WRONG_STATE
        Tx.refund(7, 1, C, 10_01, "USD"),  # EXCEEDS_REF_AMOUNT
        Tx.refund(8, 1, C, 1, "EUR"),  # CURRENCY_MISMATCH
    ]
    assert book.submit(txs) == list(TxResult)
    assert [r.value for r in book.submit(txs)] == [1, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_rejected_changes_nothing_and_is_judged_afresh(book):
    assert one(book, Tx.refund(2, 1, C, 2_00, "USD")) is TxResult.REF_NOT_FOUND
    assert book.balance(C, "USD") == Balance(0, 0, 0, 0, 0, 0)
    with pytest.raises(NotFoundError):
        book.lookup(2)
    assert book.list(C) == []
    assert one(book, Tx.sale(1, C, 10_00, "USD")) is TxResult.OK
    assert one(book, Tx.refund(2, 1, C, 2_00, "USD")) is TxResult.OK  # same id, now valid
    assert book.balance(C, "USD").net == 8_00


def test_states(book):
    txs = [
        Tx.authorization(1, C, 10_00, "USD"),  # stays AUTHORIZED
        Tx.authorization(2, C, 10_00, "USD"),
        Tx.capture(3, 2, C, 7_00, "USD"),  # 2: CAPTURED (partially)
        Tx.authorization(4, C, 10_00, "USD"),
        Tx.void(5, 4, C, "USD"),  # 4: VOIDED
        Tx.sale(6, C, 10_00, "USD"),
        Tx.refund(7, 6, C, 3_00, "USD"),  # 6: PARTIALLY_REFUNDED
        Tx.sale(8, C, 10_00, "USD"),
        Tx.refund(9, 8, C, 4_00, "USD"),
        Tx.refund(10, 8, C, 6_00, "USD"),  # 8: REFUNDED
        Tx.adjustment(11, C, -2_50, "USD"),
    ]
    assert book.submit(txs) == [TxResult.OK] * len(txs)
    state = {i: book.lookup(i) for i in range(1, 12)}
    assert state[1].state is TxState.AUTHORIZED and state[1].batch_id == 0 and state[1].captured == 0
    assert (
        state[2].state is TxState.CAPTURED and state[2].captured == 7_00 and state[2].batch_id == state[3].batch_id != 0
    )
    assert state[4].state is TxState.VOIDED and state[4].batch_id == 0
    assert state[6].state is TxState.PARTIALLY_REFUNDED and (state[6].captured, state[6].refunded) == (10_00, 3_00)
    assert state[8].state is TxState.REFUNDED and (state[8].captured, state[8].refunded) == (10_00, 10_00)
    for applied in (3, 5, 7, 9, 10, 11):
        assert state[applied].state is TxState.APPLIED
        assert (state[applied].captured, state[applied].refunded) == (0, 0)
    assert state[5].batch_id == 0  # a void counts in no batch
    assert state[3].tx.ref == 2 and state[7].tx.ref == 6 and state[11].tx.ref == 0
    seqs = [state[i].seq for i in range(1, 12)]
    stamps = [state[i].timestamp_ns for i in range(1, 12)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 11
    assert stamps == sorted(stamps) and len(set(stamps)) == 11
    assert book.balance(C, "USD") == Balance(
        captured=27_00, refunded=13_00, adjusted=-2_50, net=11_50, settled_net=0, open_net=11_50
    )


def test_tuples_and_mappings_are_accepted(book):
    results = book.submit(
        [
            (1, C, 10_00, "USD"),
            (2, C, 1_00, "USD", Kind.REFUND, 1),
            dict(id=3, client_id=C, amount=5, currency="USD", kind=Kind.ADJUSTMENT, user_data=4),
        ]
    )
    assert results == [TxResult.OK] * 3
    assert book.lookup(2).tx == Tx.refund(2, 1, C, 1_00, "USD")
    assert book.lookup(3).tx.user_data == 4


def test_extreme_values_round_trip(open_ledger, tmp_path):
    book = open_ledger()
    tx = Tx(2**128 - 1, 2**64 - 1, I64_MAX, "KWD", Kind.PAYMENT, 0, 0, 2**64 - 1, 2**64 - 1)
    refund = Tx.refund(2**64, 2**128 - 1, 2**64 - 1, 1, "KWD", device_id=1, user_data=0)
    assert book.submit([tx, refund]) == [TxResult.OK, TxResult.OK]
    assert book.lookup(2**128 - 1).tx == tx
    assert book.lookup(2**64).tx == refund
    book.close()
    reopened = open_ledger()
    assert reopened.lookup(2**128 - 1).tx == tx
    assert reopened.lookup(2**64).tx == refund
    assert reopened.lookup(2**128 - 1).state is TxState.PARTIALLY_REFUNDED
