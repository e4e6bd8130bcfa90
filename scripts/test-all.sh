#!/usr/bin/env bash
# Runs every test of the project: the workspace's unit, integration, property, crash
# and doc tests, portal-svc's SQL-heavy suites again with the metadata in PostgreSQL, Schemathesis against the portal's API as its three roles, a Python
# client generated from the API's document running README's session, the fuzz
# regression replays (fuzz/ is a workspace member), the web portal's end-to-end tests in headless Chromium, and the
# examples. README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== what the tests need beyond Rust (scripts/install-test-deps.sh) (at ${SECONDS} s)"
bash scripts/install-test-deps.sh

echo "== workspace tests, the fuzz seed and regression replays among them (at ${SECONDS} s)"
cargo test --workspace --locked

echo "== portal-svc's suites that exercise its SQL, on PostgreSQL (a server per suite, a database per test) (at ${SECONDS} s)"
# The binaries the workspace tests just built, run directly: tests/shared_postgres.rs
# (two processes on one database, concurrent writers on both) ran above. Asking cargo
# for a subset of the tests (`--test NAME`) resolves host dependencies differently and
# rebuilds about 90 crates (4 min on 2 cores), so the same `cargo test --workspace
# --no-run` names the fresh binaries instead. Left out for time (about 3 min): suites
# that add little SQL of their own (access, audit_concurrency, auth_flows, batches,
# error_bodies, request_hygiene, web, soak), which pass on PostgreSQL as well, and
# those whose checks read DIR/portal.db (backup, security).
pg_suites="client_settings clients_and_keys devices mfa openapi_document reports_notes tickets transactions webhooks"
cargo test --workspace --locked --no-run --message-format=json 2>/dev/null \
  | python3 scripts/test-binaries.py portal-svc $pg_suites > "${CARGO_TARGET_DIR:-target}/pg-suites.txt"
[ "$(wc -l < "${CARGO_TARGET_DIR:-target}/pg-suites.txt")" -eq "$(echo $pg_suites | wc -w)" ] || {
  echo "expected the binaries of: $pg_suites; found:" >&2; cat "${CARGO_TARGET_DIR:-target}/pg-suites.txt" >&2; exit 1; }
while read -r name binary; do
  echo "-- $name on PostgreSQL"
  (cd portal-svc && PORTAL_TEST_POSTGRES=1 "$binary" -q)
done < "${CARGO_TARGET_DIR:-target}/pg-suites.txt"

echo "== Schemathesis against portal-svc, as the three roles (scripts/schemathesis.sh) (at ${SECONDS} s)"
# The debug binary the workspace tests just built.
PORTAL_SVC_BIN=${CARGO_TARGET_DIR:-target}/debug/portal-svc bash scripts/schemathesis.sh

echo "== a Python client generated from /openapi.json runs README's session (scripts/python-client.sh) (at ${SECONDS} s)"
PORTAL_SVC_BIN=${CARGO_TARGET_DIR:-target}/debug/portal-svc bash scripts/python-client.sh

echo "== web portal end-to-end, headless chromium (scripts/web-e2e.sh) (at ${SECONDS} s)"
PORTAL_SVC_BIN=${CARGO_TARGET_DIR:-target}/debug/portal-svc bash scripts/web-e2e.sh

echo "== examples (at ${SECONDS} s)"
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
# The debug builds `cargo test --workspace` made (it builds every example and the
# `ledger` tool its tests run), run as they are: `cargo run -p X` resolves features
# for that one package and rebuilt a dozen crates (39 s of CI); a release build of
# three crates took a minute more, for programs that run in seconds.
bin=${CARGO_TARGET_DIR:-target}/debug
"$bin/examples/log_roundtrip" "$demo/log" 200000
"$bin/examples/log_roundtrip" "$demo/log" 200000
"$bin/examples/embed_ledger" "$demo/ledger"
"$bin/examples/embed_ledger" "$demo/ledger"
# The operators' tool on the ledger the example wrote: clean, and it reads back.
"$bin/ledger" verify "$demo/ledger" >/dev/null
"$bin/ledger" inspect "$demo/ledger" --json >/dev/null

echo "== C ABI: test suite linked statically and dynamically (-Wall -Wextra -Werror) (at ${SECONDS} s)"
bash ledger-ffi/tests/c/run.sh

echo "== C example (at ${SECONDS} s)"
make -s -C examples/c run

echo "== Python package: install into a venv, pytest, example (at ${SECONDS} s)"
bash ledger-ffi/python/run-tests.sh
