#!/usr/bin/env bash
# The C test suite of ledger-ffi: builds libledger in release, compiles test_ledger.c
# against the committed header include/ledger.h, links it once statically (libledger.a)
# and once dynamically (libledger.so), runs both and prints the total as the last line:
#   N passed, M failed
# Exits non-zero on any failure. Run from anywhere: bash ledger-ffi/tests/c/run.sh
# Extra arguments are passed to both binaries (a test-name filter).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

echo "== cargo build --release -p ledger-ffi"
cargo build --release -p ledger-ffi --locked

# Where cargo put it (honours CARGO_TARGET_DIR and .cargo/config).
target_dir="$( (cargo metadata --format-version 1 --no-deps --locked 2>/dev/null || true) |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-$root/target}"
lib="$target_dir/release"
for f in "$lib/libledger.a" "$lib/libledger.so"; do
  [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
done

out="$target_dir/ledger-ffi-ctest"
mkdir -p "$out"
CC="${CC:-cc}"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g -pthread -I "$root/ledger-ffi/include")
sources=("$here/test_ledger.c" "$here/check.c")
# What `cargo rustc --release -p ledger-ffi --crate-type staticlib -- --print native-static-libs`
# reports for this crate on Linux/glibc.
STATIC_LIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)

echo "== compile (static: libledger.a)"
"$CC" "${CFLAGS[@]}" "${sources[@]}" "$lib/libledger.a" "${STATIC_LIBS[@]}" -o "$out/test_ledger_static"
echo "== compile (dynamic: libledger.so)"
"$CC" "${CFLAGS[@]}" "${sources[@]}" -L"$lib" -Wl,-rpath,"$lib" -lledger -o "$out/test_ledger_dynamic"

# The two binaries really are linked the two ways.
if command -v readelf >/dev/null 2>&1; then
  if readelf -d "$out/test_ledger_static" | grep -q 'libledger\.so'; then
    echo "test_ledger_static depends on libledger.so" >&2; exit 1
  fi
  if ! readelf -d "$out/test_ledger_dynamic" | grep -q 'NEEDED.*libledger\.so'; then
    echo "test_ledger_dynamic does not load libledger.so" >&2; exit 1
  fi
fi

passed=0
failed=0
status=0
run() { # label binary [filter]
  local label="$1" bin="$2" log="$out/$1.log" rc=0
  shift 2
  echo "== run ($label)"
  if command -v timeout >/dev/null 2>&1; then
    timeout --signal=KILL 300 "$bin" --label "$label" "$@" 2>&1 | tee "$log" || rc=$?
  else
    "$bin" --label "$label" "$@" 2>&1 | tee "$log" || rc=$?
  fi
  local line
  line="$(grep -E "^$label: [0-9]+ passed, [0-9]+ failed$" "$log" | tail -n 1 || true)"
  if [ -z "$line" ]; then
    echo "$label: no summary line (the binary crashed or hung; exit status $rc)" >&2
    failed=$((failed + 1))
    status=1
    return
  fi
  local p f
  p="$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/' <<<"$line")"
  f="$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/' <<<"$line")"
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
    status=1
  fi
}

started=$(date +%s)
run static "$out/test_ledger_static" "$@"
run dynamic "$out/test_ledger_dynamic" "$@"
echo "== C tests took $(( $(date +%s) - started )) s"
echo "$passed passed, $failed failed"
exit "$status"
