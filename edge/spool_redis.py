"""The scale-out settlement spool: one Redis stream shared by every edge replica.

Each replica is a consumer of one consumer group. An entry read with XREADGROUP stays
in the group's pending list until XACK (then XDEL) after billing confirmed it; a
replica re-reads its own pending entries on every pass, and takes over (XAUTOCLAIM)
entries another replica read but left idle for `claim_idle_ms` (that replica died or
is stuck). The stream is never trimmed: an entry leaves only by ack or dead letter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from edge.spool import CallKind, SpooledCall, SpoolEntry

DEFAULT_CLAIM_IDLE_MS = 60_000


class RedisSpool:
    """Spool on a Redis stream `stream` (dead letters in `<stream>:dead`)."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
    ) -> None:
        self._redis = client
        self._stream = stream
        self._dead = f"{stream}:dead"
        self._group = group
        self._consumer = consumer
        self._claim_idle_ms = claim_idle_ms
        self._ready = False

    @classmethod
    def from_url(
        cls, url: str, stream: str, group: str, consumer: str,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
    ) -> RedisSpool:
        """A spool on the Redis at `url` (connections are opened on first use)."""
        return cls(redis.Redis.from_url(url), stream, group, consumer, claim_idle_ms)

    async def _group_ready(self) -> None:
        if self._ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: another replica made it
                raise
        self._ready = True

    async def put(self, call: SpooledCall) -> None:
        """XADD the call (Redis's own persistence settings decide its durability)."""
        await self._redis.xadd(self._stream, _fields(call))

    async def take(self, limit: int) -> list[SpoolEntry]:
        """Own pending entries first, then ones idle at a dead replica, then new ones."""
        await self._group_ready()
        entries = await self._read("0", limit)
        if len(entries) < limit:
            claimed: Any = await self._redis.xautoclaim(
                self._stream, self._group, self._consumer, self._claim_idle_ms,
                start_id="0-0", count=limit - len(entries),
            )
            entries += self._entries(claimed[1])
        if len(entries) < limit:
            entries += await self._read(">", limit - len(entries))
        return entries

    async def _read(self, start: str, count: int) -> list[SpoolEntry]:
        reply: Any = await self._redis.xreadgroup(
            self._group, self._consumer, {self._stream: start}, count=count
        )
        return [entry for _, messages in reply or () for entry in self._entries(messages)]

    def _entries(self, messages: Sequence[Any]) -> list[SpoolEntry]:
        # An id without fields was deleted under us (acked by another replica): skip it.
        return [
            SpoolEntry(_text(entry_id), _call(fields))
            for entry_id, fields in messages if fields
        ]

    async def ack(self, entries: Sequence[SpoolEntry]) -> None:
        """XACK and XDEL the confirmed entries, atomically."""
        if not entries:
            return
        ids = [entry.entry_id for entry in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, self._group, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()

    async def dead_letter(self, entry: SpoolEntry, reason: str) -> None:
        """Copy the entry to the dead-letter stream and remove it, atomically."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._dead, {**_fields(entry.call), "reason": reason})
            pipe.xack(self._stream, self._group, entry.entry_id)
            pipe.xdel(self._stream, entry.entry_id)
            await pipe.execute()

    async def bury(self, call: SpooledCall, reason: str) -> None:
        """Keep a refused call that was never queued in the dead-letter stream."""
        await self._redis.xadd(self._dead, {**_fields(call), "reason": reason})

    async def depth(self) -> int:
        """Entries not yet applied (acked ones are deleted, so the stream's length)."""
        return int(await self._redis.xlen(self._stream))

    async def dead_letters(self) -> int:
        """Entries in the dead-letter stream."""
        return int(await self._redis.xlen(self._dead))

    async def close(self) -> None:
        """Leave the group if nothing is pending here, then close the connections."""
        try:
            if self._ready:
                with contextlib.suppress(RedisError):  # Redis down or the stream gone
                    await self._leave()
        finally:
            await self._redis.aclose()

    async def _leave(self) -> None:
        # A consumer without pending entries is only clutter in the group once we exit.
        pending = await self._redis.xpending_range(
            self._stream, self._group, min="-", max="+", count=1, consumername=self._consumer,
        )
        if not pending:
            await self._redis.xgroup_delconsumer(self._stream, self._group, self._consumer)


def _fields(call: SpooledCall) -> dict[FieldT, EncodableT]:
    return {"kind": call.kind.value, "request_id": call.request_id, "payload": call.payload}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _call(fields: dict[Any, Any]) -> SpooledCall:
    def get(name: str) -> Any:
        return fields.get(name.encode(), fields.get(name))

    return SpooledCall(CallKind.parse(_text(get("kind") or b"")), _text(get("request_id") or b""),
                       bytes(get("payload") or b""))
