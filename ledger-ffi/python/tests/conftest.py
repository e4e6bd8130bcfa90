"""Test setup: find the `ledger` package and its library the way the package does.

- An installed package (a wheel from `pip install ./ledger-ffi/python`) carries its own
  libledger.so: the tests use that copy, so they test what was installed.
- Run from the source tree (the package not installed), the source package is put on
  sys.path and, unless LEDGER_LIBRARY is already set, the library is built as the
  package's build step does (`cargo build --release -p ledger-ffi --locked`) and
  LEDGER_LIBRARY is pointed at it (set LEDGER_NO_BUILD=1 to use whatever
  target/release/libledger.so holds).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGE_SOURCE = TESTS.parent  # ledger-ffi/python
REPO = PACKAGE_SOURCE.parent.parent
LIBRARY_FILE = {"darwin": "libledger.dylib", "win32": "ledger.dll"}.get(sys.platform, "libledger.so")

#: Small log segments keep each test's ledger cheap to create (the default is 64 MiB,
#: zero-filled and synced, plus a spare one prepared in the background).
SEGMENT = 1 << 20


def _package_dir() -> Path:
    spec = importlib.util.find_spec("ledger")
    if spec is None or spec.origin is None:
        sys.path.insert(0, str(PACKAGE_SOURCE))
        spec = importlib.util.find_spec("ledger")
    assert spec is not None and spec.origin is not None, (
        "the ledger package is neither installed nor in the source tree"
    )
    return Path(spec.origin).resolve().parent


def _cargo_build() -> Path:
    command = [
        "cargo",
        "build",
        "--release",
        "-p",
        "ledger-ffi",
        "--locked",
        "--message-format=json-render-diagnostics",
    ]
    proc = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        pytest.exit(f"cargo build of ledger-ffi failed ({proc.returncode})", returncode=2)
    for line in proc.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        target = message.get("target") or {}
        if message.get("reason") == "compiler-artifact" and target.get("name") == "ledger":
            for name in message.get("filenames", []):
                if Path(name).name == LIBRARY_FILE:
                    return Path(name)
    pytest.exit("cargo build reported no libledger artifact", returncode=2)


def _ensure_library() -> None:
    if os.environ.get("LEDGER_LIBRARY"):
        return
    if (_package_dir() / LIBRARY_FILE).is_file():
        return  # an installed package: test its bundled library
    if os.environ.get("LEDGER_NO_BUILD") != "1" and shutil.which("cargo") and (REPO / "Cargo.toml").is_file():
        os.environ["LEDGER_LIBRARY"] = str(_cargo_build())
    elif (REPO / "target" / "release" / LIBRARY_FILE).is_file():
        os.environ["LEDGER_LIBRARY"] = str(REPO / "target" / "release" / LIBRARY_FILE)


_ensure_library()

import ledger  # noqa: E402  (after the library is in place)


def pytest_report_header(config):
    return [
        f"ledger package: {Path(ledger.__file__).parent}",
        f"ledger library: {ledger.library_path()} ({ledger.library_source()}), {ledger.version()}",
    ]


@pytest.fixture
def open_ledger(tmp_path):
    """A factory of ledgers in this test's temp dir, closed at the end of the test."""
    opened = []

    def factory(name: str = "ledger", sync: str = "always", segment_bytes: int = SEGMENT, path=None):
        book = ledger.Ledger(path if path is not None else tmp_path / name, sync=sync, segment_bytes=segment_bytes)
        opened.append(book)
        return book

    yield factory
    for book in opened:
        book.close()


@pytest.fixture
def book(open_ledger):
    """A fresh, durable ledger."""
    return open_ledger()


def child_env() -> dict:
    """Environment for a child Python process that must import the same package and
    library as this one."""
    env = dict(os.environ)
    env["LEDGER_LIBRARY"] = str(ledger.library_path())
    package_parent = str(Path(ledger.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
