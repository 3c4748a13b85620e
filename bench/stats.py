"""Latency summaries and the gateway-versus-direct comparison maths; pure functions only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (the value at rank ceil(p/100*n))."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 < pct <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    rank = math.ceil(pct / 100.0 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Distribution of one latency measure, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarize(seconds: Sequence[float]) -> LatencySummary | None:
    """Summarize latencies given in seconds; None when there is no sample."""
    if not seconds:
        return None
    ms = sorted(s * 1000.0 for s in seconds)
    return LatencySummary(
        count=len(ms),
        p50_ms=percentile(ms, 50.0),
        p90_ms=percentile(ms, 90.0),
        p99_ms=percentile(ms, 99.0),
        max_ms=ms[-1],
        mean_ms=math.fsum(ms) / len(ms),
    )


def ratio(gateway: float, direct: float) -> float | None:
    """gateway / direct, or None when the direct figure is zero (no meaningful ratio)."""
    if direct <= 0.0:
        return None
    return gateway / direct


@dataclass(frozen=True, slots=True)
class Comparison:
    """One statistic measured directly and through the gateway in the same run."""

    stat: str
    direct: float
    gateway: float

    @property
    def added(self) -> float:
        """What the gateway adds (negative when it was faster, which is noise)."""
        return self.gateway - self.direct

    @property
    def ratio(self) -> float | None:
        """gateway / direct."""
        return ratio(self.gateway, self.direct)


def compare(direct: LatencySummary, gateway: LatencySummary) -> tuple[Comparison, ...]:
    """Pairwise p50/p90/p99/max comparisons of two summaries."""
    return (
        Comparison("p50", direct.p50_ms, gateway.p50_ms),
        Comparison("p90", direct.p90_ms, gateway.p90_ms),
        Comparison("p99", direct.p99_ms, gateway.p99_ms),
        Comparison("max", direct.max_ms, gateway.max_ms),
    )
