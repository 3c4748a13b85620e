"""Where cached answers live: one `ResponseCacheStore` protocol, in memory or in Redis.

An entry is a whole non-streaming answer (body, content type) with the usage it was
billed for, so that a hit can be billed again. Entries are named by the caller (edge.
response_cache scopes each name by the API key id) and expire after their own TTL.
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

from edge.domain import Usage, UsageSource

DEFAULT_REDIS_PREFIX = "apirelay:cache:"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One answer as the upstream gave it (no cost added) and the usage it consumed."""

    body: bytes
    content_type: str
    usage: Usage
    usage_source: UsageSource


class ResponseCacheStore(Protocol):
    """Gets and puts cached answers by name."""

    async def get(self, name: str) -> CachedAnswer | None:
        """The live answer stored under `name`, or None."""
        ...

    async def put(self, name: str, answer: CachedAnswer, ttl_s: float) -> None:
        """Keep `answer` under `name` for `ttl_s` seconds (replacing any older one)."""
        ...

    async def close(self) -> None:
        """Release connections, if any."""
        ...


class MemoryResponseCache:
    """Answers in this process only; at most `max_entries`, the least recently used evicted."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    async def get(self, name: str) -> CachedAnswer | None:
        """The live answer stored under `name`, or None."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        expires_at, answer = entry
        if expires_at <= self._clock():
            del self._entries[name]
            return None
        self._entries.move_to_end(name)
        return answer

    async def put(self, name: str, answer: CachedAnswer, ttl_s: float) -> None:
        """Keep `answer` under `name` for `ttl_s` seconds (replacing any older one)."""
        self._entries.pop(name, None)
        while len(self._entries) >= self._max_entries:
            self._entries.popitem(last=False)
        self._entries[name] = (self._clock() + ttl_s, answer)

    async def close(self) -> None:
        """Nothing to release."""


class RedisResponseCache:
    """Answers in Redis, shared by every edge replica; Redis expires them."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_REDIS_PREFIX) -> RedisResponseCache:
        """A store with its own client for `url`."""
        return cls(redis.Redis.from_url(url), prefix)

    async def get(self, name: str) -> CachedAnswer | None:
        """The live answer stored under `name`, or None."""
        raw = await self._redis.get(self._prefix + name)
        return None if raw is None else decode(raw)

    async def put(self, name: str, answer: CachedAnswer, ttl_s: float) -> None:
        """Keep `answer` under `name` for `ttl_s` seconds (replacing any older one)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        await self._redis.set(self._prefix + name, encode(answer), px=ttl_ms)

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.aclose()


def encode(answer: CachedAnswer) -> bytes:
    """An answer as one JSON record (the body base64, since it need not be UTF-8)."""
    usage = answer.usage
    return orjson.dumps({
        "body": base64.b64encode(answer.body).decode("ascii"),
        "content_type": answer.content_type,
        "source": int(answer.usage_source),
        "usage": [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
                  usage.cached_prompt_tokens, usage.reasoning_tokens,
                  usage.cache_write_prompt_tokens],
        "units": dict(usage.units),
    })


def decode(raw: bytes | str) -> CachedAnswer:
    """The answer `encode` wrote."""
    record = orjson.loads(raw)
    counts = [int(n) for n in record["usage"]]
    # Entries stored before cache writes were counted have five numbers.
    prompt, completion, total, cached, reasoning = counts[:5]
    written = counts[5] if len(counts) > 5 else 0
    units = {str(unit): int(quantity) for unit, quantity in record["units"].items()}
    return CachedAnswer(
        body=base64.b64decode(record["body"]),
        content_type=str(record["content_type"]),
        usage=Usage(prompt, completion, total, cached, reasoning, units=units,
                    cache_write_prompt_tokens=written),
        usage_source=UsageSource(int(record["source"])),
    )
