"""edge.admission and edge.limits: the rules of a request, the headers, the 429."""

from __future__ import annotations

import pytest

from edge.admission import rate_limited
from edge.domain import Lease, LimitKind, LimitRule, LimitScope, LimitState, Principal
from edge.limits import LimitPolicy, format_duration, ratelimit_headers
from services.common.limits_config import NO_VALUES, LimitsConfig, LimitValues, parse_limits

KEY, ACCOUNT, MODEL = LimitScope.KEY, LimitScope.ACCOUNT, LimitScope.KEY_MODEL
STATES = (
    LimitState(LimitKind.RPM, 60, 0, 12.4, KEY),
    LimitState(LimitKind.TPM, 1000, 400, 0.25, KEY),
    LimitState(LimitKind.CONCURRENCY, 2, 0, 0.0, KEY),
)


def principal(group: str = "default", own: LimitValues = NO_VALUES) -> Principal:
    return Principal("k1", "a1", "acme", group, frozenset(), own)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0ms"), (0.25, "250ms"), (1, "1s"), (2.5, "2.5s"), (60, "1m0s"), (361, "6m1s"),
     (86_399, "23h59m59s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_name_each_limit() -> None:
    headers = ratelimit_headers(STATES)
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-tokens"] == "400"
    assert headers["x-ratelimit-reset-tokens"] == "250ms"
    assert headers["x-ratelimit-limit-concurrency"] == "2"


def test_headers_show_the_tightest_limit_of_each_family() -> None:
    states = (
        LimitState(LimitKind.RPM, 3000, 2999, 0.02, KEY),
        LimitState(LimitKind.RPD, 10, 4, 80_000.0, KEY),
        LimitState(LimitKind.RPM, 100, 4, 30.0, ACCOUNT),  # as little room, shorter wait
        LimitState(LimitKind.TPM, 1_000_000, 999_000, 0.5, KEY),
        LimitState(LimitKind.TPM, 5000, 4000, 0.5, MODEL),
    )
    headers = ratelimit_headers(states)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"],
            headers["x-ratelimit-reset-requests"]) == ("10", "4", "22h13m20s")
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        "5000", "4000")


@pytest.mark.parametrize(
    ("denied", "retry_after", "words"),
    [(STATES[0], "13", "this API key on requests per min (RPM): Limit 60"),
     (STATES[1], "1", "tokens per min (TPM)"),
     (STATES[2], "1", "Too many requests in flight for this API key")],
)
def test_rate_limited_retry_after_is_a_ceiled_integer_of_at_least_one(
    denied: LimitState, retry_after: str, words: str
) -> None:
    error = rate_limited(Lease(False, "", denied, STATES), "gpt-x")
    assert (error.status, error.type, error.code) == (429, "rate_limit_error",
                                                      "rate_limit_exceeded")
    assert error.headers["retry-after"] == retry_after
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert words in error.message and f"try again in {retry_after}s" in error.message


def test_a_denial_names_its_scope_and_waits_for_every_refusing_limit() -> None:
    rpd = LimitState(LimitKind.RPD, 5, 0, 3600.2, ACCOUNT, over_limit=True)
    model_rpm = LimitState(LimitKind.RPM, 2, 0, 7.5, MODEL, over_limit=True)
    error = rate_limited(Lease(False, "", rpd, (model_rpm, rpd)), "gpt-x")
    assert error.headers["retry-after"] == "3601"
    assert "this account (all of its keys together) on requests per day (RPD)" in error.message
    error = rate_limited(Lease(False, "", model_rpm, (model_rpm,)), "gpt-x")
    assert "this API key on model 'gpt-x' on requests per min (RPM)" in error.message


def test_policy_builds_key_account_and_model_rules_in_precedence_order() -> None:
    config = parse_limits({
        "defaults": {"rpm": 100, "rpd": 1000, "account": {"rpm": 500}},
        "groups": {"vip": {"rpm": 1000, "concurrency": 0, "account": {"tpm": 9000}}},
        "models": {"gpt-x": {"rpm": 7}},
    })
    policy = LimitPolicy(config)
    assert policy.rules(principal(), "other") == (
        LimitRule(KEY, LimitKind.RPM, 100), LimitRule(KEY, LimitKind.TPM, 1_000_000),
        LimitRule(KEY, LimitKind.CONCURRENCY, 100), LimitRule(KEY, LimitKind.RPD, 1000),
        LimitRule(ACCOUNT, LimitKind.RPM, 500),
    )
    vip = policy.rules(principal("vip", LimitValues(rpd=0)), "gpt-x")
    assert vip == (
        LimitRule(KEY, LimitKind.RPM, 1000), LimitRule(KEY, LimitKind.TPM, 1_000_000),
        LimitRule(ACCOUNT, LimitKind.RPM, 500), LimitRule(ACCOUNT, LimitKind.TPM, 9000),
        LimitRule(MODEL, LimitKind.RPM, 7),
    )


def test_a_key_that_says_unlimited_sends_no_rules() -> None:
    policy = LimitPolicy(LimitsConfig())
    assert policy.rules(principal(own=LimitValues(0, 0, 0, 0)), "m") == ()
    assert len(policy.rules(principal(), "m")) == 3  # the built-in RPM, TPM, concurrency
