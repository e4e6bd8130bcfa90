"""The Python declarations mirror the committed header exactly: constants, struct
layouts (checked against a C compiler), the functions, and the struct/numpy formats
used for packing."""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import ledger
from ledger import _ffi, packing
from conftest import REPO

HEADER = REPO / "ledger-ffi" / "include" / "ledger.h"
STRUCTS = [
    _ffi.ledger_id,
    _ffi.ledger_options,
    _ffi.ledger_tx,
    _ffi.ledger_tx_record,
    _ffi.ledger_batch_summary,
    _ffi.ledger_balance,
    _ffi.ledger_stats,
    _ffi.ledger_feed_record,
]

needs_header = pytest.mark.skipif(not HEADER.is_file(), reason="ledger.h is not next to these tests")


@needs_header
def test_constants_match_the_header():
    text = HEADER.read_text()
    header = {name: int(value) for name, value in re.findall(r"^#define\s+(LEDGER_\w+)\s+(\d+)u?\s*$", text, re.M)}
    assert len(header) >= 30
    assert header == _ffi.CONSTANTS
    for name, value in header.items():  # exported under the same names from the package
        assert getattr(ledger, name) == value


def test_enums_carry_the_constants():
    assert {f"LEDGER_TX_{m.name}": m.value for m in ledger.TxResult} == {
        k: v for k, v in _ffi.CONSTANTS.items() if k.startswith("LEDGER_TX_")
    }
    assert {f"LEDGER_STATE_{m.name}": m.value for m in ledger.TxState} == {
        k: v for k, v in _ffi.CONSTANTS.items() if k.startswith("LEDGER_STATE_")
    }
    assert {f"LEDGER_KIND_{m.name}": m.value for m in ledger.Kind} == {
        k: v for k, v in _ffi.CONSTANTS.items() if k.startswith("LEDGER_KIND_")
    }
    assert {f"LEDGER_SYNC_{m.name}": m.value for m in ledger.Sync} == {
        k: v for k, v in _ffi.CONSTANTS.items() if k.startswith("LEDGER_SYNC_")
    }
    assert {f"LEDGER_{m.name}": m.value for m in ledger.Status} == {
        k: v for k, v in _ffi.CONSTANTS.items() if k == "LEDGER_OK" or k.startswith("LEDGER_ERR_")
    }
    assert ledger.FLAG_AUTH_ONLY == ledger.LEDGER_FLAG_AUTH_ONLY == 1


@needs_header
def test_every_function_of_the_header_is_declared():
    declared = set(re.findall(r"^\s*(?:const\s+)?[\w ]+?\**\s*\b(ledger_\w+)\s*\(", HEADER.read_text(), re.M))
    assert declared == set(_ffi.FUNCTIONS)
    for name in declared:
        function = getattr(_ffi.lib, name)
        assert function.restype is not None or name in ("ledger_close", "ledger_feed_close")
        assert function.argtypes is not None


def test_struct_sizes_are_those_the_library_asserts():
    sizes = {s.__name__: ctypes.sizeof(s) for s in STRUCTS}
    assert sizes == {
        "ledger_id": 16,
        "ledger_options": 32,
        "ledger_tx": 80,
        "ledger_tx_record": 128,
        "ledger_batch_summary": 112,
        "ledger_balance": 48,
        "ledger_stats": 120,
        "ledger_feed_record": 256,
    }


@needs_header
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_struct_layouts_match_a_c_compiler(tmp_path):
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "ledger.h"', "int main(void) {"]
    expected = {}
    for s in STRUCTS:
        name = s.__name__
        lines.append(f'printf("{name} sizeof %zu\\n", sizeof({name}));')
        expected[f"{name} sizeof"] = ctypes.sizeof(s)
        for field, _ctype in s._fields_:
            lines.append(
                f'printf("{name}.{field} %zu %zu\\n", offsetof({name}, {field}), sizeof((({name} *)0)->{field}));'
            )
            descriptor = getattr(s, field)
            expected[f"{name}.{field}"] = f"{descriptor.offset} {descriptor.size}"
    lines += ["return 0;", "}"]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    binary = tmp_path / "layout"
    subprocess.run(["cc", "-std=c11", "-Wall", "-I", str(HEADER.parent), "-o", str(binary), str(source)], check=True)
    out = subprocess.run([str(binary)], check=True, stdout=subprocess.PIPE, text=True).stdout
    measured = {}
    for line in out.splitlines():
        key, rest = line.split(" ", 1)
        if rest.startswith("sizeof"):
            measured[f"{key} sizeof"] = int(rest.split()[1])
        else:
            measured[key] = rest
    assert measured == expected


