"""Where the limiter's windows live: one `LimiterStore` protocol, in memory or in Redis.

Both run the algorithms described in `windows.py`; the Redis store runs them as one Lua
script per call (`lua.py`), so replicas sharing a Redis admit exactly as one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.ratelimit import lua
from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import LeaseRelease, LeaseRequest, LimitKind, Usage, Verdict
from services.ratelimit.windows import CONCURRENCY_RETRY_HINT_MS, SubjectWindows

DEFAULT_WINDOW_MS = 60_000
DEFAULT_REDIS_PREFIX = "apirelay:rl:"
_SWEEP_EVERY = 1024
# Errors that mean "Redis is not there" (as opposed to a bug in a script or a call).
_UNREACHABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)

MillisClock = Callable[[], int]
# A script, its keys and its arguments.
_ScriptCall: TypeAlias = tuple[lua.LuaScript, tuple[str, ...], tuple[str | int, ...]]


def monotonic_ms() -> int:
    """Milliseconds of the monotonic clock (the memory store's default clock)."""
    return time.monotonic_ns() // 1_000_000


class LimiterStore(Protocol):
    """Atomically decides and records acquisitions and releases of leases."""

    async def acquire(self, request: LeaseRequest) -> Verdict:
        """Admit the request into every limit or none; raises StoreUnavailable."""
        ...

    async def release(self, release: LeaseRelease) -> bool:
        """End a held lease; False if unknown, released or expired; raises StoreUnavailable."""
        ...

    async def acquire_many(self, requests: Sequence[LeaseRequest]) -> list[Verdict]:
        """`acquire` for each request in order, in one round trip; raises StoreUnavailable."""
        ...

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool]:
        """`release` for each lease in order, in one round trip; raises StoreUnavailable."""
        ...

    async def close(self) -> None:
        """Release the store's connections."""
        ...


class MemoryLimiterStore:
    """Windows in this process: exact for one replica; nothing awaits while deciding."""

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS, clock: MillisClock = monotonic_ms):
        self._window_ms = window_ms
        self._clock = clock
        self._subjects: dict[str, SubjectWindows] = {}
        self._calls = 0

    async def acquire(self, request: LeaseRequest) -> Verdict:
        """Admit the request into every limit or none."""
        now = self._clock()
        self._maybe_sweep(now)
        windows = self._subjects.get(request.subject)
        if windows is None:
            windows = self._subjects[request.subject] = SubjectWindows(self._window_ms)
        return windows.acquire(now, request)

    async def release(self, release: LeaseRelease) -> bool:
        """End a held lease and reconcile its tokens."""
        windows = self._subjects.get(release.subject)
        return windows is not None and windows.release(self._clock(), release)

    async def acquire_many(self, requests: Sequence[LeaseRequest]) -> list[Verdict]:
        """`acquire` for each request in order."""
        return [await self.acquire(request) for request in requests]

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool]:
        """`release` for each lease in order."""
        return [await self.release(release) for release in releases]

    async def close(self) -> None:
        """Nothing to close."""

    def subject_count(self) -> int:
        """How many subjects are remembered (for tests of forgetting idle ones)."""
        return len(self._subjects)

    def _maybe_sweep(self, now: int) -> None:
        # Forget idle subjects now and then, so memory follows the active ones.
        self._calls += 1
        if self._calls % _SWEEP_EVERY:
            return
        for subject in [s for s, w in self._subjects.items() if w.is_idle(now)]:
            del self._subjects[subject]


class RedisLimiterStore:
    """Windows in Redis: one atomic script per call, times from Redis `TIME`."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_REDIS_PREFIX,
        window_ms: int = DEFAULT_WINDOW_MS,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._window_ms = window_ms

    @classmethod
    def from_url(
        cls, url: str, prefix: str = DEFAULT_REDIS_PREFIX, window_ms: int = DEFAULT_WINDOW_MS,
        timeout_s: float = 0.1,
    ) -> RedisLimiterStore:
        """A store with its own client; no retries, since a replayed acquire would count twice."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix, window_ms)

    def keys(self, subject: str) -> tuple[str, str, str, str, str]:
        """The subject's keys: rpm, tpm, weights, leases, starts (one cluster slot)."""
        base = f"{self._prefix}{{{subject}}}:"
        return base + "rpm", base + "tpm", base + "tpmw", base + "leases", base + "starts"

    async def acquire(self, request: LeaseRequest) -> Verdict:
        """Admit the request into every limit or none, in one script."""
        return _verdict(await self._run(*self._acquire_call(request)))

    async def release(self, release: LeaseRelease) -> bool:
        """End a held lease and reconcile its tokens, in one script."""
        return bool(int(await self._run(*self._release_call(release))))

    async def acquire_many(self, requests: Sequence[LeaseRequest]) -> list[Verdict]:
        """`acquire` for each request in order: one script each, all in one pipeline."""
        replies = await self._run_many([self._acquire_call(request) for request in requests])
        return [_verdict(reply) for reply in replies]

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool]:
        """`release` for each lease in order: one script each, all in one pipeline."""
        replies = await self._run_many([self._release_call(release) for release in releases])
        return [bool(int(reply)) for reply in replies]

    async def close(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()

    def _acquire_call(self, request: LeaseRequest) -> _ScriptCall:
        limits = request.limits
        args = (
            request.lease_id, limits.rpm, limits.tpm, limits.concurrency,
            request.tokens, request.ttl_ms, self._window_ms, CONCURRENCY_RETRY_HINT_MS,
        )
        return lua.ACQUIRE, self.keys(request.subject), args

    def _release_call(self, release: LeaseRelease) -> _ScriptCall:
        _, _, weights, leases, starts = self.keys(release.subject)
        return lua.RELEASE, (weights, leases, starts), (release.lease_id, release.actual_tokens)

    async def _run(
        self, script: lua.LuaScript, keys: tuple[str, ...], args: tuple[str | int, ...]
    ) -> Any:
        try:
            try:
                return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                # Redis restarted or flushed its scripts: EVAL runs it and caches it again.
                return await self._redis.eval(script.source, len(keys), *keys, *args)
        except _UNREACHABLE as exc:
            raise StoreUnavailable("rate limit store unavailable") from exc

    async def _run_many(self, calls: Sequence[_ScriptCall]) -> list[Any]:
        # Not a transaction: each script is atomic on its own, and scripts of one pipeline
        # run in order, so a batch decides exactly as the same calls one after another.
        try:
            replies = await self._pipeline(calls, by_sha=True)
            missing = [
                i for i, reply in enumerate(replies)
                if isinstance(reply, redis_errors.NoScriptError)
            ]
            if missing:
                # Redis restarted or flushed its scripts: EVAL runs those and caches them.
                again = await self._pipeline([calls[i] for i in missing], by_sha=False)
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            # A pipeline returns error replies (READONLY too) instead of raising them.
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        except _UNREACHABLE as exc:
            raise StoreUnavailable("rate limit store unavailable") from exc
        return replies

    async def _pipeline(self, calls: Sequence[_ScriptCall], by_sha: bool) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                if by_sha:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                else:
                    pipe.eval(script.source, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


def _verdict(reply: Any) -> Verdict:
    allowed, denied_by, replayed, *usage = (int(v) for v in reply)
    return Verdict(
        allowed=bool(allowed),
        denied_by=LimitKind(denied_by) if denied_by else None,
        replayed=bool(replayed),
        rpm=Usage(usage[0], usage[1]),
        tpm=Usage(usage[2], usage[3]),
        concurrency=Usage(usage[4], usage[5]),
    )
