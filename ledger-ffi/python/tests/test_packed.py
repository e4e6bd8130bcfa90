"""The packed batch submit: one ledger_submit per buffer, no Python loop, the same
results as the list submit."""

from __future__ import annotations

import array
import ctypes

import pytest

import ledger
from ledger import InvalidArgumentError, Kind, Tx, TxResult


def mixed_workload():
    """Transactions producing every result code, with references to earlier entries of
    the same call."""
    txs = []
    for i in range(1, 401):
        base = i * 100
        client = 1 + i % 5
        txs += [
            Tx.sale(base, client, 10_00 + i, "USD", device_id=i, user_data=base),
            Tx.refund(base + 1, base, client, 1_00, "USD"),  # refers to the entry above
            Tx.authorization(base + 2, client, 5_00, "EUR"),
            Tx.capture(base + 3, base + 2, client, 4_00, "EUR"),
            Tx.capture(base + 4, base + 2, client, 1_00, "EUR"),  # REF_WRONG_STATE: captured once
            Tx.sale(base, client, 10_00 + i, "USD", device_id=i, user_data=base),  # EXISTS
            Tx.sale(base, client, 1, "USD"),  # EXISTS_DIFFERENT
            Tx.sale(base + 5, client, 0, "USD"),  # INVALID_AMOUNT
            Tx.sale(base + 6, client, 1, "usd"),  # INVALID_CURRENCY
            Tx(base + 7, client, 1, "USD", kind=9),  # INVALID_KIND
            Tx.refund(base + 8, base + 99, client, 1, "USD"),  # REF_NOT_FOUND
            Tx.refund(base + 9, base, client, 9_99 + i, "USD"),  # EXCEEDS_REF_AMOUNT
            Tx.refund(base + 10, base, client, 1, "GBP"),  # CURRENCY_MISMATCH
            Tx.sale(base + 11, client, 1, "USD")._replace(reserved=3),  # INVALID_KIND (reserved != 0)
            Tx.authorization(base + 12, client, 7_00, "USD"),
            Tx.void(base + 13, base + 12, client, "USD"),
            Tx.adjustment(base + 14, client, -(i % 7) - 1, "USD"),
        ]
    return txs


EXPECTED_ONE = [0, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 8, 9, 5, 0, 0, 0]


def snapshot(book, clients=range(1, 6)):
    """Everything observable, minus commit times."""
    records = {c: [r._replace(timestamp_ns=0) for r in book.iter_list(c)] for c in clients}
    balances = {(c, cur): book.balance(c, cur) for c in clients for cur in ("USD", "EUR")}
    return records, balances


@pytest.fixture(scope="module")
def workload():
    txs = mixed_workload()
    return txs, ledger.pack_txs(txs)


def test_pack_and_unpack_round_trip(workload):
    txs, packed = workload
    assert len(packed) == 80 * len(txs)
    assert ledger.unpack_txs(packed) == txs
    assert ledger.unpack_txs(bytes(packed)) == txs


def packed_variants():
    variants = ["bytes", "bytearray", "memoryview", "readonly-memoryview", "misaligned", "array"]
    try:
        import numpy  # noqa: F401

        variants += ["numpy", "numpy-columns"]
    except ImportError:
        pass
    return variants


def make_buffer(kind, txs, packed):
    if kind == "bytes":
        return bytes(packed)
    if kind == "bytearray":
        return bytearray(packed)
    if kind == "memoryview":
        return memoryview(bytearray(packed))
    if kind == "readonly-memoryview":
        return memoryview(bytes(packed))
    if kind == "misaligned":
        raw = bytearray(len(packed) + 3)
        raw[3:] = packed
        view = memoryview(raw)[3:]
        assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % 8 != 0
        return view
    if kind == "array":
        return array.array("Q", bytes(packed))  # any buffer of the right byte size
    import numpy as np

    if kind == "numpy":
        return np.frombuffer(bytes(packed), dtype=ledger.TX_DTYPE).copy()
    cols = {
        name: np.array([getattr(t, name) for t in txs])
        for name in ("client_id", "amount", "kind", "flags", "device_id", "user_data", "reserved")
    }
    return ledger.pack_columns(
        np.array([t.id for t in txs], dtype=np.uint64),
        cols["client_id"],
        cols["amount"],
        np.array([t.currency.encode() for t in txs], dtype="S4"),
        kind=cols["kind"],
        ref=np.array([t.ref for t in txs], dtype=np.uint64),
        flags=cols["flags"],
        device_id=cols["device_id"],
        user_data=cols["user_data"],
        reserved=cols["reserved"],
    )


@pytest.mark.parametrize("variant", packed_variants())
def test_packed_submit_gives_the_list_submit_results(open_ledger, workload, variant):
    txs, packed = workload
    by_list = open_ledger("by-list", sync="none")
    by_packed = open_ledger("by-packed", sync="none")

    list_results = by_list.submit(txs)
    assert list_results == [TxResult(c) for c in EXPECTED_ONE] * 400

    buf = make_buffer(variant, txs, packed)
    codes = by_packed.submit_packed(buf)
    assert len(codes) == len(txs)
    assert [int(c) for c in codes] == [int(r) for r in list_results]
    if variant.startswith("numpy"):
        import numpy as np

        assert isinstance(codes, np.ndarray) and codes.dtype == np.uint32
    else:
        assert isinstance(codes, array.array) and codes.itemsize == 4
    assert snapshot(by_packed) == snapshot(by_list)

    # Resubmitting the whole buffer: every committed one EXISTS now, the rest as before.
    again = by_packed.submit_packed(buf)
    assert [int(c) for c in again] == [1 if c in (0, 1) else c for c in EXPECTED_ONE] * 400