def test_struct_formats_match_the_ctypes_layouts():
    """The struct formats used to pack and unpack read the same bytes as the ctypes
    fields: fill every field with a distinct value and compare."""
    tx = _ffi.ledger_tx()
    tx.id.lo, tx.id.hi, tx.ref.lo, tx.ref.hi = 1, 2, 3, 4
    tx.client_id, tx.device_id, tx.amount = 5, 6, -7
    tx.kind, tx.flags, tx.currency, tx.reserved, tx.user_data = 8, 9, b"EUR", 10, 11
    assert packing.TX_STRUCT.unpack(bytes(tx)) == (1, 2, 3, 4, 5, 6, -7, 8, 9, b"EUR\0", 10, 11)

    rec = _ffi.ledger_tx_record()
    rec.tx = tx
    rec.seq, rec.batch_id, rec.timestamp_ns, rec.state, rec.reserved, rec.captured, rec.refunded = (
        12,
        13,
        14,
        15,
        16,
        -17,
        -18,
    )
    assert packing.RECORD_STRUCT.unpack(bytes(rec))[12:] == (12, 13, 14, 15, 16, -17, -18)

    b = _ffi.ledger_batch_summary(1, 2, b"JPY", 3, 4, 5, 6, 7, 8, -9, 10, -11, 12, -13, -14)
    assert packing.BATCH_STRUCT.unpack(bytes(b)) == (1, 2, b"JPY\0", 3, 4, 5, 6, 7, 8, -9, 10, -11, 12, -13, -14)

    bal = _ffi.ledger_balance(-1, -2, -3, -4, -5, -6)
    assert packing.BALANCE_STRUCT.unpack(bytes(bal)) == (-1, -2, -3, -4, -5, -6)


def test_numpy_dtype_matches_the_ctypes_layout():
    np = pytest.importorskip("numpy")
    dtype = ledger.tx_dtype()
    assert dtype.itemsize == ctypes.sizeof(_ffi.ledger_tx)
    offsets = {name: dtype.fields[name][1] for name in dtype.names}
    t = _ffi.ledger_tx
    assert offsets == {
        "id_lo": t.id.offset + _ffi.ledger_id.lo.offset,
        "id_hi": t.id.offset + _ffi.ledger_id.hi.offset,
        "ref_lo": t.ref.offset + _ffi.ledger_id.lo.offset,
        "ref_hi": t.ref.offset + _ffi.ledger_id.hi.offset,
        "client_id": t.client_id.offset,
        "device_id": t.device_id.offset,
        "amount": t.amount.offset,
        "kind": t.kind.offset,
        "flags": t.flags.offset,
        "currency": t.currency.offset,
        "reserved": t.reserved.offset,
        "user_data": t.user_data.offset,
    }
    assert ledger.TX_DTYPE == dtype
    # The same transaction packed by struct and by numpy is the same bytes.
    tx = ledger.Tx(2**100 + 5, 7, -3, "USD", ledger.Kind.REFUND, ref=2**70 + 1, device_id=9, user_data=2**64 - 1)
    arr = ledger.pack_columns(
        tx.id & (2**64 - 1),
        7,
        -3,
        "USD",
        ledger.Kind.REFUND,
        ref=1,
        device_id=9,
        user_data=2**64 - 1,
        id_hi=2**36,
        ref_hi=2**6,
    )
    assert arr.tobytes() == bytes(ledger.pack_txs([tx]))
    assert isinstance(arr, np.ndarray)


def test_version_and_library():
    assert ledger.version().startswith("ledger ")
    assert ledger.library_path().is_file()
    assert ledger.library_source() in ("env", "bundled", "development")


def test_struct_module_formats_have_no_padding():
    assert struct.calcsize(packing.TX_FORMAT) == 80
    assert struct.calcsize(packing.RECORD_FORMAT) == 128
    assert struct.calcsize(packing.BATCH_FORMAT) == 112
    assert struct.calcsize(packing.BALANCE_FORMAT) == 48


def test_installed_package_uses_its_bundled_library():
    """run-tests.sh sets LEDGER_EXPECT_BUNDLED=1: the wheel must carry and load its own copy."""
    import os

    if os.environ.get("LEDGER_EXPECT_BUNDLED") != "1":
        pytest.skip("only checked for an installed package (LEDGER_EXPECT_BUNDLED=1)")
    assert ledger.library_source() == "bundled"
    assert ledger.library_path().parent == Path(ledger.__file__).resolve().parent


def test_missing_library_is_a_clear_import_error(tmp_path):
    import sys

    from conftest import child_env

    env = child_env()
    env["LEDGER_LIBRARY"] = str(tmp_path / "nowhere" / "libledger.so")
    proc = subprocess.run([sys.executable, "-c", "import ledger"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "nowhere" in proc.stderr and "LEDGER_LIBRARY" in proc.stderr
