"""Fault injection between a gRPC caller and a real server: a proxy that loses answers.

`FaultProxy` is a gRPC server on 127.0.0.1 that forwards every unary call, as raw bytes,
to a target server (request id metadata and the remaining deadline included). For the
methods its `Faults` policy names it sometimes throws the answer away after the target
has executed the call and answered, and fails the call with UNAVAILABLE instead: the
write happened, the caller does not know it. That is the fault an idempotency key must
survive (a lost response; a timeout after the commit). It may also lose calls before
they reach the target (UNAVAILABLE, nothing written), so that a caller that does not
retry is caught too: with lost answers alone, giving up would still look exactly-once.

The losses are drawn from a seeded random generator. `max_per_key` caps how often the
calls of one idempotency key are lost (the keys come from `keys_of`), for callers that
give up after a bounded number of retries. `sent` counts the executed calls per key, so
a test can see that a lost answer was followed by a replay.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from apirelay.billing.v1 import billing_pb2

LOST_ANSWER_DETAILS = "fault injected: the answer was lost"
LOST_REQUEST_DETAILS = "fault injected: the call was lost"

# The idempotency keys a call carries, from its method and request bytes.
KeysOf = Callable[[str, bytes], Sequence[str]]


def no_keys(_method: str, _request: bytes) -> Sequence[str]:
    """A call with no idempotency key (never capped)."""
    return ()


@dataclass
class Faults:
    """Which calls of `methods` (full names) to lose, seeded: answers at `answer_rate`
    (executed, answer lost) and requests at `request_rate` (never executed)."""

    methods: Collection[str]
    answer_rate: float
    seed: int
    keys_of: KeysOf = no_keys
    request_rate: float = 0.0
    max_per_key: int | None = None
    forwarded: Counter[str] = field(default_factory=Counter)  # calls executed, by method
    lost_answers: Counter[str] = field(default_factory=Counter)
    lost_requests: Counter[str] = field(default_factory=Counter)
    # Answers lost per (method, key): how often each caller was left in the dark.
    lost: Counter[tuple[str, str]] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)  # calls of `methods` executed, by key
    _random: random.Random = field(init=False)
    _losses_of_key: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def lose_request(self, method: str, request: bytes) -> bool:
        """Decide (and count) whether this call is lost before it reaches the target."""
        if method not in self.methods or not self._draw(self.request_rate, method, request):
            return False
        self.lost_requests[method] += 1
        return True

    def lose_answer(self, method: str, request: bytes) -> bool:
        """Count an executed call; decide whether its answer is lost."""
        self.forwarded[method] += 1
        if method not in self.methods:
            return False
        keys = self.keys_of(method, request)
        self.sent.update(keys)
        if not self._draw(self.answer_rate, method, request, keys):
            return False
        self.lost.update((method, key) for key in keys)
        self.lost_answers[method] += 1
        return True

    def _draw(
        self, rate: float, method: str, request: bytes, keys: Sequence[str] | None = None
    ) -> bool:
        if self._random.random() >= rate:
            return False
        keys = self.keys_of(method, request) if keys is None else keys
        if self.max_per_key is not None and any(
            self._losses_of_key[key] >= self.max_per_key for key in keys
        ):
            return False
        self._losses_of_key.update(keys)
        return True


class _Forwarder(grpc.GenericRpcHandler):
    """Serves every unary-unary method by forwarding it (no (de)serialisation: bytes)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return await self._proxy.forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(forward)


class FaultProxy:
    """A gRPC proxy to `target` that loses calls and answers as `policy` says."""

    def __init__(self, target: str, policy: Faults) -> None:
        self.policy = policy
        self._target = target
        self._channel: grpc.aio.Channel | None = None
        self._server: grpc.aio.Server | None = None
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self.port = 0

    @property
    def address(self) -> str:
        """Where callers connect instead of the target."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Connect to the target and listen on a free port of 127.0.0.1."""
        self._channel = grpc.aio.insecure_channel(self._target)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Forwarder(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        """Stop listening and close the channel to the target."""
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    async def forward(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """Run the call on the target; then pass its outcome on, or lose it."""
        if self._channel is None:
            raise RuntimeError("the proxy is not started")
        if self.policy.lose_request(method, request):
            await context.abort(grpc.StatusCode.UNAVAILABLE, LOST_REQUEST_DETAILS)
        call = self._calls.get(method)
        if call is None:
            call = self._calls[method] = self._channel.unary_unary(method)
        metadata = tuple((key, value) for key, value in context.invocation_metadata() or ())
        remaining = context.time_remaining()
        try:
            answer: bytes = await call(request, metadata=metadata, timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            # An error answer is an answer too: it may be lost the same way.
            if self.policy.lose_answer(method, request):
                await context.abort(grpc.StatusCode.UNAVAILABLE, LOST_ANSWER_DETAILS)
            await context.abort(exc.code(), exc.details() or "")
        if self.policy.lose_answer(method, request):
            await context.abort(grpc.StatusCode.UNAVAILABLE, LOST_ANSWER_DETAILS)
        return answer


_BILLING = "/" + billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name + "/"
RESERVE = _BILLING + "ReserveCredit"
SETTLE = _BILLING + "SettleCredit"
RESERVE_BATCH = _BILLING + "ReserveCredits"
SETTLE_BATCH = _BILLING + "SettleCredits"


def billing_request_ids(method: str, request: bytes) -> Sequence[str]:
    """The request ids (idempotency keys) of a BillingService reserve or settle call."""
    if method == RESERVE:
        return (billing_pb2.ReserveCreditRequest.FromString(request).request_id,)
    if method == SETTLE:
        return (billing_pb2.SettleCreditRequest.FromString(request).request_id,)
    if method == RESERVE_BATCH:
        batch = billing_pb2.ReserveCreditsRequest.FromString(request)
        return tuple(item.request_id for item in batch.reservations)
    if method == SETTLE_BATCH:
        settles = billing_pb2.SettleCreditsRequest.FromString(request)
        return tuple(item.request_id for item in settles.settlements)
    return ()
