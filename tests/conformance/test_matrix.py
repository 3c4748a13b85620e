"""Issue 4's conformance matrix: every case x vendor x mode through one running gateway.

Each cell scripts its vendor's fake from the case's expected outcome, sends the case's
request with the official `openai` SDK (no retries) and asserts the exact result the SDK
parsed, what reached the upstream, and that it was reached once. Cells that do not
exist for a vendor or a mode are not generated (the matrix shows them as n/a);
`python -m tests.conformance.matrix` prints the table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conformance.cases import CASES, MODES, VENDORS, Answer, Case, Failure, cell_id
from tests.conformance.checks import Result, collect_stream, from_completion
from tests.conformance.stack import KEYS, Matrix, model_for, open_matrix
from tests.conformance.upstream import check_sent

pytestmark = pytest.mark.e2e

# Provider bugs found by the matrix: (case, vendor, mode) -> what is wrong.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def _cells() -> list[Any]:
    cells = []
    for case in CASES:
        for vendor in VENDORS:
            for mode in MODES:
                if case.skip_reason(vendor, mode):
                    continue
                bug = KNOWN_BUGS.get((case.name, vendor, mode))
                marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
                cells.append(pytest.param(case, vendor, mode, marks=marks,
                                          id=cell_id(case.name, vendor, mode)))
    return cells


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    async with open_matrix(tmp_path_factory.mktemp("conformance")) as running:
        yield running


async def _run(matrix: Matrix, case: Case, model: str, mode: str) -> Result:
    if mode == "non-stream":
        completion = await matrix.client.chat.completions.create(model=model, **case.request)
        return from_completion(completion)
    stream = await matrix.client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, **case.request)
    return await collect_stream(stream)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("case", "vendor_name", "mode"), _cells())
async def test_cell(matrix: Matrix, case: Case, vendor_name: str, mode: str) -> None:
    vendor = matrix.vendors[vendor_name]
    before = len(vendor.sent())
    vendor.arm(case.outcome)
    if isinstance(case.outcome, Failure):
        with pytest.raises(case.outcome.error) as info:
            await _run(matrix, case, model_for(vendor_name, case, mode), mode)
        assert info.value.status_code == case.outcome.gateway_status
        assert info.value.type == case.outcome.error_type
        text = info.value.response.text
        assert "127.0.0.1" not in text and not any(k in text for k in KEYS.values())
    else:
        result = await _run(matrix, case, model_for(vendor_name, case, mode), mode)
        result.assert_matches(case.outcome, native_ids=vendor.native_ids)
        # Anthropic and Gemini send their thinking; OpenAI's chat API does not.
        thinks = vendor_name in ("anthropic", "gemini")
        assert result.reasoning == (case.outcome.thinking if thinks else "")
        if case.name == "streamed_tool_arguments":
            # Gemini (in the case's notes) sends each call whole; the others split it.
            whole = vendor_name in case.notes
            assert all(n == 1 if whole else n > 1 for n in result.argument_deltas), (
                result.argument_deltas)
    sent = vendor.sent()[before:]
    assert len(sent) == 1, f"{len(sent)} upstream requests"
    check_sent(case.name, vendor_name, sent[0], mode == "stream")


def test_every_case_has_a_cell_per_applicable_vendor_and_mode() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) == 16
    assert all(isinstance(c.outcome, (Answer, Failure)) for c in CASES)
    assert set(KNOWN_BUGS) <= {(c.name, v, m) for c in CASES for v in VENDORS for m in MODES}
