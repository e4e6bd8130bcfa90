#!/usr/bin/env python3
"""Throughput of the Python batch submit, in transactions per second.

Calls of 8190 transactions (nine sales and one refund of the sale before it in every
ten, over 64 clients: the workload of benches/benches/ffi_submit.rs and core_submit.rs),
durable (sync=always) and not (sync=none), through:

- packed:  Ledger.submit_packed(buffer), one C call per 8190 transactions, no Python
           loop (buffers built before the timed call, as the Rust bench builds its Vec);
- raw:     ctypes' ledger_submit on the same buffers, without the wrapper: the
           difference to `packed` is the wrapper's own cost;
- list:    Ledger.submit(list of Tx), timed including packing the Tx objects and
           turning the codes into TxResult values.

Also measures how fast buffers are built (pack_txs from Tx objects; pack_columns with
numpy). Each mode uses a fresh ledger with the library's default options (64 MiB
segments); the default run stays below 2**20 records per ledger, where the engine
would write a snapshot (the C ABI has no option to turn that off).

    python3 ledger-ffi/python/bench.py [--calls 100] [--size 8190] [--dir /tmp]

With --long N it instead submits N calls (packed, sync=none) into one ledger and
prints the throughput and the slowest call per window of 64 calls: past 2**20 records
the engine's periodic snapshots show as stalls that grow with the ledger.

With --rust it also runs the Rust side (`cargo bench -p ledger-benches --bench
ffi_submit`) and prints its summary lines for comparison.
"""

from __future__ import annotations

import argparse
import array
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import ledger
except ImportError:  # run from the source tree without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ledger

from ledger import Kind, Ledger, Tx, _ffi

try:
    import numpy as np
except ImportError:
    np = None


def workload(first: int, n: int):
    txs = []
    for i in range(first, first + n):
        if i % 10 == 0:
            txs.append(Tx.refund(i, i - 1, 1 + (i - 1) % 64, 1, "USD"))
        else:
            txs.append(Tx.sale(i, 1 + i % 64, 1000, "USD"))
    return txs


def workload_columns(first: int, n: int):
    ids = np.arange(first, first + n, dtype=np.uint64)
    refund = ids % 10 == 0
    return ledger.pack_columns(
        ids,
        client_id=1 + (ids - refund) % 64,
        amount=np.where(refund, 1, 1000),
        currency="USD",
        kind=np.where(refund, Kind.REFUND, Kind.PAYMENT),
        ref=np.where(refund, ids - 1, 0),
    )


def build(first: int, n: int):
    return workload_columns(first, n) if np is not None else ledger.pack_txs(workload(first, n))


def all_ok(codes, n: int) -> bool:
    if np is not None and isinstance(codes, np.ndarray):
        return bool((codes == 0).all())
    if isinstance(codes, array.array):
        return codes.count(0) == n
    return all(c == 0 for c in codes)


def run(mode: str, sync: str, calls: int, size: int, directory: str, warmup: int = 2):
    with tempfile.TemporaryDirectory(prefix=f"ledger-bench-{mode}-{sync}-", dir=directory) as tmp:
        with Ledger(Path(tmp) / "ledger", sync=sync) as book:
            times = []
            next_id = 1
            results = array.array("I", bytes(4 * size))
            raddr = results.buffer_info()[0]
            for call in range(warmup + calls):
                if mode == "list":
                    txs = workload(next_id, size)
                    start = time.perf_counter()
                    codes = book.submit(txs)
                    elapsed = time.perf_counter() - start
                elif mode == "packed":
                    buf = build(next_id, size)
                    start = time.perf_counter()
                    codes = book.submit_packed(buf)
                    elapsed = time.perf_counter() - start
                else:  # raw ctypes, same buffers, no wrapper
                    buf = build(next_id, size)
                    address = buf.__array_interface__["data"][0] if np is not None else _address(buf)
                    handle = book._handle
                    start = time.perf_counter()
                    status = _ffi.lib.ledger_submit(handle, address, size, raddr)
                    elapsed = time.perf_counter() - start
                    assert status == 0, _ffi.last_error()
                    codes = results
                if not all_ok(codes, size):
                    raise SystemExit(f"{mode}/{sync}: call {call} had rejections")
                next_id += size
                if call >= warmup:
                    times.append(elapsed)
    total = sum(times)
    return {
        "mode": mode,
        "sync": sync,
        "calls": calls,
        "tx": calls * size,
        "seconds": total,
        "tx_per_s": calls * size / total,
        "p50_ms": statistics.median(times) * 1e3,
        "p99_ms": sorted(times)[max(0, int(len(times) * 0.99) - 1)] * 1e3,
    }


