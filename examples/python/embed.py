#!/usr/bin/env python3
"""Embedding the ledger in a Python program through the `ledger` package (ctypes over
ledger-ffi's C ABI).

Opens a ledger in a temporary directory, submits a sale, a partial refund of it, and an
authorization that is captured later, shows that a retry with the same id is
idempotent, closes the settlement batch, and prints the batch summary and the balance.

Run it after `pip install ./ledger-ffi/python`, or from a checkout once
`cargo build --release -p ledger-ffi` has built target/release/libledger.so:

    python3 examples/python/embed.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

try:
    import ledger
except ImportError:  # not installed: use the package in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ledger-ffi" / "python"))
    import ledger

from ledger import Ledger, Tx, TxResult

CLIENT = 42  # the merchant (tenant)
TERMINAL = 7  # the device that took the payments


def money(minor: int, currency: str = "USD") -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d} {currency}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ledger-embed-") as tmp:
        path = Path(tmp) / "ledger"
        print(f"{ledger.version()} from {ledger.library_path()}")
        print(f"opening {path} (sync=always: a submit returns once it is on stable storage)")
        with Ledger(path, sync="always") as book:
            # Ids are chosen by the caller and are the idempotency keys (up to 128 bits).
            sale, refund, auth, capture = 1001, 1002, 1003, 1004
            results = book.submit(
                [
                    Tx.sale(sale, CLIENT, 25_00, "USD", device_id=TERMINAL, user_data=555),
                    Tx.refund(refund, sale, CLIENT, 5_00, "USD", device_id=TERMINAL),  # refers to the sale above
                    Tx.authorization(auth, CLIENT, 60_00, "USD", device_id=TERMINAL),
                ]
            )
            print("sale, refund, authorization:", [r.name for r in results])
            assert results == [TxResult.OK] * 3, results

            # Later (in another call), capture part of the authorization.
            (captured,) = book.submit([Tx.capture(capture, auth, CLIENT, 45_00, "USD")])
            print("capture:", captured.name)
            assert captured is TxResult.OK

            # A retry of the same transaction (say after a timeout) changes nothing...
            (retry,) = book.submit([Tx.sale(sale, CLIENT, 25_00, "USD", device_id=TERMINAL, user_data=555)])
            print("retry of the sale:", retry.name)
            assert retry is TxResult.EXISTS
            # ...and the same id with other fields is refused.
            (clash,) = book.submit([Tx.sale(sale, CLIENT, 99_00, "USD")])
            print("same id, other amount:", clash.name)
            assert clash is TxResult.EXISTS_DIFFERENT

            for record in book.list(CLIENT):
                tx = record.tx
                kind = "AUTHORIZATION" if tx.flags & ledger.FLAG_AUTH_ONLY else tx.kind.name
                print(
                    f"  seq {record.seq:>2}  id {tx.id}  {kind:<13} {money(tx.amount, tx.currency):>10}"
                    f"  state {record.state.name:<18} batch {record.batch_id}"
                )

            summary = book.batch_close(CLIENT, "USD")
            print(f"batch {summary.batch_id} closed for client {summary.client_id} in {summary.currency}:")
            print(f"  payments    {summary.payment_count} for {money(summary.payment_total)}")
            print(f"  refunds     {summary.refund_count} for {money(summary.refund_total)}")
            print(f"  adjustments {summary.adjustment_count} for {money(summary.adjustment_total)}")
            print(f"  net         {money(summary.net)}")
            assert (summary.payment_total, summary.refund_total, summary.net) == (70_00, 5_00, 65_00)

            balance = book.balance(CLIENT, "USD")
            print(
                f"balance: captured {money(balance.captured)}, refunded {money(balance.refunded)}, "
                f"net {money(balance.net)} (settled {money(balance.settled_net)}, open {money(balance.open_net)})"
            )
            assert balance.net == balance.settled_net == 65_00 and balance.open_net == 0

        # Reopening replays the log: everything is still there.
        with Ledger(path) as book:
            assert book.balance(CLIENT, "USD").settled_net == 65_00
            assert book.batch_get(summary.batch_id) == summary
            print(f"reopened: batch {summary.batch_id} and the balance read back the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
