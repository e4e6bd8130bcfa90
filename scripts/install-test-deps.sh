#!/usr/bin/env bash
# Installs what the test command needs beyond the Rust toolchain, when it is missing:
# Debian's chromium (with fonts) for the web portal's end-to-end tests, as root through
# apt-get. Node 20+ with npm, Python 3 with venv and a C compiler are checked, not
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
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing "node 20+ and npm are required"
node --version
python3 -c 'import venv' 2>/dev/null || missing "python3 with venv is required"
command -v cc >/dev/null 2>&1 || missing "a C compiler (cc) is required"
