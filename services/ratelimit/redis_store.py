"""The Redis store: one atomic Lua script per decision, times from Redis `TIME`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.ratelimit import lua
from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import Acquisition, Release, ReleaseVerdict, Usage, Verdict
from services.ratelimit.store import MillisClock
from services.ratelimit.windows import CONCURRENCY_RETRY_HINT_MS

DEFAULT_REDIS_PREFIX = "apirelay:rl:"
# Errors that mean "Redis is not there" (as opposed to a bug in a script or a call).
_UNREACHABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)
# A script, its keys and its arguments.
_ScriptCall: TypeAlias = tuple[lua.LuaScript, tuple[str, ...], tuple[str | int, ...]]


class RedisLimiterStore:
    """Windows in Redis, shared by every replica; one script per acquire or release.

    `clock` is for tests of the script only: it replaces Redis `TIME` as the time.
    """

    def __init__(
        self, client: redis.Redis, prefix: str = DEFAULT_REDIS_PREFIX,
        clock: MillisClock | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._epoch: str | None = None

    @classmethod
    def from_url(
        cls, url: str, prefix: str = DEFAULT_REDIS_PREFIX, timeout_s: float = 0.1,
    ) -> RedisLimiterStore:
        """A store with its own client; no retries, since a replayed acquire would count twice."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix)

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        """Admit into every check or none, in one script."""
        return _verdict(await self._run(self._acquire_call(acquisition)))

    async def release(self, release: Release) -> ReleaseVerdict:
        """End a held lease and reconcile its tokens, in one script."""
        return _release_verdict(await self._run(self._release_call(release)))

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        """`acquire` for each in order: one script each, all in one pipeline."""
        replies = await self._run_many([self._acquire_call(a) for a in acquisitions])
        return [_verdict(reply) for reply in replies]

    async def release_many(self, releases: Sequence[Release]) -> list[ReleaseVerdict]:
        """`release` for each in order: one script each, all in one pipeline."""
        replies = await self._run_many([self._release_call(r) for r in releases])
        return [_release_verdict(reply) for reply in replies]

    async def lost_state(self) -> bool:
        """True if the epoch marker changed since the last call (Redis lost its data)."""
        marker = self._prefix + "epoch"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(marker, uuid.uuid4().hex, nx=True)
                pipe.get(marker)
                _, current = await pipe.execute()
        except _UNREACHABLE as exc:
            raise await self._unavailable() from exc
        value = current.decode() if isinstance(current, bytes) else str(current)
        lost = self._epoch is not None and value != self._epoch
        self._epoch = value
        return lost

    async def _unavailable(self) -> StoreUnavailable:
        # The idle pooled connections died with the server too: drop them now, or after
        # Redis is back each would fail once on first use and look like a new outage.
        await self._redis.connection_pool.disconnect(inuse_connections=False)
        return StoreUnavailable("rate limit store unavailable")

    async def close(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()

    def _now_arg(self) -> str | int:
        return "" if self._clock is None else self._clock()

    def _acquire_call(self, acquisition: Acquisition) -> _ScriptCall:
        keys: list[str] = [self._prefix + acquisition.record]
        args: list[str | int] = [
            self._now_arg(), acquisition.token, acquisition.ttl_ms, len(acquisition.checks)]
        for check in acquisition.checks:
            base = self._prefix + check.key
            if check.is_slots:
                keys += [base, base]
                kind = "c"
            else:
                keys += [base + ":z", base + ":w"]
                kind = "t" if check.reconciled else "w"
            args += [kind, check.limit, check.window_ms, check.amount]
        args.append(CONCURRENCY_RETRY_HINT_MS)
        return lua.ACQUIRE, tuple(keys), tuple(args)

    def _release_call(self, release: Release) -> _ScriptCall:
        args = (self._now_arg(), release.token, release.actual_tokens)
        return lua.RELEASE, (self._prefix + release.record,), args

    async def _run(self, call: _ScriptCall) -> Any:
        script, keys, args = call
        try:
            try:
                return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                # Redis restarted or flushed its scripts: EVAL runs it and caches it again.
                return await self._redis.eval(script.source, len(keys), *keys, *args)
        except _UNREACHABLE as exc:
            raise await self._unavailable() from exc

    async def _run_many(self, calls: Sequence[_ScriptCall]) -> list[Any]:
        # Not a transaction: each script is atomic on its own, and scripts of one pipeline
        # run in order, so a batch decides exactly as the same calls one after another.
        if not calls:
            return []
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
            raise await self._unavailable() from exc
        return replies

    async def _pipeline(self, calls: Sequence[_ScriptCall], by_sha: bool) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                if by_sha:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                else:
                    pipe.eval(script.source, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


def _at_us(sec: Any, usec: Any) -> int:
    return int(sec) * 1_000_000 + int(usec)


def _verdict(reply: Any) -> Verdict:
    sec, usec, allowed, denied, replayed, *usages = (int(v) for v in reply)
    return Verdict(
        allowed=bool(allowed),
        replayed=bool(replayed),
        denied=denied - 1 if denied else None,
        usages=tuple(Usage(usages[i], usages[i + 1]) for i in range(0, len(usages), 2)),
        at_us=_at_us(sec, usec),
    )


def _release_verdict(reply: Any) -> ReleaseVerdict:
    sec, usec, released = (int(v) for v in reply)
    return ReleaseVerdict(bool(released), _at_us(sec, usec))
