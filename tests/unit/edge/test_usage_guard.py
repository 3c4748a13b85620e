"""BL-6 at the unit level: which reported usages are billed, and what replaces the rest."""

from __future__ import annotations

import logging

import pytest

from edge.domain import Usage, UsageSource
from edge.errors import ApiError
from edge.metrics import USAGE_REJECTED
from edge.outcome import Metering, Outcome
from edge.request_report import RequestStatus
from edge.usage_guard import Rejection
from services.common.tokens import estimate_tokens
from tests.unit.edge.billing_fakes import FakeBilling, FakeLeases, settler_for

TEXT = "The quick brown fox jumps over the lazy dog"
CHUNK = b'{"choices":[{"delta":{"content":"' + TEXT.encode() + b'"}}]}'
DELIVERED = estimate_tokens(TEXT)


def streamed(usage: Usage | None, *, cap: int | None = 50) -> Outcome:
    """A chat stream that delivered TEXT, then reported `usage`."""
    outcome = Outcome("r", "k", "", prompt_estimate=12, max_completion=cap, stream=True)
    outcome.record_chunk(CHUNK)
    outcome.record_usage(usage, UsageSource.UPSTREAM, "c")
    return outcome


def rejected(reason: Rejection) -> float:
    return float(USAGE_REJECTED.labels(reason.value)._value.get())


def test_a_sane_usage_is_billed_as_reported() -> None:
    charge = streamed(Usage(20, 9, 29)).charge()
    assert charge is not None
    assert (charge.usage, charge.source, charge.rejected) == (
        Usage(20, 9, 29), UsageSource.UPSTREAM, None)


def test_no_usage_after_a_cut_bills_prompt_plus_delivered_tokens() -> None:
    charge = streamed(None).charge()
    assert charge is not None
    assert charge.usage == Usage(12, DELIVERED, 12 + DELIVERED)
    assert charge.source is UsageSource.ESTIMATED and charge.rejected is None


@pytest.mark.parametrize(
    ("usage", "reason", "prompt"),
    [
        (Usage(20, -500, -480), Rejection.NEGATIVE, 20),
        (Usage(-20, 5, -15), Rejection.NEGATIVE, 12),  # a negative prompt: the estimate
        (Usage(20, 5, 25, cached_prompt_tokens=-3), Rejection.NEGATIVE, 20),
        (Usage(20, 51, 71), Rejection.OVER_MAX_TOKENS, 20),
        (Usage(20, 10**9, 10**9 + 20), Rejection.OVER_MAX_TOKENS, 20),
        (Usage(20, 0, 20), Rejection.ZERO_COMPLETION, 20),
    ],
)
def test_untrusted_usage_is_replaced_by_counted_tokens(
    usage: Usage, reason: Rejection, prompt: int
) -> None:
    before = rejected(reason)
    charge = streamed(usage).charge()
    assert charge is not None and charge.rejected is reason
    assert charge.usage == Usage(prompt, DELIVERED, prompt + DELIVERED)
    assert charge.source is UsageSource.ESTIMATED
    assert charge.usage.completion_tokens > 0  # never 0 for delivered output
    assert rejected(reason) == before  # judging is pure: the Settler counts it once


def test_counted_tokens_never_pass_the_cap() -> None:
    charge = streamed(Usage(20, -1, 19), cap=3).charge()
    assert charge is not None and charge.usage.completion_tokens == 3


def test_zero_completion_without_delivered_text_is_trusted() -> None:
    outcome = Outcome("r", "k", "", 12, max_completion=50)
    outcome.record_usage(Usage(20, 0, 20), UsageSource.UPSTREAM, "c")
    charge = outcome.charge()
    assert charge is not None and charge.rejected is None and charge.usage == Usage(20, 0, 20)


def test_usage_after_the_client_left_is_billed_when_sane() -> None:
    outcome = streamed(Usage(20, 9, 29))
    outcome.client_gone = True
    charge = outcome.charge()
    assert charge is not None and charge.usage == Usage(20, 9, 29)
    assert outcome.report(0.0).status is RequestStatus.CLIENT_CLOSED


def test_unit_requests_skip_the_token_cap_but_not_the_sign() -> None:
    images = Outcome("r", "k", "", 0, Metering(units={"image/1024x1024/standard": 1}),
                     max_completion=0)
    images.record_usage(Usage(50, 4000, 4050), UsageSource.UPSTREAM, "c")
    charge = images.charge()
    assert charge is not None and charge.rejected is None
    images.record_usage(Usage(0, 0, 0, units={"image/1024x1024/standard": -2}),
                        UsageSource.UPSTREAM, "c")
    charge = images.charge()
    assert charge is not None and charge.rejected is Rejection.NEGATIVE
    assert charge.usage.units == {"image/1024x1024/standard": 1}


async def test_the_settler_counts_and_logs_a_rejection_once(caplog) -> None:  # type: ignore[no-untyped-def]
    billing = FakeBilling()
    settler = settler_for(billing, FakeLeases(), backoff_s=0)
    before = rejected(Rejection.OVER_MAX_TOKENS)
    caplog.set_level(logging.WARNING)
    settler.finish(streamed(Usage(20, 999, 1019)))
    await settler.drain()
    assert rejected(Rejection.OVER_MAX_TOKENS) == before + 1
    assert "request r: reported usage not trusted (over_max_tokens)" in caplog.text
    [sent] = billing.settles
    assert sent.usage.completion_tokens == DELIVERED and sent.usage_source == 2  # ESTIMATED


def test_reports_say_how_the_request_ended() -> None:
    ok = Outcome("r", "k", "", 1, completed=True, stream=True, started_at=10.0)
    ok.first_byte_at = 10.25
    report = ok.report(11.5)
    assert (report.status, report.latency_ms, report.first_token_ms, report.stream) == (
        RequestStatus.OK, 1500, 250, True)
    cut = Outcome("r", "k", "", 1, started_at=10.0)
    cut.record_error(ApiError(502, "server_error", "x", code="upstream_error"), cut=True)
    assert cut.report(10.1).status is RequestStatus.UPSTREAM_CUT
    assert cut.report(10.1).error_code == "upstream_error"
    failed = Outcome("r", "k", "", 1, started_at=10.0)
    failed.record_error(ApiError(400, "invalid_request_error", "bad"))
    assert (failed.report(10.1).status, failed.report(10.1).error_code) == (
        RequestStatus.ERROR, "invalid_request_error")
    assert failed.report(10.1).first_token_ms == 0
