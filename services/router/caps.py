"""Per-channel and per-upstream-key caps, held as leases on the ratelimit service.

A target (channel, key) whose channel sets `caps` or `key_caps` is tried only under a
lease: one AcquireLease with the rules [("channel", name)] and [("upstream_key", key id)]
(RPM, TPM with the request's token estimate, concurrency), released when the try ends.
A denied target is skipped like an unavailable one. When every target is at its caps,
the request waits in the CapacityQueue (services/router/queue.py) for its turn, up to
`queue.max_wait_s` and never past its deadline, then fails with 429 `upstream_capacity`.
Targets without caps, or a router without RATELIMIT_SERVICE_ADDR, never call the
ratelimit service. When it cannot be reached the try goes ahead without a lease (fail
open, as the edge does for its own limits), counted and logged.

Who is asking (`Demand`: request id, account, group, token estimate) is request-scoped
data the servicer sets for the task serving the RPC, like the request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from prometheus_client import Counter

from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from services.common.context import get_request_id
from services.common.gateway_config import Caps, QueueConfig
from services.router.balancer import Target
from services.router.channels import NO_KEY_ID
from services.router.outcomes import CompletionError
from services.router.queue import MAX_POLL_S, CapacityQueue, Ticket

logger = logging.getLogger(__name__)

CAP_DENIALS = Counter(
    "apirelay_router_cap_denials",
    "Tries refused by a channel's or key's caps, by channel and limit (rpm, tpm, "
    "concurrency).", ["channel", "limit"])
CAP_ERRORS = Counter(
    "apirelay_router_cap_lease_errors",
    "Cap leases the ratelimit service could not decide (the try went ahead).")
UPSTREAM_CAPACITY = CompletionError(
    429, "rate_limit_error", "upstream_capacity",
    "Every upstream for this model is at its capacity; retry later.")
# The router's leases, apart from the edge's (whose subjects are API key ids).
LEASE_SUBJECT = "router"
# A lease expires by itself this long after its try's timeout, if its release is lost.
LEASE_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Demand:
    """Who asks and how much: what a cap lease and a place in the queue need
    (`estimate` gives the request's token estimate, computed only when needed)."""

    request_id: str = ""
    group: str = ""
    estimate: Callable[[], int] = field(default=lambda: 0, compare=False)


_demand: contextvars.ContextVar[Demand | None] = contextvars.ContextVar("demand", default=None)


def set_demand(demand: Demand) -> contextvars.Token[Demand | None]:
    """Make `demand` the current request's (for the task serving it)."""
    return _demand.set(demand)


def current_demand() -> Demand:
    """The current request's demand (an empty one outside a request)."""
    return _demand.get() or Demand()


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease decision: held (`lease_id`), or refused with when to retry."""

    lease_id: str = ""
    retry_after_s: float = 0.0
    denied_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True when the lease is held (or there was nothing to hold)."""
        return not self.denied_by


class LeaseStore(Protocol):
    """Where cap leases are decided (the ratelimit service, or a fake in tests)."""

    async def acquire(self, lease_id: str, rules: list[ratelimit_pb2.LimitRule],
                      tokens: int, ttl_s: float) -> Grant:
        """Take one lease on every rule, all or nothing."""
        ...

    async def release(self, lease_id: str) -> None:
        """Free a lease (its token estimate stays)."""
        ...


class RateLimitLeases:
    """LeaseStore over RateLimitService; `timeout_s` bounds each call."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 1.0) -> None:
        self._stub: Any = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        self._timeout_s = timeout_s

    async def acquire(self, lease_id: str, rules: list[ratelimit_pb2.LimitRule],
                      tokens: int, ttl_s: float) -> Grant:
        """One AcquireLease; a denial carries the soonest reset of the limits over."""
        request = ratelimit_pb2.AcquireLeaseRequest(
            request_id=lease_id, subject=LEASE_SUBJECT, estimated_tokens=tokens, rules=rules)
        request.lease_ttl.FromMilliseconds(int(ttl_s * 1000))
        response = await self._stub.AcquireLease(request, timeout=self._timeout_s)
        if response.decision == ratelimit_pb2.LEASE_DECISION_ALLOWED:
            return Grant(response.lease_id)
        over = [(rule, s) for rule, s in zip(rules, response.rule_statuses, strict=False)
                if s.over_limit or not s.remaining]
        resets = [s.reset_after.ToMilliseconds() / 1000 for _, s in over if s.over_limit]
        names = tuple(_kind(rule.kind) for rule, _ in over) or ("unknown",)
        return Grant("", min(resets, default=0.0), names)

    async def release(self, lease_id: str) -> None:
        """One ReleaseLease keeping the estimate (-1: the router does not see usage)."""
        await self._stub.ReleaseLease(
            ratelimit_pb2.ReleaseLeaseRequest(lease_id=lease_id, subject=LEASE_SUBJECT,
                                              actual_tokens=-1),
            timeout=self._timeout_s)


def cap_rules(target: Target) -> list[ratelimit_pb2.LimitRule]:
    """The rules of a target's channel and key caps (empty when it has none)."""
    channel = target.channel
    # A keyless target's id ("none") is shared by every keyless channel: qualify it.
    key = f"{channel.name}/{NO_KEY_ID}" if target.key_id == NO_KEY_ID else target.key_id
    return [*_rules(("channel", channel.name), channel.caps),
            *_rules(("upstream_key", key), channel.key_caps)]


def _rules(entry: tuple[str, str], caps: Caps) -> list[ratelimit_pb2.LimitRule]:
    descriptor = ratelimit_pb2.Descriptor(
        entries=[ratelimit_pb2.DescriptorEntry(key=entry[0], value=entry[1])])
    kinds = ((ratelimit_pb2.LIMIT_KIND_RPM, caps.rpm), (ratelimit_pb2.LIMIT_KIND_TPM, caps.tpm),
             (ratelimit_pb2.LIMIT_KIND_CONCURRENCY, caps.concurrency))
    return [ratelimit_pb2.LimitRule(descriptor=descriptor, kind=kind, limit=limit)
            for kind, limit in kinds if limit]


def _kind(kind: int) -> str:
    return ratelimit_pb2.LimitKind.Name(kind).removeprefix("LIMIT_KIND_").lower()  # type: ignore[arg-type]


class CapGate:
    """Takes and frees cap leases for every walk of a router, and owns the wait queue."""

    def __init__(self, store: LeaseStore, queue: QueueConfig) -> None:
        self._store = store
        self.config = queue
        self.queue = CapacityQueue(queue.max_size)
        self._releasing: set[asyncio.Task[None]] = set()

    def priority(self, group: str) -> int:
        """The queue priority of an account group."""
        return self.config.priorities.get(group, 0)

    async def acquire(self, target: Target, lease_id: str, tokens: Callable[[], int],
                      ttl_s: float) -> Grant:
        """A lease for one try on `target`; an empty grant when it has no caps."""
        rules = cap_rules(target)
        if not rules:
            return Grant()
        try:
            grant = await self._store.acquire(lease_id, rules, tokens(), ttl_s + LEASE_MARGIN_S)
        except grpc.aio.AioRpcError as exc:
            CAP_ERRORS.inc()
            logger.warning("cap lease not decided, trying without: channel=%s code=%s",
                           target.channel.name, exc.code())
            return Grant()
        for limit in grant.denied_by:
            CAP_DENIALS.labels(target.channel.name, limit).inc()
        return grant

    def release(self, lease_id: str) -> None:
        """Free a lease in the background; waiters get their turn once it is freed."""
        task = asyncio.get_running_loop().create_task(self._release(lease_id))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, lease_id: str) -> None:
        try:
            await self._store.release(lease_id)
        except grpc.aio.AioRpcError as exc:
            # The lease expires by itself at its TTL.
            CAP_ERRORS.inc()
            logger.warning("cap lease not released: code=%s", exc.code())
        finally:
            self.queue.notify()



