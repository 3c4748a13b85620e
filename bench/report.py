"""The benchmark report: phases measured, gateway-versus-direct tables, budget verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from bench.cpu import ProcessCpu
from bench.stats import Comparison, LatencySummary, compare, ratio

CHAT = "chat"
STREAM = "chat-stream"
DIRECT = "direct"
GATEWAY = "gateway"
OPEN = "open"
CLOSED = "closed"
# (kind, time to first byte instead of total, label) of each fixed-rate latency measure.
LATENCY_MEASURES = ((CHAT, False, "chat"), (STREAM, True, "stream TTFB"),
                    (STREAM, False, "stream total"))


@dataclass(frozen=True, slots=True)
class PhaseReport:
    """One measured phase: a kind of request, a target, a load mode."""

    kind: str
    target: str
    mode: str
    duration_s: float
    latency: LatencySummary | None
    ttfb: LatencySummary | None
    rps: float
    errors: int
    first_error: str
    lag_p99_ms: float
    upstream_requests: int
    upstream_cpu_pct: float
    loadgen_cpu_pct: float
    gateway_cpu: tuple[ProcessCpu, ...] = ()

    @property
    def gateway_cpu_pct(self) -> float:
        """CPU the whole gateway used during the phase, in percent of one core."""
        return sum(p.pct for p in self.gateway_cpu)


@dataclass(frozen=True, slots=True)
class Budget:
    """A performance budget on what the gateway adds, and how this run did."""

    name: str
    limit_ms: float
    added_ms: float | None
    ok: bool


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one run measured, with the conditions it ran under."""

    started_at: str
    quick: bool
    cpus: int
    python: str
    commit: str
    rate: float
    concurrency: int
    phases: tuple[PhaseReport, ...]

    def phase(self, kind: str, target: str, mode: str) -> PhaseReport | None:
        """The phase measured with these parameters, if it ran."""
        return next(
            (p for p in self.phases if (p.kind, p.target, p.mode) == (kind, target, mode)), None
        )


def _pair(report: Report, kind: str, mode: str) -> tuple[PhaseReport | None, PhaseReport | None]:
    return report.phase(kind, DIRECT, mode), report.phase(kind, GATEWAY, mode)


def latency_comparisons(report: Report, kind: str, ttfb: bool) -> tuple[Comparison, ...]:
    """Fixed-rate comparisons of total latency (or time to first byte) for one kind."""
    direct, gateway = _pair(report, kind, OPEN)
    if direct is None or gateway is None:
        return ()
    d, g = (direct.ttfb, gateway.ttfb) if ttfb else (direct.latency, gateway.latency)
    return compare(d, g) if d is not None and g is not None else ()


def _added(comparisons: Sequence[Comparison], stat: str) -> float | None:
    return next((c.added for c in comparisons if c.stat == stat), None)


def budgets(report: Report) -> tuple[Budget, ...]:
    """The issue's budgets: control path < 2 ms p50 and < 10 ms p99; stream TTFB < 5 ms."""
    specs = ((CHAT, False, "p50", 2.0), (CHAT, False, "p99", 10.0),
             (STREAM, True, "p50", 5.0), (STREAM, True, "p99", 10.0))
    out = []
    for kind, ttfb, stat, limit in specs:
        added = _added(latency_comparisons(report, kind, ttfb), stat)
        clean = all(p.errors == 0 for p in _pair(report, kind, OPEN) if p is not None)
        label = f"{kind} {'TTFB ' if ttfb else ''}added {stat} at {report.rate:g} req/s"
        out.append(Budget(label, limit, added, added is not None and clean and added < limit))
    return tuple(out)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fixed(report: Report, kind: str, target: str, ttfb: bool) -> LatencySummary | None:
    phase = report.phase(kind, target, OPEN)
    if phase is None:
        return None
    return phase.ttfb if ttfb else phase.latency


def latency_rows(report: Report) -> list[list[str]]:
    """Rows of the fixed-rate table: request, stat, direct, gateway, added, ratio."""
    rows = []
    for kind, ttfb, label in LATENCY_MEASURES:
        direct = _fixed(report, kind, DIRECT, ttfb)
        if direct is None:
            continue
        gateway = _fixed(report, kind, GATEWAY, ttfb)
        if gateway is None:
            rows += [[label, c.stat, _ms(c.direct), "-", "-", "-"] for c in compare(direct, direct)]
            continue
        rows += [[label, c.stat, _ms(c.direct), _ms(c.gateway), f"{c.added:+.2f}", _ratio(c.ratio)]
                 for c in compare(direct, gateway)]
    return rows


