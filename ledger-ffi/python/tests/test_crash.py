"""Crashes and damage: kill -9 of a process in the middle of durable submits, then a
reopen; a damaged log refused with CorruptError; a torn final record cut, not fatal."""

from __future__ import annotations

import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import ledger
from ledger import CorruptError, Ledger, Tx, TxResult
from conftest import child_env

CHILD = textwrap.dedent("""
    import sys
    import ledger
    from ledger import Tx

    path, sync = sys.argv[1], sys.argv[5]
    start, per_call, segment = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    book = ledger.Ledger(path, sync=sync, segment_bytes=segment)
    out = sys.stdout
    next_id = start
    while True:
        txs = []
        for n in range(next_id, next_id + per_call):
            client = 1 + (n // 10) % 4
            if n % 10 == 0:  # refund the sale just before, in the same call or the previous one
                txs.append(Tx.refund(n, n - 1, 1 + ((n - 1) // 10) % 4, 1_00, "USD"))
            else:
                txs.append(Tx.sale(n, client, 10_00, "USD"))
        results = book.submit(txs)
        if any(r != ledger.TxResult.OK for r in results):
            print("BAD", next_id, [int(r) for r in results], flush=True)
            sys.exit(3)
        # Acknowledged: submit returned OK, so these are durable. Only now say so.
        out.write("".join(f"{t.id}\\n" for t in txs))
        out.flush()
        next_id += per_call
""")