class CapTurn:
    """One walk's side of the caps: its lease, the targets found at their caps, its
    place in the queue. Without a gate everything is admitted and nothing waits."""

    def __init__(self, gate: CapGate | None, clock: Callable[[], float]) -> None:
        self._gate = gate
        self._clock = clock
        self._demand = current_demand()
        self.capped: list[Target] = []
        self.exhausted = False
        self._lease = ""
        self._leases = 0
        self._retry_after = MAX_POLL_S
        self._ticket: Ticket | None = None
        self._estimate: int | None = None

    async def admit(self, target: Target, ttl_s: float) -> bool:
        """Take `target`'s lease; False (and `target` is capped) when its caps refuse."""
        if self._gate is None:
            return True
        self._leases += 1
        request_id = self._demand.request_id or get_request_id()
        grant = await self._gate.acquire(target, f"{request_id}.cap{self._leases}",
                                         self._tokens, ttl_s)
        if grant.allowed:
            self._lease = grant.lease_id
            self._leave(served=True)
            return True
        self.capped.append(target)
        if grant.retry_after_s > 0:
            self._retry_after = min(self._retry_after, grant.retry_after_s)
        return False

    async def wait(self, deadline: float | None) -> bool:
        """Wait in the queue when targets were at their caps; True to try them again,
        False when there is nothing to wait for or the wait is over (`exhausted`)."""
        gate = self._gate
        if gate is None or not self.capped:
            return False
        if self._ticket is None:
            wait_s = gate.config.max_wait_s
            if deadline is not None:
                wait_s = min(wait_s, deadline - self._clock())
            self._ticket = gate.queue.join(gate.priority(self._demand.group),
                                           gate.queue.now() + wait_s)
            if self._ticket is None:
                self.exhausted = True
                return False
        if not await gate.queue.wait(self._ticket, self._retry_after):
            self.exhausted = True
            self._leave(served=False)
            return False
        self.capped, self._retry_after = [], MAX_POLL_S
        return True

    def _tokens(self) -> int:
        if self._estimate is None:
            self._estimate = self._demand.estimate()
        return self._estimate

    def release(self) -> None:
        """The try ended: free its lease."""
        if self._gate is not None and self._lease:
            self._gate.release(self._lease)
        self._lease = ""

    def close(self) -> None:
        """The request is over: free the lease, leave the queue."""
        self.release()
        self._leave(served=False)

    def _leave(self, *, served: bool) -> None:
        if self._gate is not None and self._ticket is not None:
            self._gate.queue.leave(self._ticket, served=served)
            self._ticket = None
