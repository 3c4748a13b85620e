"""The load generator: open loop at a fixed rate, or closed loop for maximum throughput.

Runs in its own process: `python -m bench.loadgen --spec JSON --out FILE` with the API key
in `BENCH_API_KEY`. Open loop schedules every request at its intended start time and
measures latency from that time, so a slow server cannot hide its queueing delay
(no coordinated omission). Closed loop keeps `concurrency` requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

API_KEY_ENV = "BENCH_API_KEY"
PROMPT = "Say hello to the benchmark."
# The event loop's timers fire with 1 ms granularity; the last stretch is spun out.
SPIN_S = 0.0015


class LoadMode(enum.StrEnum):
    """How requests are issued."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One phase of load against one URL."""

    url: str
    model: str
    stream: bool
    mode: LoadMode
    duration_s: float
    warmup_s: float = 1.0
    rate: float = 100.0
    concurrency: int = 32
    timeout_s: float = 5.0

    def to_json(self) -> str:
        """The spec as a JSON string, for the command line."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadSpec:
        """Parse what `to_json` wrote."""
        raw = json.loads(text)
        raw["mode"] = LoadMode(raw["mode"])
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: seconds from its start to the first content byte and to the end."""

    ok: bool
    total_s: float
    ttfb_s: float | None = None
    lag_s: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """Raw measurements of one phase (only requests started after the warm-up)."""

    window_s: float
    latencies_s: tuple[float, ...]
    ttfb_s: tuple[float, ...]
    lags_s: tuple[float, ...]
    errors: int
    first_error: str
    cpu_pct: float = 0.0

    @property
    def completed(self) -> int:
        """Successful requests in the measured window."""
        return len(self.latencies_s)

    @property
    def rps(self) -> float:
        """Successful requests per second over the measured window."""
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    def to_json(self) -> bytes:
        """Serialized for the parent process."""
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> PhaseResult:
        """Parse what `to_json` wrote."""
        raw = orjson.loads(data)
        for key in ("latencies_s", "ttfb_s", "lags_s"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def collect(samples: list[Sample], window_s: float) -> PhaseResult:
    """Fold samples into a phase result."""
    good = [s for s in samples if s.ok]
    bad = [s for s in samples if not s.ok]
    return PhaseResult(
        window_s=window_s,
        latencies_s=tuple(s.total_s for s in good),
        ttfb_s=tuple(s.ttfb_s for s in good if s.ttfb_s is not None),
        lags_s=tuple(s.lag_s for s in samples),
        errors=len(bad),
        first_error=bad[0].error if bad else "",
    )


def request_body(model: str, stream: bool) -> bytes:
    """The chat request every phase sends."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def has_content(line: bytes) -> bool:
    """Whether an SSE line carries a non-empty content delta."""
    if not line.startswith(b"data:") or b"content" not in line:
        return False
    try:
        chunk = orjson.loads(line[5:])
        return any(bool((c.get("delta") or {}).get("content")) for c in chunk.get("choices") or [])
    except (orjson.JSONDecodeError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class _Client:
    """What every request of a phase shares."""

    session: aiohttp.ClientSession
    url: str
    body: bytes
    stream: bool


async def one_request(client: _Client, start: float) -> Sample:
    """Send one request; times are measured from `start` (the intended start in open loop)."""
    now = time.perf_counter
    lag = now() - start
    ttfb: float | None = None
    try:
        async with client.session.post(client.url, data=client.body) as resp:
            if resp.status != 200:
                await resp.read()
                return Sample(False, now() - start, lag_s=lag, error=f"HTTP {resp.status}")
            if not client.stream:
                ok = b'"choices"' in await resp.read()
                return Sample(ok, now() - start, lag_s=lag, error="" if ok else "no choices")
            done = False
            async for line in resp.content:
                if ttfb is None and has_content(line):
                    ttfb = now() - start
                done = done or line.startswith(b"data: [DONE]")
            ok = done and ttfb is not None
            error = "" if ok else "stream ended without content or [DONE]"
            return Sample(ok, now() - start, ttfb, lag, error)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Sample(False, now() - start, lag_s=lag, error=type(exc).__name__)


async def _sleep_until(when: float) -> None:
    """Wake at `when` (perf_counter) within a few microseconds, not the loop timer's 1 ms."""
    coarse = when - time.perf_counter() - SPIN_S
    if coarse > 0:
        await asyncio.sleep(coarse)
    while time.perf_counter() < when:
        await asyncio.sleep(0)


async def _open_loop(client: _Client, spec: LoadSpec) -> PhaseResult:
    total = int((spec.warmup_s + spec.duration_s) * spec.rate)
    begin = time.perf_counter() + 0.05
    measured_from = begin + spec.warmup_s
    tasks: list[tuple[float, asyncio.Task[Sample]]] = []
    for i in range(total):
        intended = begin + i / spec.rate
        await _sleep_until(intended)
        tasks.append((intended, asyncio.create_task(one_request(client, intended))))
    await asyncio.gather(*(t for _, t in tasks))
    samples = [t.result() for intended, t in tasks if intended >= measured_from]
    return collect(samples, spec.duration_s)


async def _closed_loop(client: _Client, spec: LoadSpec) -> PhaseResult:
    begin = time.perf_counter()
    measured_from = begin + spec.warmup_s
    deadline = measured_from + spec.duration_s
    samples: list[Sample] = []

    async def worker() -> None:
        while (start := time.perf_counter()) < deadline:
            sample = await one_request(client, start)
            if start >= measured_from:
                samples.append(sample)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    return collect(samples, spec.duration_s)


async def run_load(spec: LoadSpec, api_key: str) -> PhaseResult:
    """Run one phase in this process and return its raw measurements."""
    connector = aiohttp.TCPConnector(limit=max(256, spec.concurrency), keepalive_timeout=60)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout, auto_decompress=False
    ) as session:
        client = _Client(session, spec.url, request_body(spec.model, spec.stream), spec.stream)
        wall, cpu = time.perf_counter(), time.process_time()
        run = _open_loop if spec.mode is LoadMode.OPEN else _closed_loop
        result = await run(client, spec)
        busy = 100.0 * (time.process_time() - cpu) / (time.perf_counter() - wall)
        return dataclasses.replace(result, cpu_pct=busy)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: run the spec, write the result file."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--spec", required=True, help="a LoadSpec as JSON")
    parser.add_argument("--out", required=True, type=Path, help="where to write the result")
    args = parser.parse_args(argv)
    spec = LoadSpec.from_json(args.spec)
    api_key = os.environ.get(API_KEY_ENV, "")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        result = runner(run_load(spec, api_key))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group; the parent reports it
        sys.exit(130)
    args.out.write_bytes(result.to_json())


if __name__ == "__main__":
    main()
