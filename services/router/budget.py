"""Retries: Envoy's retry budget and fully jittered exponential backoff.

The budget (Envoy's `retry_budget`): retries in flight may be at most `percent` of the
requests in flight, but `min_concurrency` retries are always allowed, so a lone request
can still retry while a total outage cannot multiply the load. One budget per router
process (Envoy keeps one per cluster; our candidates of all models share the process's
upstream capacity).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Budget and backoff numbers (Envoy's defaults: 20 %, 3, base 25 ms)."""

    budget_percent: float = 20.0
    min_concurrency: int = 3
    backoff_base_s: float = 0.025
    backoff_cap_s: float = 0.25


class RetryBudget:
    """Counts requests and retries in flight; says whether one more retry may start."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.requests = 0
        self.retries = 0

    def request_started(self) -> None:
        """A request is in flight."""
        self.requests += 1

    def request_ended(self) -> None:
        """A request ended."""
        self.requests -= 1

    def try_retry(self) -> bool:
        """Take a retry slot when the budget allows one (release with `retry_ended`)."""
        allowed = max(self.policy.min_concurrency,
                      int(self.requests * self.policy.budget_percent / 100))
        if self.retries >= allowed:
            return False
        self.retries += 1
        return True

    def retry_ended(self) -> None:
        """A retry ended."""
        self.retries -= 1


def backoff_s(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """The pause before the `retry`-th retry (1-based): full jitter over base * 2^(n-1)."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** (retry - 1))
    return float(rng.random() * ceiling)