def _address(buf) -> int:
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def packing_rates(size: int, rounds: int = 5):
    rates = {}
    start = time.perf_counter()
    for r in range(rounds):
        txs = workload(1 + r * size, size)
    rates["build Tx objects"] = rounds * size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        ledger.pack_txs(txs)
    rates["pack_txs (struct)"] = rounds * size / (time.perf_counter() - start)
    if np is not None:
        start = time.perf_counter()
        for r in range(rounds):
            workload_columns(1 + r * size, size)
        rates["pack_columns (numpy)"] = rounds * size / (time.perf_counter() - start)
    return rates


def rust_comparison(repo: Path) -> None:
    print("\n== Rust side: cargo bench -p ledger-benches --bench ffi_submit (criterion; takes a few minutes)")
    proc = subprocess.run(
        ["cargo", "bench", "-p", "ledger-benches", "--bench", "ffi_submit", "--locked"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = proc.stdout.splitlines()
    for line in lines:
        if line.startswith("submit_8190/") or "thrpt:" in line:
            print(line)
    if proc.returncode != 0:
        print("\n".join(lines[-20:]))


def long_run(calls: int, size: int, directory: str) -> None:
    print(f"one ledger (sync=none), {calls} calls of {size}: throughput and slowest call per 64 calls")
    with tempfile.TemporaryDirectory(prefix="ledger-bench-long-", dir=directory) as tmp:
        with Ledger(Path(tmp) / "ledger", sync="none") as book:
            times = []
            for call in range(calls):
                buf = build(call * size + 1, size)
                start = time.perf_counter()
                codes = book.submit_packed(buf)
                times.append(time.perf_counter() - start)
                if not all_ok(codes, size):
                    raise SystemExit(f"call {call} had rejections")
        snapshots = sorted(p.name for p in (Path(tmp) / "ledger").iterdir() if p.name.startswith("snapshot"))
    for first in range(0, calls, 64):
        window = times[first : first + 64]
        print(
            f"  records {first * size + 1:>9} - {(first + len(window)) * size:>9}: "
            f"{len(window) * size / sum(window) / 1e6:5.2f} M tx/s, slowest call {max(window) * 1e3:7.1f} ms"
        )
    print(f"  overall {calls * size / sum(times) / 1e6:.2f} M tx/s; snapshots left: {', '.join(snapshots) or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="timed calls per mode (default 100)")
    parser.add_argument("--size", type=int, default=8190, help="transactions per call (default 8190)")
    parser.add_argument("--dir", default=None, help="where to create the ledgers (default: the temp dir)")
    parser.add_argument("--modes", default="packed,raw,list", help="comma-separated: packed, raw, list")
    parser.add_argument("--long", type=int, default=0, metavar="N", help="one long run of N calls instead (see above)")
    parser.add_argument("--rust", action="store_true", help="also run the Rust bench (cargo) for comparison")
    args = parser.parse_args()

    print(
        f"{ledger.version()} ({ledger.library_path()}), Python {sys.version.split()[0]}, "
        f"numpy {np.__version__ if np is not None else 'not installed (struct packing)'}, {os.cpu_count()} CPUs"
    )
    if args.long:
        long_run(args.long, args.size, args.dir)
        return 0
    print(f"{args.calls} timed calls of {args.size} transactions per mode (+2 warm-up), fresh ledger per mode\n")
    rows = []
    for sync in ("always", "none"):
        for mode in args.modes.split(","):
            rows.append(run(mode.strip(), sync, args.calls, args.size, args.dir))
            r = rows[-1]
            print(
                f"{r['mode']:<7} sync={r['sync']:<7} {r['tx']:>9} tx in {r['seconds']:6.3f} s"
                f"  {r['tx_per_s'] / 1e6:6.3f} M tx/s   per call p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms",
                flush=True,
            )
    print("\nbuilding buffers (not in the timings above, except for `list`):")
    for name, rate in packing_rates(args.size).items():
        print(f"  {name:<22} {rate / 1e6:6.2f} M tx/s")
    if args.rust:
        rust_comparison(Path(__file__).resolve().parents[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
