"""Percentile and gateway-versus-direct maths of the benchmark report."""

from __future__ import annotations

import pytest

from bench.stats import Comparison, compare, percentile, ratio, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 7.0], 50) == 3.0
    assert percentile([3.0, 7.0], 51) == 7.0
    assert percentile([5.0], 1) == 5.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_converts_seconds_to_ms_and_sorts() -> None:
    summary = summarize([0.003, 0.001, 0.002, 0.010])
    assert summary is not None
    assert summary.count == 4
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(10.0)
    assert summary.max_ms == pytest.approx(10.0)
    assert summary.mean_ms == pytest.approx(4.0)
    assert summarize([]) is None


def test_ratio_and_added() -> None:
    c = Comparison("p50", direct=1.5, gateway=3.0)
    assert c.added == pytest.approx(1.5)
    assert c.ratio == pytest.approx(2.0)
    assert Comparison("p50", direct=2.0, gateway=1.0).added == pytest.approx(-1.0)
    assert ratio(5.0, 0.0) is None


def test_compare_pairs_each_statistic() -> None:
    direct = summarize([0.001] * 98 + [0.004, 0.005])
    gateway = summarize([0.002] * 98 + [0.008, 0.020])
    assert direct is not None and gateway is not None
    by_stat = {c.stat: c for c in compare(direct, gateway)}
    assert list(by_stat) == ["p50", "p90", "p99", "max"]
    assert by_stat["p50"].added == pytest.approx(1.0)
    assert by_stat["p99"].direct == pytest.approx(4.0)
    assert by_stat["p99"].gateway == pytest.approx(8.0)
    assert by_stat["max"].ratio == pytest.approx(4.0)
