"""`python -m bench.ratelimit`: decisions per second and decision latency per replica.

Starts a throwaway redis-server (or uses --redis-url with a fresh key prefix) and N
rate-limit replicas as processes on loopback, then drives them with asyncio clients doing
what the edge does per request: one AcquireLease (RPM, TPM and a concurrency slot on the
key, plus an account rule) and one ReleaseLease. Limits are far above the load, so every
decision goes the full allowed path. Two phases of --seconds each: throughput (closed
loop, --clients at once) and latency (Poisson arrivals at --rate decisions per second in
all, so queueing does not hide the decision's own cost). Prints a table and one JSON line;
--out writes the JSON to ratelimit.json there.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from bench.procs import BenchError
from bench.ratelimit_cluster import Cluster, ClusterSpec, RedisServer
from bench.ratelimit_load import Decision, Replicas, paced, percentile

WARMUP_S = 1.0
SUBJECTS = 64


@dataclass(frozen=True, slots=True)
class Options:
    """What to run."""

    replicas: int
    clients: int
    seconds: float
    rate: float
    redis_url: str
    out: Path | None


@dataclass(frozen=True, slots=True)
class ReplicaFigures:
    """One replica's share of the run."""

    replica: int
    decisions_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _request(subject: int, request_id: str) -> pb.AcquireLeaseRequest:
    account = pb.LimitRule(
        descriptor=pb.Descriptor(entries=[pb.DescriptorEntry(key="account", value="bench")]),
        kind=pb.LIMIT_KIND_RPM, limit=10**9)
    return pb.AcquireLeaseRequest(
        request_id=request_id, subject=f"bench-{subject}", estimated_tokens=600,
        limits=pb.Limits(rpm=10**9, tpm=10**12, concurrency=10**6), rules=[account])


async def drive(addresses: Sequence[str], clients: int, seconds: float) -> list[Decision]:
    """Closed-loop clients (acquire, release, again) for WARMUP_S + `seconds`; the measured part."""
    measured: list[Decision] = []
    ids = itertools.count()
    async with Replicas(addresses) as replicas:
        start = time.monotonic() + WARMUP_S
        end = start + seconds

        async def client(index: int) -> None:
            while time.monotonic() < end:
                decision = await _decide(replicas, index, f"b{next(ids)}")
                if decision.sent_s >= start:
                    measured.append(decision)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return measured


async def drive_at_rate(addresses: Sequence[str], rate: float, seconds: float) -> list[Decision]:
    """Poisson arrivals at `rate` decisions per second over all replicas, for `seconds`."""
    measured: list[Decision] = []
    ids = itertools.count()
    async with Replicas(addresses) as replicas:

        async def step(index: int, rng: object) -> None:
            measured.append(await _decide(replicas, index, f"r{next(ids)}"))

        # Each client ~20 decisions/s, the same number on every replica.
        clients = len(replicas) * max(1, round(rate / 20 / len(replicas)))
        await paced(clients, seconds, rate, 1, step)
    return measured


async def _decide(replicas: Replicas, index: int, request_id: str) -> Decision:
    replica = index % len(replicas)
    request = _request(index % SUBJECTS, request_id)
    decision = await replicas.acquire(index, replica, request)
    if decision.allowed:
        await replicas.release(replica, pb.ReleaseLeaseRequest(
            lease_id=request.request_id, subject=request.subject))
    return decision


def figures(decisions: list[Decision], replicas: int, seconds: float) -> list[ReplicaFigures]:
    """Per replica: decisions per second over the measured span, latency percentiles."""
    result = []
    for replica in range(replicas):
        mine = [d for d in decisions if d.replica == replica]
        latencies = [d.latency_s for d in mine if not d.error]
        result.append(ReplicaFigures(
            replica=replica,
            decisions_per_s=round(len(latencies) / seconds, 1),
            p50_ms=round(percentile(latencies, 0.50) * 1000, 2),
            p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
            errors=sum(bool(d.error) for d in mine),
        ))
    return result


def run(options: Options) -> dict[str, object]:
    """Start Redis (unless given) and the replicas, drive them, return the report."""
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        workdir = Path(tmp)
        redis_server = None if options.redis_url else RedisServer(workdir)
        try:
            if redis_server is not None:
                redis_server.start()
            url = options.redis_url or (redis_server.url if redis_server else "")
            spec = ClusterSpec(url, f"bench:{uuid.uuid4().hex[:8]}:", options.replicas)
            with Cluster(spec, workdir) as cluster:
                loaded = asyncio.run(drive(cluster.addresses, options.clients, options.seconds))
                paced_run = asyncio.run(drive_at_rate(cluster.addresses, options.rate,
                                                      options.seconds))
        finally:
            if redis_server is not None:
                redis_server.kill()
    return {
        "bench": "ratelimit", "replicas": options.replicas, "seconds": options.seconds,
        "throughput": _phase(loaded, options, f"closed loop, {options.clients} clients"),
        "latency": _phase(paced_run, options, f"{options.rate:g} decisions/s, Poisson"),
    }


def _phase(decisions: list[Decision], options: Options, label: str) -> dict[str, object]:
    ok = [d.latency_s for d in decisions if not d.error]
    return {
        "label": label,
        "decisions_per_s": round(len(ok) / options.seconds, 1),
        "p50_ms": round(percentile(ok, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ok, 0.99) * 1000, 2),
        "errors": sum(bool(d.error) for d in decisions),
        "per_replica": [asdict(f) for f in figures(decisions, options.replicas, options.seconds)],
    }


def render(report: dict[str, object]) -> str:
    """The report as small text tables, one per phase."""
    lines = [(f"rate limiter: {report['replicas']} replicas, {report['seconds']} s per phase "
             "(each decision: acquire with 4 limits on 2 descriptors, then release)")]
    for name in ("throughput", "latency"):
        phase = report[name]
        assert isinstance(phase, dict)
        lines += ["", f"{name}: {phase['label']}",
                  f"{'replica':>8} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
        for row in phase["per_replica"]:
            lines.append(f"{row['replica']:>8} {row['decisions_per_s']:>12} {row['p50_ms']:>8} "
                         f"{row['p99_ms']:>8} {row['errors']:>7}")
        lines.append(f"{'all':>8} {phase['decisions_per_s']:>12} {phase['p50_ms']:>8} "
                     f"{phase['p99_ms']:>8} {phase['errors']:>7}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> Options:
    """The command line as Options."""
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="decisions per second of the latency phase")
    parser.add_argument("--redis-url", default="",
                        help="an existing Redis (keys under a fresh prefix); default: start one")
    parser.add_argument("--out", type=Path, default=None, help="directory for ratelimit.json")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.clients < 1 or not 0 < args.seconds <= 600 or args.rate <= 0:
        parser.error("--replicas, --clients, --rate must be positive, --seconds in (0, 600]")
    return Options(args.replicas, args.clients, args.seconds, args.rate, args.redis_url,
                   args.out)


def main(argv: list[str] | None = None) -> int:
    """Run, print, write; exit 2 if the setup failed, 1 if any call failed."""
    options = parse_args(argv)
    try:
        report = run(options)
    except BenchError as exc:
        print(f"bench.ratelimit: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    print(json.dumps(report))
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / "ratelimit.json").write_text(json.dumps(report, indent=2) + "\n")
    phases = [report["throughput"], report["latency"]]
    return 1 if any(isinstance(p, dict) and p["errors"] for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
