#!/usr/bin/env bash
# End-to-end tests of the web portal: builds portal-svc, starts the real binary on an
# empty temporary data directory with a known platform admin, drives its pages in
# headless Chromium (portal-svc/web/e2e/run.mjs, playwright-core over Debian's
# `chromium`) and stops it. Screenshots of every page go to target/web-screenshots/
# (or $WEB_SCREENSHOTS).
#
# Needs node (20+) and chromium (`apt-get install -y chromium`); .ci/run installs
# both dependencies. A missing browser is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
e2e=portal-svc/web/e2e
target_dir=${CARGO_TARGET_DIR:-$root/target}
shots=${WEB_SCREENSHOTS:-$target_dir/web-screenshots}
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
started=$(date +%s)

fail() {
  echo "web-e2e: $*" >&2
  exit 1
}

[ -x "$chromium_bin" ] || fail "no browser at $chromium_bin: install Debian's chromium (apt-get install -y chromium), or set CHROMIUM"
command -v node >/dev/null 2>&1 || fail "node (20 or newer) is required"
if [ ! -f "$e2e/node_modules/playwright-core/package.json" ]; then
  echo "== web e2e: npm ci ($e2e)"
  (cd "$e2e" && npm ci --no-audit --no-fund)
fi

# PORTAL_SVC_BIN: a portal-svc binary built already (test-all.sh passes the one the
# workspace tests built: a `cargo build -p portal-svc` resolves features for that
# package alone and may build much again); else it is built here.
if [ -n "${PORTAL_SVC_BIN:-}" ]; then
  bin=$PORTAL_SVC_BIN
else
  echo "== web e2e: build portal-svc"
  cargo build --locked -q -p portal-svc
  bin="$target_dir/debug/portal-svc"
fi
[ -x "$bin" ] || fail "no binary at $bin"

data=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

: >"$data/stdout"
admin_email=root@e2e.test
admin_password="e2e admin password $(date +%s%N)"
PORTAL_ADMIN_EMAIL=$admin_email PORTAL_ADMIN_PASSWORD=$admin_password RUST_LOG=portal_svc=warn \
  "$bin" --data-dir "$data/portal" --listen 127.0.0.1:0 >"$data/stdout" 2>"$data/stderr" &
pid=$!

url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^listening on //p' "$data/stdout" | head -n 1 || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/stderr" >&2; fail "portal-svc exited before listening"; }
  sleep 0.1
done
[ -n "$url" ] || fail "portal-svc did not listen within 30 s"
echo "== web e2e: portal-svc at $url; chromium $("$chromium_bin" --version 2>/dev/null | head -n 1)"

rm -rf "$shots"
mkdir -p "$shots"
status=0
(cd "$e2e" && PORTAL_URL=$url PORTAL_ADMIN_EMAIL=$admin_email PORTAL_ADMIN_PASSWORD=$admin_password \
  SCREENSHOT_DIR=$shots CHROMIUM=$chromium_bin node run.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "-- portal-svc's log:" >&2
  tail -n 50 "$data/stderr" >&2 || true
  fail "failed (screenshots so far in $shots)"
fi
kill -TERM "$pid"
wait "$pid" || fail "portal-svc did not stop cleanly on SIGTERM"
pid=
echo "== web e2e: passed in $(( $(date +%s) - started )) s; screenshots in $shots"
