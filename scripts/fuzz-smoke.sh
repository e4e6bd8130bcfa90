#!/usr/bin/env bash
# Bounded libFuzzer run of every fuzz target in fuzz/fuzz_targets, for CI.
#
#   bash scripts/fuzz-smoke.sh                      # every target, its CI budget (below)
#   FUZZ_SECONDS=120 bash scripts/fuzz-smoke.sh     # every target 120 s
#   bash scripts/fuzz-smoke.sh segment_recovery     # only the named targets
#
# CI budget: 64 s of fuzzing in all on two cores, one target at a time: segment_recovery
# 12, record_decoder 12, ffi_submit 12, portal_request 12, money_parse 6, cold_files 10
# (cut from 160 s, then 110 s, to keep CI under 30 minutes on slower machines: a smoke
# test that every target builds and runs; the long runs below are where fuzzing finds
# things). The build before it (release at
# opt-level 1, instrumented, the portal and SQLite included) takes about 4 minutes from
# a cold cache on two cores.
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) and regressions
# (fuzz/regressions/<target>); what it learns goes to fuzz/corpus/<target> (gitignored),
# so repeated runs on one machine keep their progress. Exits non-zero if any target
# crashes (a panic, including a failed oracle assertion), times out or runs out of
# memory; the input is in fuzz/artifacts/<target>/. To keep it as a regression that
# `cargo test` in fuzz/ replays on stable:
#   cp fuzz/artifacts/<target>/crash-<hash> fuzz/regressions/<target>/<what-it-shows>
#   (cd fuzz && cargo test)     # replays it: fails until the bug is fixed
#
# Long run (not for CI): many hours, all cores, the same corpus directory (and
# CARGO_PROFILE_RELEASE_OPT_LEVEL=3 for the last few percent of speed):
#   CARGO_PROFILE_RELEASE_OPT_LEVEL=3 FUZZ_SECONDS=28800 FUZZ_JOBS=$(nproc) bash scripts/fuzz-smoke.sh segment_recovery
# or by hand from the repository root, which is all this script does:
#   cargo fuzz run --sanitizer none segment_recovery fuzz/corpus/segment_recovery \
#     fuzz/seeds/segment_recovery fuzz/regressions/segment_recovery -- -max_len=4096 -fork=8
# and `cargo fuzz cmin segment_recovery fuzz/corpus/segment_recovery` now and then to
# shrink the corpus.
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default: each target's CI budget above; 30 for
#                    a target not listed)
#   FUZZ_JOBS        parallel libFuzzer processes per target, via -fork (default 1)
#   FUZZ_MAX_LEN     largest input in bytes (default 4096)
#   FUZZ_SANITIZER   none (default: builds on a stable toolchain) or address, which
#                    needs nightly flags; on a stable toolchain the script then sets
#                    RUSTC_BOOTSTRAP=1 for the fuzz build only
#   CARGO_FUZZ_VERSION  cargo-fuzz version installed when it is missing (default 0.13.2)
#
# Without cargo-fuzz, the seeds and regressions still replay through the same oracle,
# uninstrumented, on stable: (cd fuzz && cargo test). scripts/test-all.sh does that.
set -euo pipefail
cd "$(dirname "$0")/.."

# Seconds a target fuzzes in CI (FUZZ_SECONDS overrides them all).
budget() {
  case "$1" in
    segment_recovery) echo 12 ;;
    record_decoder) echo 12 ;;
    ffi_submit) echo 12 ;;
    portal_request) echo 12 ;;
    money_parse) echo 6 ;;
    cold_files) echo 10 ;;
    *) echo 30 ;;
  esac
}

jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-4096}
sanitizer=${FUZZ_SANITIZER:-none}
cargo_fuzz_version=${CARGO_FUZZ_VERSION:-0.13.2}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $cargo_fuzz_version (about a minute on two cores)"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
cargo fuzz --version

if [ "$sanitizer" != none ] && ! rustc -V | grep -q -- '-nightly'; then
  # cargo-fuzz passes -Zsanitizer=...; RUSTC_BOOTSTRAP lets a stable rustc accept it.
  # Cargo caches rustc's target probe in target/.rustc_info.json without keying it
  # on RUSTC_BOOTSTRAP, so one earlier failed probe would fail every later build:
  # CARGO_CACHE_RUSTC_INFO=0 turns that cache off.
  export RUSTC_BOOTSTRAP=1 CARGO_CACHE_RUSTC_INFO=0
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

# fuzz/ is a workspace member, so `cargo fuzz` builds with the root's release profile,
# made for shipping (one codegen unit, thin LTO): that doubles an instrumented build and
# buys a fuzzer nothing. Its own settings, which do not touch the shipped builds (those
# are under target/release, the fuzz build under target/<triple>/release). opt-level 1:
# measured on 2 cores (2026-12-07, a target dir each, one after the other), the build
# took 239 s against 309 s at opt-level 3, and ran 5 - 10% fewer executions per second
# (record_decoder 1711 against 1926, segment_recovery 7955 against 8340) while reaching
# more coverage in 8 s (less inlining, more distinct edges). A long run may set 3.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-16}
export CARGO_PROFILE_RELEASE_LTO=${CARGO_PROFILE_RELEASE_LTO:-false}
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${CARGO_PROFILE_RELEASE_OPT_LEVEL:-1}

# Build every target first, in one cargo run (the dependencies are shared), so that a
# build failure is not mistaken for a crash and the time budget is spent fuzzing.
if [ "$#" -eq 0 ]; then
  cargo fuzz build --sanitizer "$sanitizer"
else
  for target in "${targets[@]}"; do cargo fuzz build --sanitizer "$sanitizer" "$target"; done
fi

failed=()
started=$(date +%s)
for target in "${targets[@]}"; do
  seconds=${FUZZ_SECONDS:-$(budget "$target")}
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  inputs=("$corpus")
  for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
    if [ -d "$dir" ]; then inputs+=("$dir"); fi
  done
  flags=(-max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1)
  if [ "$jobs" -gt 1 ]; then flags+=(-fork="$jobs"); fi

  echo "== fuzz $target: ${seconds}s, sanitizer $sanitizer, inputs ${inputs[*]}"
  marker=$(mktemp)
  status=0
  cargo fuzz run --sanitizer "$sanitizer" "$target" "${inputs[@]}" -- "${flags[@]}" || status=$?
  new_artifacts=$(find "fuzz/artifacts/$target" -type f -newer "$marker" | sort)
  rm -f "$marker"
  if [ "$status" -ne 0 ] || [ -n "$new_artifacts" ]; then
    echo "!! $target failed (exit status $status); inputs:" >&2
    echo "${new_artifacts:-  (none written)}" >&2
    failed+=("$target")
  fi
  echo "== $target corpus: $(find "$corpus" -type f | wc -l) files"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz smoke passed: ${targets[*]} ($(( $(date +%s) - started )) s of fuzzing)"
