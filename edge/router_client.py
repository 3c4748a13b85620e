"""RouterService: chat completions, the other OpenAI endpoints (Relay), the catalog.

Every call carries a deadline and the request id as `x-request-id` metadata; a failed
call becomes UpstreamError here, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from edge import translate
from edge.domain import Completion, ModelInfo, Operation, Principal, StreamItem
from edge.errors import UpstreamError
from services.common.context import REQUEST_ID_HEADER

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


def metadata(request_id: str) -> Metadata:
    """The call metadata carrying the request id."""
    return ((REQUEST_ID_HEADER, request_id),)


async def unary(service: str, call: Awaitable[T]) -> T:
    """Await a unary call; a failed one raises UpstreamError."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError(service, exc.code(), exc.details() or "") from None


class RouterStream:
    """One running streaming call (chat or relayed): read items, cancel at once."""

    def __init__(self, call: Any, convert: Callable[[Any], StreamItem]) -> None:
        self._call = call
        self._convert = convert
        self._cancelled = False
        self.finished = False

    async def read(self) -> StreamItem:
        """The next item; nothing follows the one carrying the end."""
        try:
            item = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            self.finished = True
            raise UpstreamError("router", exc.code(), exc.details() or "") from None
        except asyncio.CancelledError:
            # A read of a call cancelled by `cancel()`, not a cancellation of this task.
            task = asyncio.current_task()
            if self._cancelled and task is not None and not task.cancelling():
                raise UpstreamError("router", grpc.StatusCode.CANCELLED, "cancelled") from None
            raise
        if item is grpc.aio.EOF:
            self.finished = True
            raise UpstreamError("router", grpc.StatusCode.INTERNAL, "stream ended without an end")
        read = self._convert(item)
        if read.end is not None:
            self.finished = True
        return read

    def cancel(self) -> None:
        """Cancel the call (the router then cancels its upstream request); a pending read
        then raises UpstreamError."""
        if not self.finished:
            self.finished = True
            self._cancelled = True
            self._call.cancel()


class RouterClient:
    """RouterService: completions, relayed endpoints and the model catalog."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self._stub: Any = router_pb2_grpc.RouterServiceStub(channel)
        self._timeout = timeout_s

    async def create(
        self, request_id: str, model: str, body: bytes, principal: Principal, timeout_s: float
    ) -> Completion:
        """Run a non-streaming chat completion with the client's original body."""
        request = router_pb2.CreateChatCompletionRequest(
            request_id=request_id, model=model, body=body, caller=translate.caller(principal)
        )
        call = self._stub.CreateChatCompletion(
            request, timeout=timeout_s, metadata=metadata(request_id)
        )
        return translate.completion(await unary("router", call))

    def stream(
        self, request_id: str, model: str, body: bytes, principal: Principal, timeout_s: float
    ) -> RouterStream:
        """Start a streaming chat completion with the client's original body."""
        request = router_pb2.StreamChatCompletionRequest(
            request_id=request_id, model=model, body=body, caller=translate.caller(principal)
        )
        call = self._stub.StreamChatCompletion(
            request, timeout=timeout_s, metadata=metadata(request_id)
        )
        return RouterStream(call, translate.stream_item)

    async def relay(
        self, request_id: str, operation: Operation, model: str, body: bytes,
        content_type: str, principal: Principal, timeout_s: float,
    ) -> Completion:
        """Run a non-streaming request of another endpoint with the client's body."""
        request = router_pb2.RelayRequest(
            request_id=request_id, operation=translate.operation(operation), model=model,
            body=body, content_type=content_type, caller=translate.caller(principal),
        )
        call = self._stub.Relay(request, timeout=timeout_s, metadata=metadata(request_id))
        return translate.relayed(await unary("router", call))

    def stream_relay(
        self, request_id: str, operation: Operation, model: str, body: bytes,
        content_type: str, principal: Principal, timeout_s: float,
    ) -> RouterStream:
        """Start a streaming request of another endpoint (SSE events or audio)."""
        request = router_pb2.StreamRelayRequest(
            request_id=request_id, operation=translate.operation(operation), model=model,
            body=body, content_type=content_type, caller=translate.caller(principal),
        )
        call = self._stub.StreamRelay(request, timeout=timeout_s, metadata=metadata(request_id))
        return RouterStream(call, translate.relay_item)

    async def list_models(self, request_id: str) -> list[ModelInfo]:
        """The catalog."""
        call = self._stub.ListModels(
            router_pb2.ListModelsRequest(), timeout=self._timeout, metadata=metadata(request_id)
        )
        return [translate.model_info(m) for m in (await unary("router", call)).models]
