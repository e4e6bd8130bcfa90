"""Reads `cargo test --no-run --message-format=json` on stdin and prints "NAME PATH" for
each integration-test binary of PACKAGE named on the command line.

usage: cargo test --workspace --no-run --message-format=json | python3 test-binaries.py PACKAGE NAME...
"""
import json
import sys


def package_name(package_id: str) -> str:
    """"path+file:///…/portal-svc#0.1.0", "path+file:///…/dir#name@0.1.0" (cargo >= 1.77)
    or "portal-svc 0.1.0 (…)" (older)."""
    if "#" not in package_id:
        return package_id.split(" ")[0]
    path, fragment = package_id.split("#", 1)
    if "@" in fragment:
        return fragment.split("@", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    package, wanted = sys.argv[1], set(sys.argv[2:])
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        target = message["target"]
        if package_name(message["package_id"]) != package or target["kind"] != ["test"] or target["name"] not in wanted:
            continue
        print(target["name"], message["executable"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
