"""Where `Idempotency-Key` records live: one `IdempotencyStore` protocol, in memory or in Redis.

A record is claimed (pending) by the first request, then either completed with the
response to replay or abandoned so that a retry runs again. Records are scoped by the
API key id. A pending claim expires after `pending_ttl_s` (a little more than the longest
a request may run), so an edge that dies mid-request blocks the key only that long; a
completed record is kept `ttl_s` (24 h by default) from completion.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson
import redis.asyncio as redis

DEFAULT_REDIS_PREFIX = "apirelay:idem:"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What a replay sends back (rate-limit headers are left out: they would be stale)."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """The key is now this request's: run it, then `complete` or `abandon`."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The same request already finished: send `stored` again."""

    stored: StoredResponse


@dataclass(frozen=True, slots=True)
class InFlight:
    """The same key is still being run by another request."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used with a different request."""


ClaimResult = Claimed | Replay | InFlight | Mismatch


class IdempotencyStore(Protocol):
    """Claims, completes and abandons idempotency records."""

    async def claim(self, scope: str, key: str, fingerprint: str) -> ClaimResult:
        """Claim `key` in `scope` for a request with `fingerprint`, or say why not."""
        ...

    async def complete(
        self, scope: str, key: str, fingerprint: str, stored: StoredResponse
    ) -> None:
        """Keep `stored` for replays of the claimed key (for the rest of its TTL)."""
        ...

    async def abandon(self, scope: str, key: str) -> None:
        """Drop a pending claim so that a retry runs again."""
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    expires_at: float
    stored: StoredResponse | None = None


class MemoryIdempotencyStore:
    """Records in this process only; at most `max_entries`, the oldest evicted first."""

    def __init__(
        self, ttl_s: float, pending_ttl_s: float, max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._pending_ttl_s = pending_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    async def claim(self, scope: str, key: str, fingerprint: str) -> ClaimResult:
        """Claim `key` in `scope` for a request with `fingerprint`, or say why not."""
        now = self._clock()
        entry = self._entries.get((scope, key))
        if entry is not None and entry.expires_at > now:
            return _verdict(entry.fingerprint, entry.stored, fingerprint)
        self._entries.pop((scope, key), None)
        while len(self._entries) >= self._max_entries:
            self._entries.popitem(last=False)
        self._entries[(scope, key)] = _Entry(fingerprint, now + self._pending_ttl_s)
        return Claimed()

    async def complete(
        self, scope: str, key: str, fingerprint: str, stored: StoredResponse
    ) -> None:
        """Keep `stored` for replays of the claimed key, `ttl_s` from now."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.fingerprint == fingerprint and entry.stored is None:
            entry.stored = stored
            entry.expires_at = self._clock() + self._ttl_s

    async def abandon(self, scope: str, key: str) -> None:
        """Drop a pending claim so that a retry runs again."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.stored is None:
            del self._entries[(scope, key)]

    async def close(self) -> None:
        """Nothing to release."""


# Complete or abandon only a pending record: never overwrite or drop a finished one.
_COMPLETE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record.fp ~= ARGV[1] or record.status then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_ABANDON = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw).status then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisIdempotencyStore:
    """Records in Redis, shared by every edge replica; Redis expires them."""

    def __init__(
        self, client: redis.Redis, ttl_s: float, pending_ttl_s: float,
        prefix: str = DEFAULT_REDIS_PREFIX,
    ) -> None:
        self._redis = client
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._pending_ttl_ms = max(1, int(pending_ttl_s * 1000))
        self._prefix = prefix
        self._complete = client.register_script(_COMPLETE)
        self._abandon = client.register_script(_ABANDON)

    @classmethod
    def from_url(
        cls, url: str, ttl_s: float, pending_ttl_s: float, prefix: str = DEFAULT_REDIS_PREFIX
    ) -> RedisIdempotencyStore:
        """A store with its own client for `url`."""
        return cls(redis.Redis.from_url(url), ttl_s, pending_ttl_s, prefix)

    async def claim(self, scope: str, key: str, fingerprint: str) -> ClaimResult:
        """Claim `key` in `scope` for a request with `fingerprint`, or say why not."""
        name = self._name(scope, key)
        pending = orjson.dumps({"fp": fingerprint})
        if await self._redis.set(name, pending, nx=True, px=self._pending_ttl_ms):
            return Claimed()
        raw = await self._redis.get(name)
        if raw is None:  # expired or abandoned between the two calls
            return await self.claim(scope, key, fingerprint)
        record = orjson.loads(raw)
        return _verdict(record["fp"], _stored_from(record), fingerprint)

    async def complete(
        self, scope: str, key: str, fingerprint: str, stored: StoredResponse
    ) -> None:
        """Keep `stored` for replays of the claimed key, `ttl_s` from now."""
        record = orjson.dumps({
            "fp": fingerprint, "status": stored.status, "content_type": stored.content_type,
            "body": base64.b64encode(stored.body).decode("ascii"),
        })
        await self._complete(
            keys=[self._name(scope, key)], args=[fingerprint, record, self._ttl_ms]
        )

    async def abandon(self, scope: str, key: str) -> None:
        """Drop a pending claim so that a retry runs again."""
        await self._abandon(keys=[self._name(scope, key)])

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.aclose()

    def _name(self, scope: str, key: str) -> str:
        return f"{self._prefix}{scope}:{key}"


def _stored_from(record: dict[str, object]) -> StoredResponse | None:
    if "status" not in record:
        return None
    return StoredResponse(
        status=int(str(record["status"])),
        body=base64.b64decode(str(record["body"])),
        content_type=str(record["content_type"]),
    )


def _verdict(held: str, stored: StoredResponse | None, fingerprint: str) -> ClaimResult:
    if held != fingerprint:
        return Mismatch()
    return InFlight() if stored is None else Replay(stored)
