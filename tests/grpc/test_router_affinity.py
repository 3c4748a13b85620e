"""Prompt-cache affinity through a real grpc.aio RouterService over real OpenAI providers
and fake upstreams on 127.0.0.1: the Caller's account and the prompt pick the target.
Each test prints one JSON line of figures."""

from __future__ import annotations

import json
import random

import orjson
from prometheus_client import REGISTRY

from apirelay.router.v1 import router_pb2
from tests.grpc.test_router_resilience import Stub, served

OUTCOMES = ("hit", "miss", "unavailable")


def _body(prompt: str, *, stream: bool = False) -> bytes:
    return orjson.dumps({"model": "demo", "stream": stream, "messages": [
        {"role": "system", "content": "You answer questions about the attached handbook."},
        {"role": "user", "content": prompt}]})


async def _ask(stub: Stub, account: str, prompt: str) -> router_pb2.CreateChatCompletionResponse:
    answer = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        model="demo", body=_body(prompt), caller=router_pb2.Caller(account_id=account)))
    assert not answer.HasField("error")
    return answer


async def _ask_stream(stub: Stub, account: str, prompt: str) -> router_pb2.RouteInfo:
    items = [i async for i in stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="demo", body=_body(prompt, stream=True),
        caller=router_pb2.Caller(account_id=account)))]
    assert not items[-1].end.HasField("error")
    return items[-1].end.route


def _lookups() -> dict[str, float]:
    return {o: REGISTRY.get_sample_value("apirelay_router_affinity_lookups_total",
                                         {"outcome": o}) or 0.0 for o in OUTCOMES}


async def test_an_accounts_prompt_sticks_to_one_upstream_where_p2c_spreads() -> None:
    async with served("ok", "ok", "ok") as (stub, ups):
        sticky = {(await _ask(stub, "acct_a", "chapter 1")).route.channel for _ in range(20)}
        sticky |= {(await _ask_stream(stub, "acct_a", "chapter 1")).channel for _ in range(10)}
        before = [u.hits for u in ups]
        spread = {(await _ask(stub, "", "chapter 1")).route.channel for _ in range(30)}
    print(json.dumps({"test": "affinity-sticky", "sticky_channels": sorted(sticky),
                      "no_account_channels": sorted(spread), "hits_before": before}))
    assert len(sticky) == 1 and sorted(before) == [0, 0, 30]
    assert len(spread) == 3


async def test_a_failing_remembered_upstream_falls_back_and_the_new_one_sticks() -> None:
    async with served("ok", "ok", "ok") as (stub, ups):
        first = (await _ask(stub, "acct_f", "chapter 2")).route.channel
        failing = ups[int(first.removeprefix("c"))]
        failing.mode = "503"
        moved = await _ask(stub, "acct_f", "chapter 2")
        after = {(await _ask(stub, "acct_f", "chapter 2")).route.channel for _ in range(10)}
    assert moved.route.attempts == 2 and moved.route.channel != first
    assert after == {moved.route.channel}
    assert failing.hits == 2  # the first answer and the one failed try


async def test_hit_rate_of_a_mixed_workload() -> None:
    """10 accounts x 3 prompts x 10 requests, shuffled: only each pair's first misses."""
    work = [(f"acct_{a}", f"doc {p}") for a in range(10) for p in range(3) for _ in range(10)]
    random.Random(5).shuffle(work)
    before = _lookups()
    async with served("ok", "ok", "ok") as (stub, _):
        served_by: dict[tuple[str, str], set[str]] = {}
        for account, prompt in work:
            channel = (await _ask(stub, account, prompt)).route.channel
            served_by.setdefault((account, prompt), set()).add(channel)
    counts = {o: _lookups()[o] - before[o] for o in OUTCOMES}
    rate = counts["hit"] / sum(counts.values())
    print(json.dumps({"test": "affinity-hit-rate", "requests": len(work), **counts,
                      "hit_rate": round(rate, 3)}))
    assert all(len(channels) == 1 for channels in served_by.values())
    assert len({c for channels in served_by.values() for c in channels}) >= 2
    assert counts == {"hit": 270, "miss": 30, "unavailable": 0}
