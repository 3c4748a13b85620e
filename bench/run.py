"""Orchestrates one benchmark run: mock upstream, gateway, every phase, the report files."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson

from bench import report as rpt
from bench.cpu import ProcessCpu, snapshot, usage, wait_quiet
from bench.gateway import MODEL, running_gateway
from bench.loadgen import API_KEY_ENV, LoadMode, LoadSpec, PhaseResult, request_body
from bench.procs import (
    LOCALHOST,
    BenchError,
    die_with_parent,
    free_port,
    http_get,
    spawn,
    stop,
    wait_ready,
)
from bench.stats import percentile, summarize

MOCK_CPU = -1  # the last core: the mock never competes with the loadgen for the first one
PROBE_TIMEOUT_S = 10.0
# Before each phase the gateway gets up to this long to finish work left by the last one.
QUIET_PCT = 15.0
QUIET_MAX_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how hard each phase runs."""

    rate: float
    fixed_s: float
    max_s: float
    warmup_s: float
    concurrency: int


FULL_PLAN = Plan(rate=100.0, fixed_s=15.0, max_s=8.0, warmup_s=1.5, concurrency=32)
QUICK_PLAN = Plan(rate=100.0, fixed_s=3.0, max_s=2.0, warmup_s=0.5, concurrency=32)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a phase sends its requests."""

    name: str
    chat_url: str
    api_key: str
    gateway_pid: int | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """The running mock upstream."""

    base_url: str
    pid: int

    def served(self) -> int:
        """Completions the mock has answered so far."""
        status, body = http_get(f"{self.base_url}/_bench/stats")
        return int(orjson.loads(body)["requests"]) if status == 200 else -1


def start_upstream(stack: ExitStack, log_dir: Path) -> Upstream:
    """Start the mock upstream in its own process, pinned to one core."""
    port = free_port()
    log = log_dir / "mock-upstream.log"
    argv = [sys.executable, "-m", "bench.mock_upstream", "--port", str(port),
            "--cpu", str(MOCK_CPU)]
    proc = spawn(argv, os.environ, log)
    stack.callback(stop, proc, 5.0)
    base = f"http://{LOCALHOST}:{port}"
    wait_ready(f"{base}/healthz", proc, 30.0, log)
    return Upstream(base, proc.pid)


def probe(target: Target, stream: bool) -> None:
    """One request before measuring, so a broken setup fails with its own error message."""
    req = urllib.request.Request(
        target.chat_url, data=request_body(MODEL, stream), method="POST",
        headers={"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        raise BenchError(f"{target.name} probe got HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"{target.name} probe failed: {exc}") from exc


def run_loadgen(spec: LoadSpec, api_key: str, workdir: Path) -> PhaseResult:
    """Run one phase in a separate load-generator process and read its result."""
    out = workdir / f"phase-{time.monotonic_ns()}.json"
    env = {**os.environ, API_KEY_ENV: api_key}
    limit = spec.warmup_s + spec.duration_s + spec.timeout_s + 30.0
    try:
        subprocess.run(
            [sys.executable, "-m", "bench.loadgen", "--spec", spec.to_json(), "--out", str(out)],
            env=env, check=True, timeout=limit, preexec_fn=die_with_parent,
        )
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"load generator failed with exit code {exc.returncode}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"load generator still running after {limit:.0f} s") from exc
    return PhaseResult.from_json(out.read_bytes())


@dataclass(frozen=True, slots=True)
class ServerUse:
    """What the servers did during one phase: mock calls, CPU of the mock and the gateway."""

    upstream_requests: int
    upstream_cpu_pct: float
    gateway_cpu: tuple[ProcessCpu, ...]


def measure_use(upstream: Upstream, gateway_pid: int | None,
                phase: Callable[[], PhaseResult]) -> tuple[PhaseResult, ServerUse]:
    """Run `phase` and account for what the mock and the gateway did meanwhile."""
    served, wall = upstream.served(), time.perf_counter()
    mock_before = snapshot(upstream.pid)
    gw_before = snapshot(gateway_pid) if gateway_pid else ()
    result = phase()
    mock_after = snapshot(upstream.pid)
    gw_after = snapshot(gateway_pid) if gateway_pid else ()
    elapsed = time.perf_counter() - wall
    mock_cpu = sum(u.pct for u in usage(mock_before, mock_after, elapsed))
    use = ServerUse(upstream.served() - served, mock_cpu, usage(gw_before, gw_after, elapsed))
    return result, use


def phase_report(kind: str, target: str, spec: LoadSpec, result: PhaseResult,
                 use: ServerUse) -> rpt.PhaseReport:
    """Summarize a phase's raw measurements."""
    lags = sorted(s * 1000.0 for s in result.lags_s)
    return rpt.PhaseReport(
        kind=kind, target=target, mode=str(spec.mode), duration_s=spec.duration_s,
        latency=summarize(result.latencies_s),
        ttfb=summarize(result.ttfb_s) if spec.stream else None,
        rps=result.rps, errors=result.errors, first_error=result.first_error,
        lag_p99_ms=percentile(lags, 99.0) if lags else 0.0,
        upstream_requests=use.upstream_requests, upstream_cpu_pct=use.upstream_cpu_pct,
        loadgen_cpu_pct=result.cpu_pct, gateway_cpu=use.gateway_cpu,
    )


