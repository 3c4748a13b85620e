"""edge.admission: the rate-limit response headers and durations."""

from __future__ import annotations

import pytest

from edge.admission import format_duration, rate_limited, ratelimit_headers
from edge.domain import Lease, LimitKind, LimitState

STATES = (
    LimitState(LimitKind.RPM, 60, 0, 12.4),
    LimitState(LimitKind.TPM, 1000, 400, 0.25),
    LimitState(LimitKind.CONCURRENCY, 2, 0, 0.0),
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0ms"), (0.25, "250ms"), (1, "1s"), (2.5, "2.5s"), (60, "1m0s"), (361, "6m1s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_name_each_limit() -> None:
    headers = ratelimit_headers(STATES)
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-tokens"] == "400"
    assert headers["x-ratelimit-reset-tokens"] == "250ms"
    assert headers["x-ratelimit-limit-concurrency"] == "2"


@pytest.mark.parametrize(
    ("denied_by", "retry_after"),
    [(LimitKind.RPM, "13"), (LimitKind.TPM, "1"), (LimitKind.CONCURRENCY, "1")],
)
def test_rate_limited_retry_after_is_a_ceiled_integer_of_at_least_one(
    denied_by: LimitKind, retry_after: str
) -> None:
    error = rate_limited(Lease(False, "", denied_by, STATES))
    assert (error.status, error.type, error.code) == (429, "rate_limit_error",
                                                      "rate_limit_exceeded")
    assert error.headers["retry-after"] == retry_after
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
