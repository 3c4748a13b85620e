"""Budget verdicts and tables of the benchmark report, on made-up phases."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from bench import report as rpt
from bench.cpu import ProcessCpu, ProcessTime, usage
from bench.loadgen import LoadMode, LoadSpec, PhaseResult, has_content
from bench.mock_upstream import MockUpstream
from bench.stats import summarize


def _phase(kind: str, target: str, mode: str, ms: float, *, ttfb_ms: float | None = None,
           errors: int = 0, rps: float = 100.0) -> rpt.PhaseReport:
    latency = summarize([ms / 1000.0] * 100)
    ttfb = None if ttfb_ms is None else summarize([ttfb_ms / 1000.0] * 100)
    return rpt.PhaseReport(kind, target, mode, 10.0, latency, ttfb, rps, errors,
                           "HTTP 500" if errors else "", 0.1, 100, 5.0, 20.0)


def _report(*phases: rpt.PhaseReport) -> rpt.Report:
    return rpt.Report("20250101-000000", True, 2, "3.11", "abc", 100.0, 32, phases)


def _full(gateway_chat_ms: float, gateway_ttfb_ms: float, errors: int = 0) -> rpt.Report:
    return _report(
        _phase(rpt.CHAT, rpt.DIRECT, rpt.OPEN, 1.0),
        _phase(rpt.CHAT, rpt.GATEWAY, rpt.OPEN, gateway_chat_ms, errors=errors),
        _phase(rpt.STREAM, rpt.DIRECT, rpt.OPEN, 2.0, ttfb_ms=1.0),
        _phase(rpt.STREAM, rpt.GATEWAY, rpt.OPEN, 5.0, ttfb_ms=gateway_ttfb_ms),
        _phase(rpt.CHAT, rpt.DIRECT, rpt.CLOSED, 5.0, rps=4000.0),
        _phase(rpt.CHAT, rpt.GATEWAY, rpt.CLOSED, 20.0, rps=1000.0),
    )


def test_budgets_pass_when_added_latency_is_under_limits() -> None:
    verdicts = {b.name: b for b in rpt.budgets(_full(gateway_chat_ms=2.5, gateway_ttfb_ms=4.0))}
    assert all(b.ok for b in verdicts.values())
    assert verdicts["chat added p50 at 100 req/s"].added_ms == pytest.approx(1.5)
    assert verdicts["chat-stream TTFB added p50 at 100 req/s"].added_ms == pytest.approx(3.0)


def test_budgets_fail_on_slow_gateway_or_errors() -> None:
    slow = {b.name: b.ok for b in rpt.budgets(_full(gateway_chat_ms=3.5, gateway_ttfb_ms=7.0))}
    assert slow["chat added p50 at 100 req/s"] is False
    assert slow["chat-stream TTFB added p50 at 100 req/s"] is False
    assert slow["chat added p99 at 100 req/s"] is True
    errored = rpt.budgets(_full(gateway_chat_ms=1.5, gateway_ttfb_ms=2.0, errors=3))
    assert [b.ok for b in errored][:2] == [False, False]


def test_budgets_without_gateway_are_not_applicable() -> None:
    report = _report(_phase(rpt.CHAT, rpt.DIRECT, rpt.OPEN, 1.0))
    assert all(b.added_ms is None and not b.ok for b in rpt.budgets(report))
    assert ["chat added p50 at 100 req/s", "< 2 ms", "-", "n/a"] in rpt.budget_rows(report)


def test_tables_show_added_ratio_and_throughput_ratio() -> None:
    report = _full(gateway_chat_ms=2.5, gateway_ttfb_ms=4.0)
    assert ["chat", "p50", "1.00", "2.50", "+1.50", "2.50x"] in rpt.latency_rows(report)
    assert ["stream TTFB", "p99", "1.00", "4.00", "+3.00", "4.00x"] in rpt.latency_rows(report)
    assert rpt.throughput_rows(report)[0][:4] == ["chat", "4000", "1000", "0.25x"]
    text = rpt.render_text(report)
    assert "Max throughput" in text and "PASS" in text
    assert "| chat | p50 | 1.00 | 2.50 | +1.50 | 2.50x |" in rpt.render_markdown(report)
    body = orjson.loads(rpt.to_json(report))
    assert body["fixed_rate"]["chat"][0]["added_ms"] == pytest.approx(1.5)


def test_mock_stream_has_openai_shape_and_usage() -> None:
    body = MockUpstream().stream("bench", include_usage=True).decode()
    events = [e.removeprefix("data: ") for e in body.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18
    first_content = [has_content(("data: " + e).encode()) for e in events].index(True)
    assert first_content == 1


def test_gateway_cpu_breakdown_is_summed_and_listed() -> None:
    phase = dataclasses.replace(
        _phase(rpt.CHAT, rpt.GATEWAY, rpt.OPEN, 2.0),
        gateway_cpu=(ProcessCpu("billing", 30.0), ProcessCpu("edge", 12.5)),
    )
    report = _report(_phase(rpt.CHAT, rpt.DIRECT, rpt.OPEN, 1.0), phase)
    assert phase.gateway_cpu_pct == pytest.approx(42.5)
    assert rpt.cpu_rows(report) == [["chat open", "billing 30%, edge 12%"]]


def test_cpu_usage_between_snapshots() -> None:
    before = (ProcessTime(1, "edge", 1.0), ProcessTime(2, "billing", 2.0))
    after = (ProcessTime(1, "edge", 1.5), ProcessTime(2, "billing", 4.0), ProcessTime(3, "new", 9.0))
    assert usage(before, after, wall_s=2.0) == (ProcessCpu("billing", 100.0),
                                                ProcessCpu("edge", 25.0))


def test_load_spec_and_result_survive_the_process_boundary() -> None:
    spec = LoadSpec("http://127.0.0.1:1/v1/chat/completions", "bench", True, LoadMode.CLOSED, 2.0)
    assert LoadSpec.from_json(spec.to_json()) == spec
    result = PhaseResult(2.0, (0.001, 0.002), (0.0005,), (0.0, 0.0001), 1, "HTTP 500", 12.0)
    assert PhaseResult.from_json(result.to_json()) == result
    assert result.rps == pytest.approx(1.0)
