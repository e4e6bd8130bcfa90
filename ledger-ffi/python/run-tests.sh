#!/usr/bin/env bash
# Tests the Python package `ledger` from scratch, as on a fresh machine: builds the C
# ABI library, installs the package into a new virtual environment (its build step
# bundles libledger.so), runs the pytest suite against the installed package, and runs
# examples/python/embed.py with it.
#
#   bash ledger-ffi/python/run-tests.sh            (from anywhere; extra args go to pytest)
#
# Needs: cargo, python3 (3.9+) with the venv module, and PyPI (setuptools, pytest;
# numpy optional: set LEDGER_TEST_NUMPY=0 to leave it out).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"

echo "== build libledger (cargo build --release -p ledger-ffi --locked)"
cargo build --release -p ledger-ffi --locked

target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
mkdir -p "$target_dir"
work="$(mktemp -d "$target_dir/python-tests.XXXXXX")"
trap 'rm -rf "$work"' EXIT
venv="$work/venv"

echo "== virtual environment ($venv)"
if ! "$python" -m venv "$venv"; then
  echo "run-tests.sh: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi
vpy="$venv/bin/python"
"$vpy" --version

# One resolver run for the package and the test tools (numpy optional: without it the
# numpy tests are skipped).
echo "== pip install ./ledger-ffi/python pytest numpy"
if [ "${LEDGER_TEST_NUMPY:-1}" = "0" ] || ! "$vpy" -m pip install --quiet ./ledger-ffi/python pytest numpy; then
  [ "${LEDGER_TEST_NUMPY:-1}" = "0" ] || echo "(numpy not installed: the numpy tests will be skipped)"
  "$vpy" -m pip install --quiet ./ledger-ffi/python pytest
fi
"$vpy" -m pip list --format=freeze | grep -iE '^(ledger|pytest|numpy)=' || true

echo "== pytest"
# The installed package is what is tested: no LEDGER_LIBRARY override, and run from a
# directory where the source tree's package cannot shadow the installed one.
unset LEDGER_LIBRARY
status=0
(cd "$work" && LEDGER_EXPECT_BUNDLED=1 "$venv/bin/pytest" -p no:cacheprovider -ra \
  "$root/ledger-ffi/python/tests" "$@") || status=$?
if [ "$status" -eq 5 ]; then
  echo "run-tests.sh: pytest collected no tests (exit 5): failing" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "run-tests.sh: pytest failed (exit $status)" >&2
  exit "$status"
fi

echo "== examples/python/embed.py"
(cd "$work" && "$vpy" "$root/examples/python/embed.py")

echo "== python package: all passed"
