"""Build step of the `ledger` Python package: builds the C ABI library with cargo and
bundles it into the package.

`pip install ./ledger-ffi/python` (from the repository root) runs
`cargo build --release -p ledger-ffi --locked` in the repository and copies the
resulting shared library (libledger.so) next to `ledger/__init__.py` in the wheel.

The repository is found from this file's place (`<repo>/ledger-ffi/python/setup.py`),
or from `LEDGER_REPO_ROOT` when set (needed when building from an unpacked sdist
outside the repository). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent

if sys.platform == "darwin":
    LIBRARY_FILE = "libledger.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "ledger.dll"
else:
    LIBRARY_FILE = "libledger.so"


def repo_root() -> Path:
    env = os.environ.get("LEDGER_REPO_ROOT")
    candidates = [Path(env)] if env else [HERE.parent.parent]
    for root in candidates:
        if (root / "Cargo.toml").is_file() and (root / "ledger-ffi" / "Cargo.toml").is_file():
            return root.resolve()
    where = f"LEDGER_REPO_ROOT={env}" if env else f"{HERE.parent.parent} (two levels above setup.py)"
    raise SystemExit(
        f"ledger: cannot find the ledger repository at {where}; "
        "set LEDGER_REPO_ROOT to the directory holding the workspace Cargo.toml and ledger-ffi/"
    )


def cargo_build(root: Path) -> Path:
    """Runs the release build of ledger-ffi and returns the path of the cdylib."""
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit("ledger: building the package needs cargo (a Rust toolchain) on PATH")
    command = [cargo, "build", "--release", "-p", "ledger-ffi", "--locked", "--message-format=json-render-diagnostics"]
    print(f"ledger: running {' '.join(command)} in {root}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, cwd=root, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ledger: cargo build failed with exit code {proc.returncode}")
    for line in proc.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        target = message.get("target") or {}
        if (
            message.get("reason") == "compiler-artifact"
            and target.get("name") == "ledger"
            and "cdylib" in target.get("kind", [])
        ):
            for name in message.get("filenames", []):
                if Path(name).name == LIBRARY_FILE:
                    return Path(name)
    raise SystemExit(f"ledger: cargo build succeeded but reported no {LIBRARY_FILE} artifact")


class BuildPyWithLibrary(build_py):
    """build_py that also builds libledger and copies it into the built package."""

    def run(self) -> None:
        # build_lib persists between builds: start the package afresh so that no file
        # of an earlier build (a removed module, an old library) reaches the wheel.
        shutil.rmtree(Path(self.build_lib) / "ledger", ignore_errors=True)
        super().run()
        library = cargo_build(repo_root())
        if getattr(self, "editable_mode", False):
            # An editable install imports from the source tree, which finds
            # target/release/libledger.so by itself: nothing to bundle.
            return
        destination = Path(self.build_lib) / "ledger" / LIBRARY_FILE
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, destination)
        print(f"ledger: bundled {library} as {destination}", file=sys.stderr, flush=True)

    def get_outputs(self, include_bytecode: bool = True):  # type: ignore[override]
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / "ledger" / LIBRARY_FILE))
        return outputs


class BinaryDistribution(Distribution):
    """The wheel carries a native library: make it platform-specific (not py3-none-any)."""

    def has_ext_modules(self) -> bool:
        return True


def scratch_dir() -> "Path | None":
    """Where setuptools keeps its build and egg-info directories: under the cargo target
    directory, so that building leaves the source tree as it was."""
    try:
        root = repo_root()
    except SystemExit:
        return None
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    scratch = (target if target.is_absolute() else root / target) / "python-build"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


_scratch = scratch_dir()

setup(
    cmdclass={"build_py": BuildPyWithLibrary},
    distclass=BinaryDistribution,
    options={"build": {"build_base": str(_scratch / "build")}, "egg_info": {"egg_base": str(_scratch)}}
    if _scratch
    else {},
)
