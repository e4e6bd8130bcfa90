# Shared by the scripts that test a real portal-svc from Python (schemathesis.sh,
# python-client.sh); sourced, not run.

# pinned_venv REQUIREMENTS NAME: sets `venv` (absolute) to a venv under the target
# directory holding exactly REQUIREMENTS, rebuilt when that file changes.
pinned_venv() {
  local requirements=$1 stamp
  venv=${CARGO_TARGET_DIR:-target}/$2
  stamp=$(sha256sum "$requirements" | cut -c1-16)
  if [ ! -f "$venv/.requirements-$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    touch "$venv/.requirements-$stamp"
  fi
  venv=$(cd "$venv" && pwd)
}

# portal_binary: sets `binary` to PORTAL_SVC_BIN, or to a debug build made here.
portal_binary() {
  binary=${PORTAL_SVC_BIN:-}
  if [ -z "$binary" ]; then
    cargo build --locked -q -p portal-svc
    binary=${CARGO_TARGET_DIR:-target}/debug/portal-svc
  fi
}

# free_port: a loopback port free now.
free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_service DATA_DIR PORT EMAIL PASSWORD LOG: starts `binary` on 127.0.0.1:PORT with
# that platform admin, sets `service` to its pid, and waits (up to 10 s) for it to listen.
start_service() {
  PORTAL_ADMIN_EMAIL=$3 PORTAL_ADMIN_PASSWORD=$4 "$binary" --data-dir "$1" --listen "127.0.0.1:$2" >"$5" 2>&1 &
  service=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$5" && break
    sleep 0.1
  done
}

# stop_service: stops the service `start_service` started, if any.
service=
stop_service() {
  if [ -n "$service" ]; then
    kill "$service" 2>/dev/null || true
    wait "$service" 2>/dev/null || true
    service=
  fi
}
