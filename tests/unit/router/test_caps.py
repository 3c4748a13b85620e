"""services.router.caps: cap rules, leases per try, skipping capped targets, waiting."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from services.common.gateway_config import (
    ChannelEntry,
    ConfigError,
    GatewayConfig,
    ModelEntry,
    QueueConfig,
    parse_gateway_config,
)
from services.router.balancer import Target
from services.router.caps import CapGate, Demand, Grant, cap_rules, set_demand
from services.router.core import ModelRouter
from services.router.outcomes import CompletionResult
from services.router.providers.base import Completion, UpstreamRequest
from services.router.queue import CapacityQueue
from tests.unit.router.fakes import COMPLETION, FakeProvider
from tests.unit.router.helpers import chat_request


@dataclass
class FakeLeases:
    """A LeaseStore holding concurrency caps in memory (RPM/TPM: recorded, never full)."""

    held: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    acquired: list[tuple[str, int]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    broken: bool = False

    def _in_use(self, name: str) -> int:
        return sum(1 for rules in self.held.values() for n, _ in rules if n == name)

    async def acquire(self, lease_id: str, rules: list[pb.LimitRule], tokens: int,
                      ttl_s: float) -> Grant:
        if self.broken:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata())
        self.acquired.append((lease_id, tokens))
        slots = [(r.descriptor.entries[0].value, r.limit) for r in rules
                 if r.kind == pb.LIMIT_KIND_CONCURRENCY]
        if any(self._in_use(name) >= limit for name, limit in slots):
            return Grant("", 0.5, ("concurrency",))
        self.held[lease_id] = slots
        return Grant(lease_id)

    async def release(self, lease_id: str) -> None:
        self.released.append(lease_id)
        self.held.pop(lease_id, None)


@dataclass
class HeldProvider(FakeProvider):
    """Answers once `go` is set; counts the answers in flight at once."""

    go: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most: int = 0

    async def complete(self, request: UpstreamRequest) -> Completion:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.go.wait()
        finally:
            self.in_flight -= 1
        return COMPLETION


def _router(leases: FakeLeases, *, wait_s: float = 5.0, priorities: dict[str, int] | None = None,
            capped: int = 1) -> tuple[ModelRouter, HeldProvider, HeldProvider]:
    channels = (ChannelEntry("a", "fake", ("demo",), priority=1, cap_concurrency=capped),
                ChannelEntry("b", "fake", ("demo",), priority=0, key_cap_concurrency=1))
    config = GatewayConfig((ModelEntry("demo"),), channels, {})
    a, b = HeldProvider(), HeldProvider()
    gate = CapGate(leases, QueueConfig(wait_s, 10, priorities or {}))
    return ModelRouter(config, {"a": a, "b": b}, rng=random.Random(1), caps=gate), a, b


async def _complete(router: ModelRouter, group: str = "", request_id: str = "r") -> CompletionResult:
    set_demand(Demand(request_id, group, lambda: 42))
    return await router.complete(chat_request(request_id=request_id))


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_caps_and_queue_are_read_from_the_file() -> None:
    config = parse_gateway_config({
        "channels": [{"name": "a", "type": "mock", "models": [],
                      "caps": {"rpm": 60, "concurrency": 2}, "key_caps": {"tpm": 1000}}],
        "queue": {"max_wait_s": 2.5, "max_size": 7, "priorities": {"vip": 10}},
    })
    channel = config.channels[0]
    assert (channel.caps.rpm, channel.caps.tpm, channel.caps.concurrency) == (60, 0, 2)
    assert (channel.key_caps.rpm, channel.key_caps.tpm) == (0, 1000)
    assert config.queue == QueueConfig(2.5, 7, {"vip": 10})


@pytest.mark.parametrize("raw", [{"caps": {"rps": 1}}, {"caps": {"rpm": -1}},
                                 {"key_caps": [1]}, {"caps": {"tpm": True}}])
def test_bad_caps_fail_at_startup(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="caps"):
        parse_gateway_config({"channels": [{"name": "a", "type": "mock", "models": [], **raw}]})


def test_bad_queue_fails_at_startup() -> None:
    with pytest.raises(ConfigError, match="queue.max_wait_s"):
        parse_gateway_config({"queue": {"max_wait_s": -1}})


def test_rules_name_the_channel_and_the_key() -> None:
    channel = ChannelEntry("a", "fake", ("demo",), cap_rpm=10, cap_tpm=500, key_cap_concurrency=3)
    rules = cap_rules(Target(channel, "key_1", FakeProvider()))
    seen = [(r.descriptor.entries[0].key, r.descriptor.entries[0].value, r.kind, r.limit)
            for r in rules]
    assert seen == [("channel", "a", pb.LIMIT_KIND_RPM, 10), ("channel", "a", pb.LIMIT_KIND_TPM, 500),
                    ("upstream_key", "key_1", pb.LIMIT_KIND_CONCURRENCY, 3)]
    keyless = cap_rules(Target(channel, "none", FakeProvider()))
    assert keyless[-1].descriptor.entries[0].value == "a/none"
    assert cap_rules(Target(ChannelEntry("b", "fake", ()), "k", FakeProvider())) == []


async def test_a_capped_target_is_skipped_for_the_next() -> None:
    leases = FakeLeases()
    router, a, b = _router(leases)
    first = asyncio.create_task(_complete(router, request_id="r1"))
    await _until(lambda: a.in_flight == 1)
    second = asyncio.create_task(_complete(router, request_id="r2"))
    await _until(lambda: b.in_flight == 1)  # a (higher priority) is at its cap
    a.go.set()
    b.go.set()
    assert (await first).route.channel == "a"
    answer = await second
    assert answer.route.channel == "b"
    assert answer.route.attempts == 1  # a denied lease is no attempt
    assert ("r2.cap1", 42) in leases.acquired  # the request's estimate, per-try lease id
    await _until(lambda: len(leases.released) == 2)
    assert not leases.held


async def test_when_all_are_capped_the_request_waits_for_a_release() -> None:
    leases = FakeLeases()
    router, a, b = _router(leases)
    held = [asyncio.create_task(_complete(router, request_id=f"h{i}")) for i in range(2)]
    await _until(lambda: a.in_flight == 1 and b.in_flight == 1)
    waiting = asyncio.create_task(_complete(router, request_id="w"))
    await _until(lambda: len(router_queue(router)) == 1)
    a.go.set()  # the held request on a ends: its release gives the waiter its turn
    answer = await waiting
    assert answer.error is None
    assert a.most == 1 and b.most == 1  # never over the caps
    b.go.set()
    await asyncio.gather(*held)


async def test_the_wait_is_bounded_and_ends_in_429() -> None:
    router, a, b = _router(FakeLeases(), wait_s=0.05)
    held = [asyncio.create_task(_complete(router, request_id=f"h{i}")) for i in range(2)]
    await _until(lambda: a.in_flight == 1 and b.in_flight == 1)
    answer = await _complete(router, request_id="late")
    assert answer.error is not None
    assert (answer.error.http_status, answer.error.code) == (429, "upstream_capacity")
    a.go.set()
    b.go.set()
    await asyncio.gather(*held)


async def test_higher_priority_groups_are_served_first() -> None:
    router, a, b = _router(FakeLeases(), priorities={"vip": 10})
    held = [asyncio.create_task(_complete(router, request_id=f"h{i}")) for i in range(2)]
    await _until(lambda: a.in_flight == 1 and b.in_flight == 1)
    order: list[str] = []

    async def waiter(name: str, group: str) -> None:
        await _complete(router, group, name)
        order.append(name)

    low = asyncio.create_task(waiter("low", "default"))
    await _until(lambda: len(router_queue(router)) == 1)
    vip = asyncio.create_task(waiter("vip", "vip"))  # came later, goes first
    await _until(lambda: len(router_queue(router)) == 2)
    a.go.set()
    await asyncio.gather(low, vip)
    assert order == ["vip", "low"]
    b.go.set()
    await asyncio.gather(*held)


async def test_an_unreachable_ratelimit_service_does_not_block_requests() -> None:
    router, a, _ = _router(FakeLeases(broken=True))
    a.go.set()
    answer = await _complete(router)
    assert answer.error is None and answer.route.channel == "a"


async def test_without_caps_no_lease_is_asked_for() -> None:
    leases = FakeLeases()
    config = GatewayConfig((ModelEntry("demo"),), (ChannelEntry("a", "fake", ("demo",)),), {})
    router = ModelRouter(config, {"a": FakeProvider()}, caps=CapGate(leases, QueueConfig()))
    assert (await _complete(router)).error is None
    assert leases.acquired == []
    assert Counter(leases.released) == Counter()


def router_queue(router: ModelRouter) -> CapacityQueue:
    """The router's wait queue (through its gate)."""
    gate = router._failover._parts.caps
    assert gate is not None
    return gate.queue