def test_later_entry_refers_to_earlier_one_in_the_same_packed_call(book):
    txs = [
        Tx.sale(1, 7, 10_00, "USD"),
        Tx.refund(2, 1, 7, 4_00, "USD"),
        Tx.refund(3, 1, 7, 6_00, "USD"),
        Tx.refund(4, 1, 7, 1, "USD"),  # the two above already refunded it all
        Tx.authorization(5, 7, 5_00, "USD"),
        Tx.capture(6, 5, 7, 5_00, "USD"),
        Tx.refund(7, 5, 7, 2_00, "USD"),  # refund of the capture made two entries earlier
        Tx.authorization(8, 7, 1_00, "USD"),
        Tx.void(9, 8, 7, "USD"),
        Tx.capture(10, 8, 7, 1_00, "USD"),  # voided just before
    ]
    codes = book.submit_packed(ledger.pack_txs(txs))
    assert list(codes) == [0, 0, 0, 8, 0, 0, 0, 0, 0, 7]
    assert book.lookup(1).state is ledger.TxState.REFUNDED
    assert book.lookup(5).refunded == 2_00
    assert book.lookup(8).state is ledger.TxState.VOIDED


def test_out_buffer_and_empty_buffers(book):
    packed = ledger.pack_txs([Tx.sale(1, 7, 1, "USD"), Tx.sale(2, 7, 0, "USD")])
    out = array.array("I", [99, 99, 99])
    assert book.submit_packed(packed, out=out) is out
    assert list(out) == [0, 3, 99]  # only the first two are written
    raw = bytearray(8)
    book.submit_packed(packed, out=raw)
    assert list(memoryview(raw).cast("I")) == [1, 3]
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(packed, out=bytearray(7))
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(packed, out=bytes(8))  # read-only
    assert len(book.submit_packed(b"")) == 0
    assert len(book.submit_packed(bytearray())) == 0
    assert book.submit([]) == []


def test_bad_buffers_are_refused(book):
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(b"\0" * 79)
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(bytearray(81))
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(memoryview(bytearray(160))[::2])  # not contiguous
    with pytest.raises(TypeError):
        book.submit_packed([Tx.sale(1, 7, 1, "USD")])  # a list goes to submit()
    with pytest.raises(TypeError):
        book.submit_packed("text")


def test_numpy_dtype_is_enforced(book):
    np = pytest.importorskip("numpy")
    wrong = np.zeros(2, dtype=[("id", "u8"), ("pad", "V72")])
    with pytest.raises(InvalidArgumentError):
        book.submit_packed(wrong)
    # A raw byte array of whole transactions is a plain buffer.
    raw = np.frombuffer(bytes(ledger.pack_txs([Tx.sale(1, 7, 1, "USD")])), dtype=np.uint8)
    assert list(book.submit_packed(raw)) == [0]
    # A strided view (every other transaction) is made contiguous first.
    arr = ledger.pack_columns(np.arange(10, 20, dtype=np.uint64), 7, 5, "USD")
    codes = book.submit_packed(arr[::2])
    assert list(codes) == [0] * 5
    assert [book.get(i) is not None for i in range(10, 20)] == [True, False] * 5


def test_pack_columns(book):
    np = pytest.importorskip("numpy")
    n = 1000
    ids = np.arange(1, n + 1, dtype=np.uint64)
    refund = ids % 10 == 0
    arr = ledger.pack_columns(
        ids,
        client_id=3,
        amount=np.where(refund, 1, 1000),
        currency="EUR",
        kind=np.where(refund, Kind.REFUND, Kind.PAYMENT),
        ref=np.where(refund, ids - 1, 0),
    )
    assert arr.dtype == ledger.TX_DTYPE and arr.shape == (n,)
    codes = book.submit_packed(arr)
    assert (codes == 0).all()
    assert book.balance(3, "EUR").net == 900 * 1000 - 100
    assert book.lookup(10).tx == Tx.refund(10, 9, 3, 1, "EUR")
    arr2 = ledger.tx_array(3)
    arr2["id_lo"] = [1, 2, 3000]
    arr2["client_id"] = 3
    arr2["amount"] = 1000
    arr2["kind"] = Kind.PAYMENT
    arr2["currency"] = b"EUR"
    assert list(book.submit_packed(arr2)) == [1, 1, 0]
    # Out-of-range columns are refused, not wrapped.
    for bad in (
        dict(amount=np.array([2**63], dtype=object)),
        dict(client_id=np.array([-1])),
        dict(amount=np.array([2**64 - 1], dtype=np.uint64)),
        dict(kind=2**32),
    ):
        args = dict(id=np.array([1], dtype=np.uint64), client_id=3, amount=1, currency="EUR")
        args.update(bad)
        with pytest.raises(InvalidArgumentError):
            ledger.pack_columns(**args)
    with pytest.raises(InvalidArgumentError):
        ledger.pack_columns(np.arange(3, dtype=np.uint64), client_id=np.arange(4), amount=1, currency="EUR")
    with pytest.raises(InvalidArgumentError):
        ledger.pack_columns(1, 3, 1, "EURO!")


def test_one_large_call(open_ledger):
    book = open_ledger(sync="none", segment_bytes=1 << 22)
    n = 50_000
    txs = [Tx.sale(i, 1 + i % 64, 1000, "USD") for i in range(1, n + 1)]
    codes = book.submit_packed(ledger.pack_txs(txs))
    assert len(codes) == n and set(codes) == {0}
    assert sum(book.balance(c, "USD").captured for c in range(1, 65)) == n * 1000
