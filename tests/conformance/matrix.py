"""Print issue 4's conformance matrix as a Markdown table, from the pytest results.

    python -m tests.conformance.matrix                 # run the matrix, write MATRIX.md
    python -m tests.conformance.matrix --junit r.xml   # only read an earlier run's results

Rows are the cases, columns vendor x mode; a cell is pass, xfail (a known provider bug,
see KNOWN_BUGS in test_matrix.py), n/a (the case does not exist there), FAIL, or
"not run"; reasons and vendor notes are footnotes below the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conformance.cases import CASES, MODES, VENDORS, cell_id

HERE = Path(__file__).resolve().parent
MODULE = HERE / "test_matrix.py"
OUTPUT = HERE / "MATRIX.md"
TEST_NAME = "test_cell"


def outcomes(junit: Path) -> dict[str, str]:
    """The outcome of every cell in a junit XML report, by cell id."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if not name.startswith(TEST_NAME + "["):
            continue
        cell = name[len(TEST_NAME) + 1:-1]
        if case.find("failure") is not None or case.find("error") is not None:
            found[cell] = "FAIL"
        elif (skipped := case.find("skipped")) is not None:
            found[cell] = "xfail" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            found[cell] = "pass"
    return found


def table(results: dict[str, str]) -> str:
    """The Markdown matrix, with the n/a reasons as footnotes."""
    columns = [(vendor, mode) for vendor in VENDORS for mode in MODES]
    lines = ["| case | " + " | ".join(f"{v} {m}" for v, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    notes: dict[str, int] = {}
    for case in CASES:
        cells = []
        for vendor, mode in columns:
            reason = case.skip_reason(vendor, mode)
            if reason:
                number = notes.setdefault(reason, len(notes) + 1)
                cells.append(f"n/a[^{number}]")
            else:
                cell = results.get(cell_id(case.name, vendor, mode), "not run")
                if note := case.notes.get(vendor):
                    cell += f"[^{notes.setdefault(note, len(notes) + 1)}]"
                cells.append(cell)
        lines.append(f"| {case.title} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[^{number}]: {reason}" for reason, number in notes.items()]
    return "\n".join(lines) + "\n"


def run(junit: Path) -> int:
    """Run the matrix module with pytest, its junit report written to `junit`."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(MODULE), f"--junitxml={junit}"]
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    """Run (or read) the matrix, write MATRIX.md and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", type=Path, help="read this junit XML instead of running")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    status = 0
    if args.junit is None:
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "matrix.xml"
            status = run(junit)
            results = outcomes(junit)
    else:
        results = outcomes(args.junit)
    text = table(results)
    args.output.write_text(text, encoding="utf-8")
    print(text, end="")
    return status


if __name__ == "__main__":
    sys.exit(main())
