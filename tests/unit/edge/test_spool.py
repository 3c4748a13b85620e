"""The SQLite settlement spool and the outbox's drain (ack after commit, dead letters)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import grpc

from apirelay.billing.v1 import billing_pb2
from edge.app import open_spool
from edge.config import Settings
from edge.errors import UpstreamError
from edge.metrics import DRAINED, SPOOL_DEPTH
from edge.spool import CallKind, SpooledCall, encode_release, encode_settle
from edge.spool_drain import DrainPolicy, Outbox
from edge.spool_redis import RedisSpool
from edge.spool_sqlite import SqliteSpool


def settle(rid: str) -> SpooledCall:
    return encode_settle(billing_pb2.SettleCreditRequest(request_id=rid, channel="c"))


def release(rid: str) -> SpooledCall:
    return encode_release(billing_pb2.ReleaseCreditRequest(request_id=rid))


class ScriptedBilling:
    """Billing whose answers per request id are scripted; `down` fails every call."""

    def __init__(self) -> None:
        self.down = False
        self.refuse: dict[str, grpc.StatusCode] = {}
        self.applied: list[str] = []
        self.answered = asyncio.Event()
        self.failed = 0
        self.failed_thrice = asyncio.Event()

    def _check(self) -> None:
        if self.down:
            self.failed += 1
            if self.failed >= 3:
                self.failed_thrice.set()
            raise UpstreamError("billing", grpc.StatusCode.UNAVAILABLE, "down")

    async def settle(self, request: billing_pb2.SettleCreditRequest) -> int:
        raise AssertionError("the drain batches its settles")

    async def settle_many(
        self, requests: Sequence[billing_pb2.SettleCreditRequest]
    ) -> list[int | Exception]:
        self._check()
        results: list[int | Exception] = []
        for request in requests:
            code = self.refuse.get(request.request_id)
            if code is None:
                self.applied.append(request.request_id)
                results.append(7)
            else:
                results.append(UpstreamError("billing", code, "no such hold"))
        self.answered.set()
        return results

    async def release(self, request: billing_pb2.ReleaseCreditRequest) -> bool:
        self._check()
        self.applied.append("release:" + request.request_id)
        self.answered.set()
        return True


async def test_the_file_keeps_entries_across_a_restart_until_acked(tmp_path: Path) -> None:
    path = str(tmp_path / "home" / "edge-spool.db")
    spool = SqliteSpool(path)
    await spool.put(settle("a"))
    await spool.put(release("b"))
    await spool.close()  # the process ends with both pending

    reopened = SqliteSpool(path)
    entries = await reopened.take(10)
    assert [(e.call.kind, e.call.request_id) for e in entries] == [
        (CallKind.SETTLE, "a"), (CallKind.RELEASE, "b")]
    assert await reopened.take(10) == entries  # reading removes nothing
    await reopened.ack(entries[:1])
    assert [e.call.request_id for e in await reopened.take(10)] == ["b"]
    await reopened.dead_letter(entries[1], "NOT_FOUND: gone")
    assert await reopened.depth() == 0 and await reopened.dead_letters() == 1
    await reopened.close()
    with sqlite3.connect(path) as db:  # the dead letter keeps the call and the reason
        row = db.execute("SELECT kind, request_id, reason, payload FROM dead_letters").fetchone()
    assert row[:3] == ("release", "b", "NOT_FOUND: gone")
    assert billing_pb2.ReleaseCreditRequest.FromString(row[3]).request_id == "b"


async def test_the_spool_is_fsynced_and_in_wal_mode(tmp_path: Path) -> None:
    spool = SqliteSpool(str(tmp_path / "s.db"))
    await spool.put(settle("a"))
    db = await spool._conn()
    async with db.execute("PRAGMA synchronous") as cursor:
        assert (await cursor.fetchone()) == (2,)  # FULL
    async with db.execute("PRAGMA journal_mode") as cursor:
        assert (await cursor.fetchone()) == ("wal",)
    await spool.close()


async def test_drain_acks_applied_buries_refused_and_keeps_the_rest() -> None:
    spool, billing = SqliteSpool(":memory:"), ScriptedBilling()
    outbox = Outbox(spool, billing)
    for call in (settle("a"), settle("gone"), release("b"), SpooledCall(CallKind.SETTLE, "x", b"\xff")):
        await spool.put(call)
    billing.refuse["gone"] = grpc.StatusCode.NOT_FOUND
    drained = DRAINED.labels("settle")._value.get()
    assert await outbox.drain() is True
    assert billing.applied == ["a", "release:b"]
    assert await spool.depth() == 0 and await spool.dead_letters() == 2  # "gone" and "x"
    assert DRAINED.labels("settle")._value.get() == drained + 1
    await spool.close()


async def test_an_entry_of_an_unknown_kind_is_dead_lettered_not_blocking(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool, billing = SqliteSpool(str(path)), ScriptedBilling()
    await spool.put(settle("a"))
    with sqlite3.connect(path) as raw:  # an entry this version cannot read
        raw.execute("UPDATE spool SET kind = 'refund'")
    await spool.put(settle("b"))
    assert await Outbox(spool, billing).drain() is True
    assert billing.applied == ["b"]
    assert await spool.depth() == 0 and await spool.dead_letters() == 1
    await spool.close()


async def test_while_billing_is_down_nothing_leaves_the_spool() -> None:
    spool, billing = SqliteSpool(":memory:"), ScriptedBilling()
    outbox = Outbox(spool, billing)
    await spool.put(settle("a"))
    await spool.put(release("b"))
    billing.down = True
    assert await outbox.drain() is False
    assert await spool.depth() == 2 and await spool.dead_letters() == 0
    billing.down = False
    assert await outbox.drain() is True
    assert sorted(billing.applied) == ["a", "release:b"] and await spool.depth() == 0
    await spool.close()


async def test_the_loop_drains_leftovers_at_start_and_wakes_on_a_write() -> None:
    spool, billing = SqliteSpool(":memory:"), ScriptedBilling()
    await spool.put(settle("left-over"))
    outbox = Outbox(spool, billing, DrainPolicy(poll_s=60.0))
    outbox.start()
    await asyncio.wait_for(billing.answered.wait(), 5)
    assert billing.applied == ["left-over"]
    billing.answered.clear()
    await outbox.put(settle("new"))  # the 60 s poll is not what applies it
    await asyncio.wait_for(billing.answered.wait(), 5)
    assert billing.applied == ["left-over", "new"]
    await outbox.close(1.0)
    assert SPOOL_DEPTH._value.get() == 0


async def test_the_loop_backs_off_while_down_and_drains_after(tmp_path: Path) -> None:
    spool, billing = SqliteSpool(str(tmp_path / "s.db")), ScriptedBilling()
    billing.down = True
    outbox = Outbox(spool, billing, DrainPolicy(poll_s=60.0, backoff_s=0.01, max_backoff_s=0.05))
    outbox.start()
    await outbox.put(settle("a"))
    await asyncio.wait_for(billing.failed_thrice.wait(), 5)  # passes failed; it stays
    assert await spool.depth() == 1
    billing.down = False
    await asyncio.wait_for(billing.answered.wait(), 5)
    assert billing.applied == ["a"]
    await outbox.close(1.0)


async def test_close_leaves_what_billing_did_not_take_for_the_next_start(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    billing = ScriptedBilling()
    billing.down = True
    outbox = Outbox(SqliteSpool(path), billing, DrainPolicy(backoff_s=0.01))
    outbox.start()
    await outbox.put(settle("a"))
    await outbox.close(0.1)  # the grace runs out with billing still down
    billing.down = False
    again = Outbox(SqliteSpool(path), billing)
    assert await again.drain() is True
    assert billing.applied == ["a"]
    await again.close(1.0)


def test_the_backend_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"APIRELAY_HOME": str(tmp_path)})
    assert settings.spool_path == str(tmp_path / "edge-spool.db")
    assert Settings.from_env({"EDGE_SPOOL_PATH": "/x/s.db"}).spool_path == "/x/s.db"
    assert isinstance(open_spool(settings), SqliteSpool)
    scaled = replace(settings, redis_url="redis://127.0.0.1:1/0")
    assert isinstance(open_spool(scaled), RedisSpool)  # no connection until first use
