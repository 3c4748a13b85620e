"""Fake AuthService, RateLimitService, BillingService and RouterService for edge tests.

What they answer with is built by tests.grpc.edge.messages.

They record every call (with its `x-request-id` metadata) and are told what to answer
by the test; all four are served by one real grpc.aio server on 127.0.0.1:0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.common.v1 import batch_pb2, usage_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from tests.grpc.edge.messages import (
    MODEL,
    OTHER_MODEL,
    Abort,
    Batch,
    Hang,
    Pause,
    StreamStep,
    charge,
    chunk,
    completion_body,
    end,
    relayed,
    tariff,
    usage,
)

SECRET = "sk-test-good"
LIMITED_SECRET = "sk-test-limited"
KEY_ID = "key_1"
ACCOUNT_ID = "acct_1"
OK_RL = batch_pb2.ItemStatus(code=0)
OK_BILLING = batch_pb2.ItemStatus(code=0)


def _rid(context: Any) -> str:
    return str(dict(context.invocation_metadata() or ()).get("x-request-id", ""))


def principal(key_id: str = KEY_ID, allowed: tuple[str, ...] = ()) -> auth_pb2.Principal:
    """A principal with small limits."""
    return auth_pb2.Principal(
        key_id=key_id, account_id=ACCOUNT_ID, account_name="acme", group="default",
        allowed_models=list(allowed), limits=auth_pb2.KeyLimits(rpm=60, tpm=100_000, concurrency=4),
    )


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    """Knows two keys: SECRET (every model) and LIMITED_SECRET (only OTHER_MODEL)."""

    def __init__(self) -> None:
        self.keys = {SECRET: principal(), LIMITED_SECRET: principal("key_2", (OTHER_MODEL,))}
        self.revoked: set[str] = set()
        self.calls: list[str] = []
        self.fail: grpc.StatusCode | None = None

    async def AuthenticateKey(self, request: Any, context: Any) -> Any:
        self.calls.append(_rid(context))
        if self.fail is not None:
            await context.abort(self.fail, "auth store down")
        if request.secret in self.revoked:
            return auth_pb2.AuthenticateKeyResponse(decision=auth_pb2.AUTH_DECISION_REVOKED)
        found = self.keys.get(request.secret)
        if found is None:
            return auth_pb2.AuthenticateKeyResponse(decision=auth_pb2.AUTH_DECISION_UNKNOWN_KEY)
        return auth_pb2.AuthenticateKeyResponse(
            decision=auth_pb2.AUTH_DECISION_ALLOWED, principal=found
        )


class FakeRateLimit(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """Allows unless `deny_by` is set; records acquires, releases and batch calls.

    Only the batch RPCs are served (the edge must not use the single ones): `acquires`
    keeps each item with its call's `x-request-id`, `batches` the size of each call.
    """

    def __init__(self) -> None:
        self.deny_by: ratelimit_pb2.LimitKind.ValueType = ratelimit_pb2.LIMIT_KIND_UNSPECIFIED
        self.reset_after_s = 2.2
        self.fail: grpc.StatusCode | None = None
        self.acquires: list[tuple[str, Any]] = []
        self.releases: list[Any] = []
        self.batches: list[int] = []
        self.delay_s = 0.0
        self.events: list[tuple[str, str]] = []  # ("acquired" | "released", lease id)

    async def AcquireLeases(self, request: Any, context: Any) -> Any:
        self.batches.append(len(request.leases))
        await asyncio.sleep(self.delay_s)
        self.acquires.extend((_rid(context), item) for item in request.leases)
        self.events.extend(("acquired", item.request_id) for item in request.leases)
        if self.fail is not None:
            await context.abort(self.fail, "redis down")
        return ratelimit_pb2.AcquireLeasesResponse(results=[
            ratelimit_pb2.AcquireLeaseResult(status=OK_RL, response=self._decide(item))
            for item in request.leases
        ])

    async def ReleaseLeases(self, request: Any, context: Any) -> Any:
        self.batches.append(len(request.leases))
        self.releases.extend(request.leases)
        self.events.extend(("released", item.lease_id) for item in request.leases)
        response = ratelimit_pb2.ReleaseLeaseResponse(released=True)
        return ratelimit_pb2.ReleaseLeasesResponse(results=[
            ratelimit_pb2.ReleaseLeaseResult(status=OK_RL, response=response)
            for _ in request.leases
        ])

    def _decide(self, request: Any) -> ratelimit_pb2.AcquireLeaseResponse:
        """One status per rule: RPM waits `reset_after_s`, TPM 250 ms with 10,000 used;
        the rules of kind `deny_by` are over the limit."""
        seconds = int(self.reset_after_s)
        reset = Duration(seconds=seconds, nanos=int((self.reset_after_s - seconds) * 1e9))
        statuses = []
        for rule in request.rules:
            over = rule.kind == self.deny_by
            used = 10_000 if rule.kind == ratelimit_pb2.LIMIT_KIND_TPM else 1
            status = ratelimit_pb2.LimitStatus(
                kind=rule.kind, limit=rule.limit, over_limit=over,
                remaining=0 if over else rule.limit - used,
                reset_after=Duration(nanos=250_000_000)
                if rule.kind == ratelimit_pb2.LIMIT_KIND_TPM else reset,
            )
            statuses.append(status)
        if self.deny_by:
            return ratelimit_pb2.AcquireLeaseResponse(
                decision=ratelimit_pb2.LEASE_DECISION_DENIED, denied_by=self.deny_by,
                rule_statuses=statuses,
            )
        return ratelimit_pb2.AcquireLeaseResponse(
            decision=ratelimit_pb2.LEASE_DECISION_ALLOWED, rule_statuses=statuses,
            lease_id=request.request_id,
        )


class FakeBilling(billing_pb2_grpc.BillingServiceServicer):
    """Reserves with `decision` at `tariff`; records reserves, settles, releases and batches.

    Reserve and settle are served only as batch RPCs; ReleaseCredit stays single. A
    settle charges by the shared formula, as billing does.
    """

    def __init__(self) -> None:
        self.decision = billing_pb2.RESERVE_DECISION_RESERVED
        self.tariff: billing_pb2.Tariff | None = tariff()
        self.fail: grpc.StatusCode | None = None
        self.reserves: list[Any] = []
        self.settles: list[Any] = []
        self.releases: list[Any] = []
        self.batches: list[int] = []
        self.delay_s = 0.0
        self.settle_fail: grpc.StatusCode | None = None  # SettleCredits and ReleaseCredit
        self.codes: dict[str, int] = {}  # redeemable code -> nano-USD
        self.redeemed: dict[str, str] = {}  # code -> account
        self.expired: set[str] = set()
        self.balance = 5 * 10**9

    async def ReleaseCredit(self, request: Any, context: Any) -> Any:
        if self.settle_fail is not None:
            await context.abort(self.settle_fail, "billing down")
        self.releases.append(request)
        return billing_pb2.ReleaseCreditResponse(released=True)

    async def RedeemCode(self, request: Any, context: Any) -> Any:
        if request.code not in self.codes:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such code")
        if request.code in self.expired:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this code has expired")
        if self.redeemed.setdefault(request.code, request.account_id) != request.account_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this code was redeemed already")
        amount = self.codes[request.code]
        self.balance += amount
        return billing_pb2.RedeemCodeResponse(
            amount_nanos=amount,
            wallet=billing_pb2.Wallet(account_id=request.account_id, balance_nanos=self.balance))

    async def ReserveCredits(self, request: Any, context: Any) -> Any:
        self.batches.append(len(request.reservations))
        await asyncio.sleep(self.delay_s)
        self.reserves.extend(request.reservations)
        if self.fail is not None:
            await context.abort(self.fail, "database down")
        return billing_pb2.ReserveCreditsResponse(results=[
            billing_pb2.ReserveCreditResult(status=OK_BILLING, response=self._reserve())
            for _ in request.reservations
        ])

    async def SettleCredits(self, request: Any, context: Any) -> Any:
        self.batches.append(len(request.settlements))
        await asyncio.sleep(self.delay_s)
        if self.settle_fail is not None:
            await context.abort(self.settle_fail, "billing down")
        self.settles.extend(request.settlements)
        return billing_pb2.SettleCreditsResponse(results=[
            billing_pb2.SettleCreditResult(status=OK_BILLING, response=self._settle(item))
            for item in request.settlements
        ])

    def _settle(self, item: Any) -> billing_pb2.SettleCreditResponse:
        charged = charge(item.usage, self.tariff) if self.tariff is not None else 10
        return billing_pb2.SettleCreditResponse(charged_nanos=charged, newly_settled=True)

    def _reserve(self) -> billing_pb2.ReserveCreditResponse:
        if self.decision != billing_pb2.RESERVE_DECISION_RESERVED:
            return billing_pb2.ReserveCreditResponse(decision=self.decision)
        return billing_pb2.ReserveCreditResponse(
            decision=self.decision, held_nanos=1000, tariff=self.tariff
        )


@dataclass
class FakeRouter(router_pb2_grpc.RouterServiceServicer):
    """Serves a catalog, a canned completion and a scripted stream."""

    models: list[router_pb2.Model] = field(default_factory=lambda: [
        router_pb2.Model(id=MODEL, owned_by="acme", created=1, max_output_tokens=100),
        router_pb2.Model(id=OTHER_MODEL, owned_by="acme", created=2, max_output_tokens=50),
    ])
    response: router_pb2.CreateChatCompletionResponse = field(
        default_factory=lambda: router_pb2.CreateChatCompletionResponse(
            body=completion_body("Hi there"), usage=usage(),
            usage_source=usage_pb2.USAGE_SOURCE_UPSTREAM,
            route=router_pb2.RouteInfo(channel="chan-a"),
        )
    )
    script: list[StreamStep] = field(default_factory=lambda: [chunk("Hel"), chunk("lo"), end()])
    relay_response: router_pb2.RelayResponse = field(
        default_factory=lambda: relayed(b'{"object":"list","data":[]}')
    )
    relay_content_type: str = ""  # of a StreamRelay's first item
    fail: grpc.StatusCode | None = None
    requests: list[Any] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    list_calls: int = 0
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def ListModels(self, request: Any, context: Any) -> Any:
        self.list_calls += 1
        return router_pb2.ListModelsResponse(models=self.models)

    async def CreateChatCompletion(self, request: Any, context: Any) -> Any:
        await self._unary(request, context)
        return self.response

    async def Relay(self, request: Any, context: Any) -> Any:
        await self._unary(request, context)
        return self.relay_response

    async def _unary(self, request: Any, context: Any) -> None:
        """Record the call; fail it with `fail`, or hang when the script holds a Hang."""
        self.requests.append(request)
        self.metadata.append(_rid(context))
        if self.fail is not None:
            await context.abort(self.fail, "upstream at 10.0.0.7 exploded")
        try:
            if any(isinstance(step, Hang) for step in self.script):
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def StreamChatCompletion(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        self.metadata.append(_rid(context))
        async for chunks, end_ in self._play(context):
            yield router_pb2.StreamChatCompletionResponse(chunks=chunks, end=end_)

    async def StreamRelay(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        self.metadata.append(_rid(context))
        content_type = self.relay_content_type
        async for pieces, end_ in self._play(context):
            yield router_pb2.StreamRelayResponse(
                pieces=pieces, end=end_, content_type=content_type
            )
            content_type = ""

    async def _play(
        self, context: Any
    ) -> AsyncIterator[tuple[list[bytes], router_pb2.StreamEnd | None]]:
        try:
            for step in self.script:
                if isinstance(step, Hang):
                    await asyncio.Event().wait()
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Abort):
                    await context.abort(step.code, "router broke at 10.0.0.7")
                elif isinstance(step, bytes):
                    yield [step], None
                elif isinstance(step, Batch):
                    yield step.chunks, step.end
                else:
                    yield [], step
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@dataclass
class FakeServices:
    """The four fakes on one server."""

    auth: FakeAuth
    ratelimit: FakeRateLimit
    billing: FakeBilling
    router: FakeRouter
    server: grpc.aio.Server
    address: str


async def start_fakes() -> FakeServices:
    """Serve fresh fakes on 127.0.0.1:0."""
    # The generated servicer stubs declare every RPC abstract; the fakes implement the
    # ones the edge calls.
    auth, billing = FakeAuth(), FakeBilling()  # type: ignore[abstract]
    ratelimit, router = FakeRateLimit(), FakeRouter()
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(ratelimit, server)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(billing, server)
    router_pb2_grpc.add_RouterServiceServicer_to_server(router, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return FakeServices(auth, ratelimit, billing, router, server, f"127.0.0.1:{port}")



def from_client(request_id: str) -> str:
    """The client's x-request-id an internal request id was made from (it adds ".<hex>")."""
    return request_id.rsplit(".", 1)[0]