def throughput_rows(report: Report) -> list[list[str]]:
    """Rows of the max-throughput table."""
    rows = []
    for kind in (CHAT, STREAM):
        direct, gateway = _pair(report, kind, CLOSED)
        if direct is None:
            continue
        g_rps = None if gateway is None else gateway.rps
        g_lat = None if gateway is None else gateway.latency
        rows.append([
            kind, f"{direct.rps:.0f}", "-" if g_rps is None else f"{g_rps:.0f}",
            _ratio(None if g_rps is None else ratio(g_rps, direct.rps)),
            _ms(direct.latency.p50_ms if direct.latency else None),
            _ms(g_lat.p50_ms if g_lat else None), _ms(g_lat.p99_ms if g_lat else None),
        ])
    return rows


def budget_rows(report: Report) -> list[list[str]]:
    """Rows of the budget table."""
    return [[b.name, f"< {b.limit_ms:g} ms", _ms(b.added_ms),
             "n/a" if b.added_ms is None else "PASS" if b.ok else "FAIL"]
            for b in budgets(report)]


def phase_rows(report: Report) -> list[list[str]]:
    """Rows of the per-phase detail table (errors, upstream calls, scheduling lag)."""
    return [[p.kind, p.target, p.mode, f"{p.latency.count if p.latency else 0}", str(p.errors),
             str(p.upstream_requests), f"{p.upstream_cpu_pct:.0f}%",
             f"{p.gateway_cpu_pct:.0f}%" if p.gateway_cpu else "-", f"{p.loadgen_cpu_pct:.0f}%",
             f"{p.lag_p99_ms:.2f}", p.first_error or "-"]
            for p in report.phases]


LATENCY_HEAD = ["request", "stat", "direct ms", "gateway ms", "added ms", "ratio"]
THROUGHPUT_HEAD = ["request", "direct rps", "gateway rps", "ratio", "direct p50 ms",
                   "gateway p50 ms", "gateway p99 ms"]
BUDGET_HEAD = ["budget", "limit", "measured", "verdict"]
PHASE_HEAD = ["request", "target", "mode", "ok", "errors", "upstream calls", "upstream cpu",
              "gateway cpu", "loadgen cpu", "lag p99 ms", "first error"]


def cpu_rows(report: Report) -> list[list[str]]:
    """Rows of the gateway CPU breakdown: phase, then each process's share of one core."""
    return [[f"{p.kind} {p.mode}", ", ".join(f"{c.name} {c.pct:.0f}%" for c in p.gateway_cpu)]
            for p in report.phases if p.gateway_cpu]


CPU_HEAD = ["phase", "gateway processes (% of one core)"]


def _sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    mode = "quick" if report.quick else "full"
    return [
        (f"Latency at {report.rate:g} req/s, open loop, from intended start ({mode} run)",
         LATENCY_HEAD, latency_rows(report)),
        (f"Max throughput, closed loop, {report.concurrency} concurrent",
         THROUGHPUT_HEAD, throughput_rows(report)),
        ("Budgets (gateway minus direct, same run)", BUDGET_HEAD, budget_rows(report)),
        ("Phases", PHASE_HEAD, phase_rows(report)),
        ("Gateway CPU by process", CPU_HEAD, cpu_rows(report)),
    ]


def _header(report: Report) -> str:
    return (f"apirelay bench {report.started_at}: {report.cpus} CPUs, Python {report.python}, "
            f"commit {report.commit or 'unknown'}")


def render_text(report: Report) -> str:
    """The report as aligned plain-text tables for the terminal."""
    out = [_header(report)]
    for title, head, rows in _sections(report):
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        out += ["", title]
        out += ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                          for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
                for r in [head, *rows]]
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    """The report as Markdown tables."""
    out = [f"# {_header(report)}"]
    for title, head, rows in _sections(report):
        out += ["", f"## {title}", "", "| " + " | ".join(head) + " |",
                "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def to_json(report: Report) -> bytes:
    """The report with its budget verdicts, as indented JSON."""
    comparisons = {
        label.replace(" ", "_").lower(): [
            {"stat": c.stat, "direct_ms": c.direct, "gateway_ms": c.gateway,
             "added_ms": c.added, "ratio": c.ratio}
            for c in latency_comparisons(report, kind, ttfb)
        ]
        for kind, ttfb, label in LATENCY_MEASURES
    }
    body = {"report": dataclasses.asdict(report), "fixed_rate": comparisons,
            "budgets": [dataclasses.asdict(b) for b in budgets(report)]}
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)
