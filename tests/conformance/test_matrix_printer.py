"""The matrix printer: junit outcomes to cells, n/a and notes as footnotes."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.cases import CASES
from tests.conformance.matrix import outcomes, table

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.conformance.test_matrix" name="test_cell[text-openai-stream]"/>
<testcase classname="tests.conformance.test_matrix" name="test_cell[text-azure-stream]">
  <failure message="assert 1 == 2">boom</failure></testcase>
<testcase classname="tests.conformance.test_matrix" name="test_cell[text-gemini-stream]">
  <skipped type="pytest.xfail" message="a known bug"/></testcase>
<testcase classname="tests.conformance.test_matrix" name="test_other"/>
</testsuite></testsuites>
"""


def test_outcomes_read_pass_fail_and_xfail_by_cell(tmp_path: Path) -> None:
    junit = tmp_path / "r.xml"
    junit.write_text(JUNIT)
    assert outcomes(junit) == {"text-openai-stream": "pass", "text-azure-stream": "FAIL",
                               "text-gemini-stream": "xfail"}


def test_table_has_a_row_per_case_and_footnotes_for_na_and_notes() -> None:
    text = table({"text-openai-stream": "pass", "text-gemini-stream": "xfail"})
    lines = text.splitlines()
    assert lines[0] == ("| case | openai stream | openai non-stream | azure stream | "
                        "azure non-stream | anthropic stream | anthropic non-stream | "
                        "gemini stream | gemini non-stream |")
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:2 + len(CASES)]}
    assert list(rows) == [c.title for c in CASES]
    assert rows["text"].startswith("| text | pass | not run | not run | not run | not run | "
                                   "not run | xfail |")
    assert rows["upstream 529"].count("n/a[^") == 6
    assert "pass" not in rows["upstream 529"]
    assert any(line.startswith("[^") and "no 529" in line for line in lines)
    assert any(line.startswith("[^") and "Gemini streams" in line for line in lines)
