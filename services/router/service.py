"""The RouterService servicer: proto in, ModelRouter call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.common.context import get_request_id
from services.common.interceptor import ErrorTable
from services.router.coalesce import ready_batches
from services.router.core import (
    CompletionError,
    ModelRouter,
    RouteInfo,
    StreamOutcome,
    UsageSource,
)
from services.router.errors import InvalidChatRequest, ProviderError
from services.router.providers.base import Usage
from services.router.request import ChatRequest, parse_chat_request

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name

ERRORS: ErrorTable = {
    InvalidChatRequest: grpc.StatusCode.INVALID_ARGUMENT,
    # Core turns provider errors into response data; one escaping is an upstream outage.
    ProviderError: grpc.StatusCode.UNAVAILABLE,
}

_SOURCES = {
    UsageSource.UPSTREAM: usage_pb2.USAGE_SOURCE_UPSTREAM,
    UsageSource.ESTIMATED: usage_pb2.USAGE_SOURCE_ESTIMATED,
}


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Adapts RouterService calls to a ModelRouter."""

    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def CreateChatCompletion(
        self,
        request: router_pb2.CreateChatCompletionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.CreateChatCompletionResponse:
        """Run a non-streaming completion; failures are response data."""
        chat = _parse(request.body, request.model, request.request_id, stream=False)
        result = await self._router.complete(chat, context.time_remaining())
        return router_pb2.CreateChatCompletionResponse(
            body=result.body,
            usage=_usage(result.usage),
            usage_source=_SOURCES[result.usage_source],
            finish_reason=result.finish_reason,
            route=_route(result.route),
            error=_error(result.error),
        )

    async def StreamChatCompletion(
        self,
        request: router_pb2.StreamChatCompletionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[router_pb2.StreamChatCompletionResponse]:
        """Stream the chunks ready at once as one item each; the end rides on the last."""
        chat = _parse(request.body, request.model, request.request_id, stream=True)
        async for batch in ready_batches(self._router.stream(chat, context.time_remaining())):
            yield _stream_item(batch)

    async def ListModels(
        self,
        request: router_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.ListModelsResponse:
        """The models at least one enabled channel serves."""
        models = [
            router_pb2.Model(id=m.id, owned_by=m.owned_by, created=m.created,
                             max_output_tokens=m.max_output_tokens)
            for m in self._router.list_models()
        ]
        return router_pb2.ListModelsResponse(models=models)


def _parse(body: bytes, model: str, request_id: str, *, stream: bool) -> ChatRequest:
    return parse_chat_request(body, model, request_id or get_request_id(), stream=stream)


def _stream_item(batch: list[bytes | StreamOutcome]) -> router_pb2.StreamChatCompletionResponse:
    # The core yields the StreamOutcome last, so only the last batch ends with it.
    last = batch[-1]
    return router_pb2.StreamChatCompletionResponse(
        chunks=[item for item in batch if isinstance(item, bytes)],
        end=_end(last) if isinstance(last, StreamOutcome) else None,
    )


def _end(outcome: StreamOutcome) -> router_pb2.StreamEnd:
    return router_pb2.StreamEnd(
        usage=_usage(outcome.usage),
        usage_source=_SOURCES[outcome.usage_source],
        finish_reason=outcome.finish_reason,
        route=_route(outcome.route),
        error=_error(outcome.error),
    )


def _usage(usage: Usage) -> usage_pb2.Usage:
    return usage_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def _route(route: RouteInfo) -> router_pb2.RouteInfo:
    return router_pb2.RouteInfo(
        channel=route.channel, upstream_model=route.upstream_model, attempts=route.attempts
    )


def _error(error: CompletionError | None) -> router_pb2.CompletionError | None:
    if error is None:
        return None
    return router_pb2.CompletionError(
        http_status=error.http_status, type=error.type, code=error.code,
        message=error.message, param=error.param,
    )
