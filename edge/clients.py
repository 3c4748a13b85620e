"""Typed wrappers over the four service stubs (the router's in edge.router_client).

Every call carries a deadline and the request id as `x-request-id` metadata, and a
failed call is converted here, once, from `grpc.aio.AioRpcError` into UpstreamError.
The hot-path calls (lease acquire and release, credit reserve and settle) go through
Batchers to the batch RPCs: a batch call carries its first item's request id (each
item carries its own), and an item's failure becomes the UpstreamError the single RPC
would have raised (edge.batch_results).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from edge import translate
from edge.batch_results import TaggedRelease, charged, outcomes, released
from edge.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_IN_FLIGHT, Batcher
from edge.domain import NO_UNITS, AuthOutcome, Lease, LimitRule, Principal, Reservation
from edge.limits import LimitPolicy
from edge.router_client import RouterClient, metadata, unary
from services.common.limits_config import LimitsConfig


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How far a client's Batchers may go: calls in flight at once, items per call."""

    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_batch: int = DEFAULT_MAX_BATCH


class AuthClient:
    """AuthService: resolve a key secret."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self._stub: Any = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout = timeout_s

    async def authenticate(
        self, secret: str, request_id: str
    ) -> tuple[AuthOutcome, Principal | None]:
        """The decision for `secret` and, when allowed, its principal."""
        call = self._stub.AuthenticateKey(
            auth_pb2.AuthenticateKeyRequest(secret=secret),
            timeout=self._timeout, metadata=metadata(request_id),
        )
        return translate.auth_outcome(await unary("auth", call))


NO_LEASE = Lease(allowed=True, lease_id="", denied=None, states=())
DEFAULT_POLICY = LimitPolicy(LimitsConfig())


async def _empty_lease() -> Lease:
    return NO_LEASE


def _same(response: ratelimit_pb2.AcquireLeaseResponse) -> ratelimit_pb2.AcquireLeaseResponse:
    return response


class RateLimitClient:
    """RateLimitService: acquire (every limit of a request at once) and release, batched."""

    def __init__(
        self, channel: grpc.aio.Channel, timeout_s: float, limits: BatchLimits = BatchLimits(),
        policy: LimitPolicy = DEFAULT_POLICY,
    ) -> None:
        self._stub: Any = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        self._timeout = timeout_s
        self._policy = policy
        self._acquires = Batcher[ratelimit_pb2.AcquireLeaseRequest,
                                 ratelimit_pb2.AcquireLeaseResponse](
            self._acquire_batch, "acquire_lease",
            max_in_flight=limits.max_in_flight, max_batch=limits.max_batch,
        )
        self._releases = Batcher[TaggedRelease, bool](
            self._release_batch, "release_lease",
            max_in_flight=limits.max_in_flight, max_batch=limits.max_batch,
        )

    async def acquire(
        self, request_id: str, principal: Principal, model: str, estimated_tokens: int
    ) -> Lease:
        """Check and consume every limit of the request (key, account, key and model) at once.

        A request without limits has nothing to count: no call is made, the lease is empty.
        """
        _, lease = self.start_acquire(request_id, principal, model, estimated_tokens)
        return await lease

    def start_acquire(
        self, request_id: str, principal: Principal, model: str, estimated_tokens: int
    ) -> tuple[str, Coroutine[Any, Any, Lease]]:
        """The lease an acquire may hold even if its answer is lost, and the acquire.

        The limiter uses the request id as the lease id; "" when no call is sent. The
        request's limits are looked up once for both.
        """
        rules = self._policy.rules(principal, model)
        if not rules:
            return "", _empty_lease()
        request = translate.acquire_request(request_id, principal, model, rules, estimated_tokens)
        return request_id, self._lease(request, rules)

    async def _lease(
        self, request: ratelimit_pb2.AcquireLeaseRequest, rules: tuple[LimitRule, ...]
    ) -> Lease:
        return translate.lease(await self._acquires.submit(request), rules)

    async def release(
        self, request_id: str, lease_id: str, subject: str, actual_tokens: int
    ) -> bool:
        """Free the lease's slot and replace its token estimate with `actual_tokens`."""
        request = ratelimit_pb2.ReleaseLeaseRequest(
            lease_id=lease_id, subject=subject, actual_tokens=actual_tokens
        )
        return await self._releases.submit(TaggedRelease(request_id, request))

    async def _acquire_batch(
        self, items: Sequence[ratelimit_pb2.AcquireLeaseRequest]
    ) -> list[ratelimit_pb2.AcquireLeaseResponse | Exception]:
        call = self._stub.AcquireLeases(
            ratelimit_pb2.AcquireLeasesRequest(leases=items), timeout=self._timeout,
            metadata=metadata(items[0].request_id),
        )
        results = (await unary("ratelimit", call)).results
        return outcomes("ratelimit", results, len(items), _same)

    async def _release_batch(self, items: Sequence[TaggedRelease]) -> list[bool | Exception]:
        call = self._stub.ReleaseLeases(
            ratelimit_pb2.ReleaseLeasesRequest(leases=[item.message for item in items]),
            timeout=self._timeout,
            metadata=metadata(items[0].request_id),
        )
        results = (await unary("ratelimit", call)).results
        return outcomes("ratelimit", results, len(items), released)


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redeemed code: the amount credited and the wallet's balance after it."""

    credited_nanos: int
    balance_nanos: int


