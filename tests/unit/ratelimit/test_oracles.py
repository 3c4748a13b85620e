"""The accuracy oracles of bench/ratelimit_load.py: they must see every kind of excess."""

from __future__ import annotations

from bench.ratelimit_load import (
    aligned_counts,
    over_admission,
    percentile,
    violations,
    weighted_over_admission,
)


def test_admissions_within_the_limit_in_every_window_are_exact() -> None:
    # Limit 2 per 1000 ms: entries at t leave at t + 1000, exactly when new ones come.
    times = [0, 10, 1000, 1010, 2000, 2010]
    assert over_admission(times, 1000, 2) == 0 and violations(times, 1000, 2) == 0


def test_an_unaligned_window_catches_a_burst_across_a_boundary() -> None:
    # Limit 2 per 1000 ms. Windows aligned to 0 hold 2 each ([0, 1000) and [1000, 2000)),
    # but (50, 1050] holds all 4: a fixed-window check would pass this, ours must not.
    times = [900, 950, 1000, 1050]
    assert over_admission(times, 1000, 2) == 2
    assert violations(times, 1000, 2) == 2  # the admissions at 1000 and at 1050
    assert aligned_counts(times, 1000, 2) == [4, 0]  # aligned to the first admission


def test_the_window_is_half_open_like_the_limiter() -> None:
    # An entry at t counts while now < t + W: at exactly t + W it has left.
    assert over_admission([0, 1000], 1000, 1) == 0
    assert over_admission([0, 999], 1000, 1) == 1
    assert over_admission([5, 5], 1000, 1) == 1  # same millisecond, both count


def test_weighted_admissions() -> None:
    assert weighted_over_admission([(0, 60), (500, 40)], 1000, 100) == 0
    assert weighted_over_admission([(0, 60), (500, 41)], 1000, 100) == 1
    assert weighted_over_admission([(0, 60), (1000, 100)], 1000, 100) == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0 and percentile(values, 0.5) == 50.0
    assert percentile([], 0.99) == 0.0
