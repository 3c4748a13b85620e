"""The breaker, key disabling and cooldowns per (channel, key, model), on a fixed clock."""

from __future__ import annotations

import random

from services.router.budget import RetryBudget, RetryPolicy, backoff_s
from services.router.errors import UpstreamRateLimited, UpstreamRejected, UpstreamUnavailable
from services.router.health import HealthBook, HealthPolicy
from services.router.providers.http import cooldown_s


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _book() -> tuple[HealthBook, Clock]:
    clock = Clock()
    return HealthBook(HealthPolicy(), clock), clock


def _fail(book: HealthBook, times: int, model: str = "m") -> None:
    for _ in range(times):
        book.failed("c", "k", model, UpstreamUnavailable(503, "down"))


def test_five_failures_in_a_row_eject_for_the_base_time_then_one_probe() -> None:
    book, clock = _book()
    _fail(book, 4)
    assert book.available("c", "k", "m")
    _fail(book, 1)
    assert not book.available("c", "k", "m")
    assert book.available("c", "k", "other-model")  # per model
    clock.now += 30.0
    assert book.available("c", "k", "m")  # half-open
    book.started("c", "k", "m")
    assert not book.available("c", "k", "m")  # one probe at a time
    book.succeeded("c", "k", "m")
    assert book.available("c", "k", "m")


def test_a_failed_probe_ejects_again_for_longer_up_to_the_cap() -> None:
    book, clock = _book()
    _fail(book, 5)
    clock.now += 30.0
    book.started("c", "k", "m")
    _fail(book, 1)  # the probe failed: second ejection, 60 s
    clock.now += 59.0
    assert not book.available("c", "k", "m")
    clock.now += 1.0
    assert book.available("c", "k", "m")
    assert book.ejection_s(100) == HealthPolicy().max_ejection_s


def test_a_success_or_a_client_error_resets_the_count() -> None:
    book, _ = _book()
    _fail(book, 4)
    book.failed("c", "k", "m", UpstreamRejected(400, "bad request"))
    _fail(book, 4)
    assert book.available("c", "k", "m")


def test_auth_and_quota_failures_disable_the_key_until_enabled() -> None:
    book, clock = _book()
    book.failed("c", "k", "m", UpstreamUnavailable(401, "unauthorized"))
    assert book.disabled("c", "k") and not book.available("c", "k", "any")
    clock.now += 10_000
    assert not book.available("c", "k", "m")
    assert book.enable_key("c", "k")
    assert book.available("c", "k", "m")
    book.failed("c", "k2", "m", UpstreamUnavailable(402, "payment required"))
    assert book.disabled("c", "k2")


def test_a_429_cools_the_key_for_its_retry_after_capped() -> None:
    book, clock = _book()
    book.failed("c", "k", "m", UpstreamRateLimited(429, "slow down", retry_after_s=5.0))
    assert not book.available("c", "k", "m")
    clock.now += 4.9
    assert not book.available("c", "k", "m")
    clock.now += 0.2
    assert book.available("c", "k", "m")
    book.failed("c", "k", "m", UpstreamRateLimited(429, "slow down", retry_after_s=10_000))
    clock.now += HealthPolicy().max_cooldown_s + 0.1
    assert book.available("c", "k", "m")


def test_cooldown_headers() -> None:
    assert cooldown_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert cooldown_s({"retry-after": "2"}) == 2.0
    assert cooldown_s({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, now=4.0) == 6.0
    assert cooldown_s({"x-ratelimit-reset-requests": "1s",
                       "x-ratelimit-reset-tokens": "6m0s"}) == 360.0
    assert cooldown_s({"retry-after": "soon"}) is None
    assert cooldown_s({}) is None


def test_the_retry_budget_allows_20_percent_but_at_least_3() -> None:
    budget = RetryBudget(RetryPolicy())
    for _ in range(10):
        budget.request_started()
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]
    budget.retry_ended()
    assert budget.try_retry()
    for _ in range(40):
        budget.request_started()
    assert sum(budget.try_retry() for _ in range(20)) == 10 - 3  # 20 % of 50, 3 held


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    policy, rng = RetryPolicy(), random.Random(7)
    for retry, ceiling in ((1, 0.025), (2, 0.05), (3, 0.1), (9, 0.25)):
        waits = [backoff_s(policy, retry, rng) for _ in range(200)]
        assert all(0 <= w < ceiling for w in waits)
        assert max(waits) > ceiling * 0.8