class BillingClient:
    """BillingService: reserve and settle holds (batched), release them, redeem codes."""

    def __init__(
        self, channel: grpc.aio.Channel, timeout_s: float, limits: BatchLimits = BatchLimits()
    ) -> None:
        self._stub: Any = billing_pb2_grpc.BillingServiceStub(channel)
        self._timeout = timeout_s
        self._reserves = Batcher[billing_pb2.ReserveCreditRequest, Reservation](
            self._reserve_batch, "reserve_credit",
            max_in_flight=limits.max_in_flight, max_batch=limits.max_batch,
        )
        self._settles = Batcher[billing_pb2.SettleCreditRequest, int](
            self._settle_batch, "settle_credit",
            max_in_flight=limits.max_in_flight, max_batch=limits.max_batch,
        )

    async def reserve(
        self, request_id: str, principal: Principal, model: str,
        prompt_tokens: int, max_completion_tokens: int,
        max_units: Mapping[str, int] = NO_UNITS,
    ) -> Reservation:
        """Hold the request's maximum cost (tokens and units) on the account's wallet."""
        request = billing_pb2.ReserveCreditRequest(
            request_id=request_id, account_id=principal.account_id, key_id=principal.key_id,
            group=principal.group, model=model, prompt_tokens=prompt_tokens,
            max_completion_tokens=max_completion_tokens,
            max_units=translate.unit_usages(max_units),
        )
        return await self._reserves.submit(request)

    async def settle(self, request: billing_pb2.SettleCreditRequest) -> int:
        """Charge the hold for the request's usage; returns the nano-USD charged."""
        return await self._settles.submit(request)

    async def settle_many(
        self, requests: Sequence[billing_pb2.SettleCreditRequest]
    ) -> list[int | Exception]:
        """Settle many holds in one SettleCredits call (the spool's drain): per-item outcomes.

        A failure of the whole call raises its UpstreamError.
        """
        return await self._settle_batch(requests)

    async def release(self, request: billing_pb2.ReleaseCreditRequest) -> bool:
        """Drop the request's hold without charging."""
        call = self._stub.ReleaseCredit(
            request, timeout=self._timeout, metadata=metadata(request.request_id),
        )
        return bool((await unary("billing", call)).released)

    async def redeem(self, account_id: str, code: str, request_id: str) -> Redemption:
        """Credit the account with a redemption code's amount (once per code)."""
        call = self._stub.RedeemCode(
            billing_pb2.RedeemCodeRequest(account_id=account_id, code=code),
            timeout=self._timeout, metadata=metadata(request_id),
        )
        reply = await unary("billing", call)
        return Redemption(int(reply.amount_nanos), int(reply.wallet.balance_nanos))

    async def _reserve_batch(
        self, items: Sequence[billing_pb2.ReserveCreditRequest]
    ) -> list[Reservation | Exception]:
        call = self._stub.ReserveCredits(
            billing_pb2.ReserveCreditsRequest(reservations=items), timeout=self._timeout,
            metadata=metadata(items[0].request_id),
        )
        results = (await unary("billing", call)).results
        return outcomes("billing", results, len(items), translate.reservation)

    async def _settle_batch(
        self, items: Sequence[billing_pb2.SettleCreditRequest]
    ) -> list[int | Exception]:
        call = self._stub.SettleCredits(
            billing_pb2.SettleCreditsRequest(settlements=items), timeout=self._timeout,
            metadata=metadata(items[0].request_id),
        )
        results = (await unary("billing", call)).results
        return outcomes("billing", results, len(items), charged)


@dataclass(frozen=True, slots=True)
class Clients:
    """The four service clients and the channels under them."""

    auth: AuthClient
    ratelimit: RateLimitClient
    billing: BillingClient
    router: RouterClient
    channels: Sequence[tuple[str, grpc.aio.Channel]]

    async def close(self) -> None:
        """Close every channel."""
        await asyncio.gather(*(channel.close() for _, channel in self.channels))

    def unhealthy(self) -> list[str]:
        """Names of the services whose channel is failing to connect."""
        bad = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
        return [name for name, ch in self.channels if ch.get_state(try_to_connect=True) in bad]