def expected_balance(present_ids):
    """Balances implied by the ids the child submitted (sales of 10.00, every tenth id a
    refund of 1.00 of the sale before it)."""
    nets = {}
    for n in present_ids:
        if n % 10 == 0:
            client = 1 + ((n - 1) // 10) % 4
            nets[client] = nets.get(client, 0) - 1_00
        else:
            client = 1 + (n // 10) % 4
            nets[client] = nets.get(client, 0) + 10_00
    return nets


@pytest.mark.parametrize(
    "sync, segment",
    [("always", 1 << 20), ("always", 8192), ("none", 1 << 20)],
    ids=["always-1MiB-segments", "always-8KiB-segments", "none-1MiB-segments"],
)
def test_kill_9_loses_no_acknowledged_transaction(tmp_path, sync, segment):
    """A child submits durably and prints each id once its call returned OK; the parent
    kills it with SIGKILL at a random point, reopens, and finds every printed id. (With
    sync="none" too: a process kill leaves the page cache, only an OS crash loses it.)"""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "ledger"
    rng = random.Random(20240601 + segment + len(sync))
    per_call = 25
    next_id = 1
    acknowledged = set()
    partial_calls = 0
    for cycle in range(4):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(next_id), str(per_call), str(segment), sync],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        wanted = rng.randint(2, 60) * per_call
        got = []
        while len(got) < wanted:
            line = child.stdout.readline()
            assert line, f"the child ended early (exit {child.poll()})"
            assert not line.startswith("BAD"), line
            got.append(int(line))
        time.sleep(rng.random() * 0.01)  # land the kill anywhere in the next calls
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        assert child.returncode == -signal.SIGKILL
        lines = rest.split("\n")
        assert not any(line.startswith("BAD") for line in lines)
        got += [int(line) for line in lines[:-1]]  # the last piece may be a torn line
        acknowledged.update(got)

        with Ledger(path, sync="always", segment_bytes=segment) as book:
            missing = [i for i in sorted(acknowledged) if book.get(i) is None]
            assert missing == [], f"cycle {cycle}: acknowledged but missing after kill -9: {missing[:10]}"
            top = max(acknowledged)
            beyond = 0
            while book.get(top + beyond + 1) is not None:
                beyond += 1
            # Only the call in flight when the kill landed can show beyond what was
            # acknowledged, and nothing past it.
            assert beyond <= per_call
            assert all(book.get(top + beyond + k) is None for k in range(1, 2 * per_call))
            partial_calls += 0 < beyond < per_call
            present = range(1, top + beyond + 1)
            listed = sorted(r.id for c in range(1, 5) for r in book.iter_list(c))
            assert listed == list(present), "a hole or a stranger in the recovered ledger"
            nets = expected_balance(present)
            assert {c: book.balance(c, "USD").net for c in nets} == nets
            next_id = top + beyond + 1
            # Whatever was recovered is final: the same ids again are EXISTS.
            assert set(book.submit([book.lookup(i).tx for i in range(top - 5, top + 1)])) == {TxResult.EXISTS}
    assert len(acknowledged) >= 4 * 2 * per_call
    if partial_calls:
        print(f"note: {partial_calls} kill(s) left part of the call in flight in the log (not acknowledged)")


def segment_files(path):
    return sorted(p for p in path.iterdir() if p.name.endswith(".seg"))


def frames(data):
    """(offset, seq, payload_len) of the frames of a segment image (FORMAT.md)."""
    out, offset = [], 64
    while offset + 32 <= len(data):
        seq, _synced, length = struct.unpack_from("<QQI", data, offset)
        if seq == 0:
            break
        out.append((offset, seq, length))
        offset += (32 + length + 15) // 16 * 16
    return out


def write_two_calls(path):
    with Ledger(path, sync="always", segment_bytes=1 << 20) as book:
        assert book.submit([Tx.sale(i, 7, 1_00, "USD") for i in range(1, 6)]) == [TxResult.OK] * 5
        assert book.submit([Tx.sale(i, 7, 1_00, "USD") for i in range(6, 11)]) == [TxResult.OK] * 5


def test_damaged_durable_frame_is_corrupt(tmp_path):
    path = tmp_path / "ledger"
    write_two_calls(path)
    first = segment_files(path)[0]
    data = bytearray(first.read_bytes())
    offset, seq, length = frames(data)[0]
    assert seq == 1 and length > 0
    data[offset + 32 + length // 2] ^= 0x40  # one bit of frame 1's payload
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptError) as excinfo:
        Ledger(path, segment_bytes=1 << 20)
    e = excinfo.value
    assert e.status == ledger.LEDGER_ERR_CORRUPT
    assert "corruption" in e.message and first.name in e.message and "durable" in e.message
    assert first.read_bytes() == bytes(data), "a refused open changes nothing on disk"
    with pytest.raises(CorruptError):  # and keeps refusing
        Ledger(path, segment_bytes=1 << 20)


def test_damaged_segment_header_is_corrupt(tmp_path):
    path = tmp_path / "ledger"
    write_two_calls(path)
    first = segment_files(path)[0]
    data = bytearray(first.read_bytes())
    data[0:8] = b"NOTALOG!"
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptError) as excinfo:
        Ledger(path, segment_bytes=1 << 20)
    assert excinfo.value.status == ledger.LEDGER_ERR_CORRUPT
    assert "header" in excinfo.value.message


def test_torn_final_record_is_cut_not_fatal(tmp_path):
    path = tmp_path / "ledger"
    write_two_calls(path)
    first = segment_files(path)[0]
    data = bytearray(first.read_bytes())
    offset, seq, length = frames(data)[-1]
    assert seq == 10
    end = offset + 32 + length
    data[offset + 32 + length // 2 : end] = bytes(end - (offset + 32 + length // 2))  # an interrupted write
    first.write_bytes(bytes(data))
    with Ledger(path, segment_bytes=1 << 20) as book:
        # Record 10 ended the second call's commit group; without it the group is cut
        # whole: the call is all there or not at all, never records 6-9 alone.
        assert [book.get(i) is not None for i in range(1, 11)] == [True] * 5 + [False] * 5
        assert book.submit([Tx.sale(i, 7, 1_00, "USD") for i in range(6, 11)]) == [TxResult.OK] * 5  # judged afresh
