"""examples/python/embed.py runs and prints what it should."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, child_env

EXAMPLE = REPO / "examples" / "python" / "embed.py"


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="the example is not next to these tests")
def test_embed_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "retry of the sale: EXISTS" in out
    assert "net         65.00 USD" in out
    assert "balance: captured 70.00 USD, refunded 5.00 USD, net 65.00 USD (settled 65.00 USD, open 0.00 USD)" in out
    assert "reopened" in out