def phase_specs(plan: Plan, target: Target) -> list[tuple[str, LoadSpec]]:
    """Every phase for one target, in the order they run."""
    specs = []
    for kind, stream in ((rpt.CHAT, False), (rpt.STREAM, True)):
        specs.append((kind, LoadSpec(target.chat_url, MODEL, stream, LoadMode.OPEN, plan.fixed_s,
                                     plan.warmup_s, rate=plan.rate)))
        specs.append((kind, LoadSpec(target.chat_url, MODEL, stream, LoadMode.CLOSED, plan.max_s,
                                     plan.warmup_s, concurrency=plan.concurrency)))
    return specs


def run_phases(plan: Plan, targets: list[Target], upstream: Upstream, workdir: Path,
               progress: Callable[[str], None]) -> tuple[rpt.PhaseReport, ...]:
    """Measure each phase directly and through the gateway, one right after the other."""
    per_target = [phase_specs(plan, t) for t in targets]
    gateway_pid = next((t.gateway_pid for t in targets if t.gateway_pid is not None), None)
    total = sum(len(s) for s in per_target)
    done: list[rpt.PhaseReport] = []
    for step in range(len(per_target[0])):
        for target, specs in zip(targets, per_target):
            kind, spec = specs[step]
            if gateway_pid is not None:
                wait_quiet(gateway_pid, QUIET_PCT, QUIET_MAX_WAIT_S)
            progress(f"[{len(done) + 1}/{total}] {kind} {target.name} {spec.mode} "
                     f"{spec.duration_s:g} s")
            result, use = measure_use(upstream, target.gateway_pid,
                                      partial(run_loadgen, spec, target.api_key, workdir))
            done.append(phase_report(kind, target.name, spec, result, use))
    return tuple(done)


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    quick: bool
    out: Path
    direct_only: bool
    strict: bool


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def measure(options: Options, stamp: str) -> rpt.Report:
    """Start everything, run every phase, stop everything; return the report."""
    plan = QUICK_PLAN if options.quick else FULL_PLAN
    log_dir = options.out / "logs" / stamp
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apirelay-bench-")))
        upstream = start_upstream(stack, log_dir)
        _progress(f"mock upstream at {upstream.base_url}")
        targets = [Target(rpt.DIRECT, f"{upstream.base_url}/v1/chat/completions", "sk-direct")]
        if not options.direct_only:
            _progress("starting the gateway (apirelay up)")
            gateway = stack.enter_context(running_gateway(
                f"{upstream.base_url}/v1", workdir, log_dir / "gateway.log"))
            _progress(f"gateway at {gateway.base_url}")
            targets.append(Target(rpt.GATEWAY, f"{gateway.base_url}/v1/chat/completions",
                                  gateway.api_key, gateway.pid))
        for target in targets:
            probe(target, stream=False)
            probe(target, stream=True)
        phases = run_phases(plan, targets, upstream, workdir, _progress)
    return rpt.Report(
        started_at=stamp, quick=options.quick, cpus=os.cpu_count() or 1,
        python=platform.python_version(), commit=_commit(), rate=plan.rate,
        concurrency=plan.concurrency, phases=phases,
    )


def write_outputs(report: rpt.Report, out: Path) -> tuple[Path, Path]:
    """Write the JSON and Markdown reports (and `latest.*` copies) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"bench-{report.started_at}.json", out / f"bench-{report.started_at}.md"
    for path, data in ((json_path, rpt.to_json(report)),
                       (md_path, rpt.render_markdown(report).encode())):
        path.write_bytes(data)
        (out / f"latest{path.suffix}").write_bytes(data)
    return json_path, md_path


def main(options: Options) -> int:
    """Run the benchmark; 0 on success, 1 on a missed budget with --strict, 2 on a setup error."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        report = measure(options, stamp)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(rpt.render_text(report))
    json_path, md_path = write_outputs(report, options.out)
    _progress(f"wrote {json_path} and {md_path}")
    failed = [b for b in rpt.budgets(report) if not b.ok]
    return 1 if options.strict and (failed or options.direct_only) else 0
