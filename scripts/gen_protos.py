"""Regenerate the `apirelay/` package from `protos/`: the one way to produce it.

Usage: python scripts/gen_protos.py [--check]
With --check, generate into a temporary folder and exit 1 if it differs from the tree.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "apirelay"


def generate(out: Path) -> None:
    """Run protoc over every proto into `out`, then add the package `__init__.py` files."""
    target = out / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    bindir = str(Path(sys.executable).parent)
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}", f"--mypy_grpc_out=quiet:{out}",
        *files,
    ]
    env = {"PATH": bindir + ":/usr/bin:/bin"}
    subprocess.run(cmd, check=True, env=env)
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def differences(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two generated trees."""
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    diff = sorted(str(n) for n in names_a ^ names_b)
    diff += sorted(
        str(n) for n in names_a & names_b if not filecmp.cmp(a / n, b / n, shallow=False)
    )
    return diff


def main(argv: list[str]) -> int:
    """Generate in place, or with --check compare a fresh generation with the tree."""
    if "--check" not in argv:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        diff = differences(Path(tmp) / PACKAGE, ROOT / PACKAGE)
    if diff:
        print("generated code is out of date; run scripts/gen_protos.py:", *diff, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
