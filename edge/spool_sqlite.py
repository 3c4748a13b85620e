"""The embedded settlement spool: a SQLite file in `$APIRELAY_HOME` (edge-spool.db).

It is the only copy of a settlement billing has not taken yet, so it runs with
synchronous=FULL (a commit is on disk before `put` returns) in WAL mode. One edge
process owns the file; the connection runs in aiosqlite's thread, so the event loop
never waits for the disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from edge.spool import CallKind, SpooledCall, SpoolEntry

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spool (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL)""",
)
_DEAD = "INSERT INTO dead_letters (kind, request_id, payload, reason, created_at) VALUES (?,?,?,?,?)"


class SqliteSpool:
    """Spool on one SQLite file (":memory:" for tests that need no durability)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()

    async def _conn(self) -> aiosqlite.Connection:
        async with self._opening:
            if self._db is None:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(self._path)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=FULL")
                for statement in _SCHEMA:
                    await db.execute(statement)
                await db.commit()
                self._db = db
            return self._db

    async def put(self, call: SpooledCall) -> None:
        """Store `call`; committed (fsynced) when this returns."""
        db = await self._conn()
        await db.execute(
            "INSERT INTO spool (kind, request_id, payload, created_at) VALUES (?,?,?,?)",
            (call.kind.value, call.request_id, call.payload, time.time()),
        )
        await db.commit()

    async def take(self, limit: int) -> list[SpoolEntry]:
        """The oldest `limit` entries; nothing is removed."""
        db = await self._conn()
        async with db.execute(
            "SELECT id, kind, request_id, payload FROM spool ORDER BY id LIMIT ?", (limit,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            SpoolEntry(str(row[0]), SpooledCall(CallKind.parse(str(row[1])), str(row[2]), bytes(row[3])))
            for row in rows
        ]

    async def ack(self, entries: Sequence[SpoolEntry]) -> None:
        """Delete confirmed entries in one transaction."""
        if not entries:
            return
        db = await self._conn()
        await db.executemany(
            "DELETE FROM spool WHERE id = ?", [(int(entry.entry_id),) for entry in entries]
        )
        await db.commit()

    async def dead_letter(self, entry: SpoolEntry, reason: str) -> None:
        """Move the entry to `dead_letters` (one transaction: never in both, never lost)."""
        db = await self._conn()
        call = entry.call
        await db.execute(_DEAD, (call.kind.value, call.request_id, call.payload, reason,
                                 time.time()))
        await db.execute("DELETE FROM spool WHERE id = ?", (int(entry.entry_id),))
        await db.commit()

    async def bury(self, call: SpooledCall, reason: str) -> None:
        """Keep a refused call that was never queued in `dead_letters`."""
        db = await self._conn()
        await db.execute(_DEAD, (call.kind.value, call.request_id, call.payload, reason,
                                 time.time()))
        await db.commit()

    async def depth(self) -> int:
        """Entries waiting."""
        return await self._count("spool")

    async def dead_letters(self) -> int:
        """Entries moved out of the queue (for operators and tests)."""
        return await self._count("dead_letters")

    async def _count(self, table: str) -> int:
        db = await self._conn()
        async with db.execute(f"SELECT COUNT(*) FROM {table}") as cursor:  # table: one of ours
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def close(self) -> None:
        """Close the connection (the file stays, with whatever is still pending)."""
        if self._db is not None:
            await self._db.close()
            self._db = None
