"""The router's dataclasses as RouterService protos, and the proto Operation as ours."""

from __future__ import annotations

from collections.abc import Sequence

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from services.router.errors import InvalidRelayRequest
from services.router.outcomes import (
    CompletionError,
    RelayResult,
    RouteInfo,
    StreamHead,
    StreamOutcome,
    UsageSource,
)
from services.router.providers.base import Usage
from services.router.relay_request import Operation

_SOURCES = {
    UsageSource.UPSTREAM: usage_pb2.USAGE_SOURCE_UPSTREAM,
    UsageSource.ESTIMATED: usage_pb2.USAGE_SOURCE_ESTIMATED,
}
_OPERATIONS = {
    router_pb2.OPERATION_COMPLETIONS: Operation.COMPLETIONS,
    router_pb2.OPERATION_EMBEDDINGS: Operation.EMBEDDINGS,
    router_pb2.OPERATION_IMAGE_GENERATIONS: Operation.IMAGE_GENERATIONS,
    router_pb2.OPERATION_IMAGE_EDITS: Operation.IMAGE_EDITS,
    router_pb2.OPERATION_AUDIO_TRANSCRIPTIONS: Operation.AUDIO_TRANSCRIPTIONS,
    router_pb2.OPERATION_AUDIO_TRANSLATIONS: Operation.AUDIO_TRANSLATIONS,
    router_pb2.OPERATION_AUDIO_SPEECH: Operation.AUDIO_SPEECH,
    router_pb2.OPERATION_RESPONSES: Operation.RESPONSES,
}


def operation(value: router_pb2.Operation.ValueType) -> Operation:
    """The Operation of a proto enum value; InvalidRelayRequest when unset or unknown."""
    found = _OPERATIONS.get(value)
    if found is None:
        raise InvalidRelayRequest("operation is required")
    return found


def source(value: UsageSource) -> usage_pb2.UsageSource.ValueType:
    """A UsageSource as the proto enum."""
    return _SOURCES[value]


def usage(value: Usage) -> usage_pb2.Usage:
    """A Usage as the proto message, units sorted by name."""
    return usage_pb2.Usage(
        prompt_tokens=value.prompt_tokens,
        completion_tokens=value.completion_tokens,
        total_tokens=value.total_tokens,
        cached_prompt_tokens=value.cached_prompt_tokens,
        reasoning_tokens=value.reasoning_tokens,
        units=[usage_pb2.UnitUsage(unit=unit, quantity=quantity)
               for unit, quantity in sorted(value.units.items())],
        cache_write_prompt_tokens=value.cache_write_prompt_tokens,
    )


def route(value: RouteInfo) -> router_pb2.RouteInfo:
    """A RouteInfo as the proto message."""
    return router_pb2.RouteInfo(
        channel=value.channel, upstream_model=value.upstream_model, attempts=value.attempts
    )


def error(value: CompletionError | None) -> router_pb2.CompletionError | None:
    """A CompletionError as the proto message (None stays unset)."""
    if value is None:
        return None
    return router_pb2.CompletionError(
        http_status=value.http_status, type=value.type, code=value.code,
        message=value.message, param=value.param,
    )


def end(outcome: StreamOutcome) -> router_pb2.StreamEnd:
    """A StreamOutcome as the typed end of a stream (its tail goes in the item's pieces)."""
    return router_pb2.StreamEnd(
        usage=usage(outcome.usage),
        usage_source=source(outcome.usage_source),
        finish_reason=outcome.finish_reason,
        route=route(outcome.route),
        error=error(outcome.error),
    )


def relay_response(result: RelayResult) -> router_pb2.RelayResponse:
    """A RelayResult as the Relay answer."""
    return router_pb2.RelayResponse(
        body=result.body,
        content_type=result.content_type,
        usage=usage(result.usage),
        usage_source=source(result.usage_source),
        route=route(result.route),
        error=error(result.error),
    )


def chat_item(batch: Sequence[bytes | StreamOutcome]) -> router_pb2.StreamChatCompletionResponse:
    """One StreamChatCompletion item; the end and its held chunks ride on the last."""
    last = batch[-1]
    chunks = [item for item in batch if isinstance(item, bytes)]
    if isinstance(last, StreamOutcome):
        chunks.extend(last.tail)
        return router_pb2.StreamChatCompletionResponse(chunks=chunks, end=end(last))
    return router_pb2.StreamChatCompletionResponse(chunks=chunks)


def relay_item(
    batch: Sequence[bytes | StreamHead | StreamOutcome], content_type: str
) -> router_pb2.StreamRelayResponse:
    """One StreamRelay item; the end and its held events ride on the last."""
    last = batch[-1]
    pieces = [item for item in batch if isinstance(item, bytes)]
    if isinstance(last, StreamOutcome):
        pieces.extend(last.tail)
        return router_pb2.StreamRelayResponse(pieces=pieces, content_type=content_type,
                                              end=end(last))
    return router_pb2.StreamRelayResponse(pieces=pieces, content_type=content_type)
