#!/usr/bin/env bash
# A generated client proves the OpenAPI document (issue 16): a Python client is
# generated from a real portal-svc's /openapi.json with openapi-python-client (pinned in
# portal-svc/tests/python_client/requirements.txt), then README's session plus
# capture, void, refund, batch close, reconciliation and a report run through it with
# typed results (portal-svc/tests/python_client/session.py). Fails on any mismatch.
#
# PORTAL_SVC_BIN: the service binary (default: built here, debug).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/portal-test-env.sh
pinned_venv portal-svc/tests/python_client/requirements.txt python-client-venv
portal_binary

work=$(mktemp -d)
trap 'stop_service; rm -rf "$work"' EXIT

port=$(free_port)
base=http://127.0.0.1:$port
email=admin@python-client.test
password="python client platform admin 2026"
start_service "$work/data" "$port" "$email" "$password" "$work/service.log"

"$venv/bin/python" -c "import urllib.request; open('$work/openapi.json', 'wb').write(urllib.request.urlopen('$base/openapi.json').read())"
# Generated from the live document; the only warning allowed is /metrics' OpenMetrics
# text, which is not JSON and which a client does not read.
(cd "$work" && "$venv/bin/openapi-python-client" generate --path openapi.json --output-path portal_client --meta none \
  >generate.log 2>&1) || { cat "$work/generate.log" >&2; exit 1; }
if grep -E '^(WARNING|ERROR)' "$work/generate.log" | grep -v -x 'WARNING parsing GET /metrics within tag.' | grep -q .; then
  echo "openapi-python-client warned about the document:" >&2
  cat "$work/generate.log" >&2
  exit 1
fi
PYTHONPATH=$work "$venv/bin/python" portal-svc/tests/python_client/session.py "$base" "$email" "$password"
if grep -q panicked "$work/service.log"; then
  echo "portal-svc panicked:" >&2
  grep -A5 panicked "$work/service.log" >&2
  exit 1
fi
