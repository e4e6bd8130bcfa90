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
