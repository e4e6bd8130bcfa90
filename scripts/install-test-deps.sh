#!/usr/bin/env bash
# Installs what the test command needs beyond the Rust toolchain, when it is missing:
# Debian's chromium (with fonts) for the web portal's end-to-end tests and Debian's
# postgresql for portal-svc's metadata on PostgreSQL (the tests start their own server
# with its initdb and pg_ctl; the package's own cluster is not used), and nftables and
# iproute2 for portal-svc's partition test (network namespaces and nft rules it makes
# and removes itself, as root), as root through apt-get. Node 20+ with npm, Python 3 with venv and a C compiler are checked, not
# installed (the machine's own). The npm packages (playwright-core) and the Python
# tools (pytest, Schemathesis, openapi-python-client) are installed by the scripts that
# use them, pinned, into the repository's target directory. Run by scripts/test-all.sh.
set -euo pipefail

missing() {
  echo "install-test-deps: $*" >&2
  exit 1
}

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium fonts-liberation fonts-dejavu-core
  else
    missing "chromium is required for the web portal's end-to-end tests: apt-get install -y chromium (as root), or set CHROMIUM"
  fi
fi
"${CHROMIUM:-/usr/bin/chromium}" --version
pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
if [ ! -x "$(pg_bin)/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
  else
    missing "postgresql is required for portal-svc's PostgreSQL tests: apt-get install -y postgresql (as root), or set PG_BIN to the directory of initdb"
  fi
fi
"$(pg_bin)/postgres" --version
if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing nftables and iproute2 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nftables iproute2
  else
    missing "nft and ip are required for portal-svc's partition test (tests/cluster_faults.rs): apt-get install -y nftables iproute2 (as root)"
  fi
fi
nft --version
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing "node 20+ and npm are required"
node --version
python3 -c 'import venv' 2>/dev/null || missing "python3 with venv is required"
command -v cc >/dev/null 2>&1 || missing "a C compiler (cc) is required"
