"""Responses bridged onto chat through a real grpc.aio RouterService: the built-in mock
behind a chat-only wrapper (text, magic cuts) and a scripted chat-only provider (tools)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.common.gateway_config import ChannelEntry, GatewayConfig, MockSettings, ModelEntry
from services.common.grpc_server import start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.router.core import ModelRouter
from services.router.providers.base import (
    Completion,
    Provider,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
)
from services.router.providers.mock import MockProvider
from services.router.relay_request import Operation
from services.router.service import ERRORS, SERVICE_NAME, RouterServicer
from tests.unit.router.responses_bridge_fake import (
    ChatOnlyProvider,
    accumulate,
    event_of,
    response_of,
    tool_chunks,
)

REPLY = "One two three four"
RESPONSES = router_pb2.OPERATION_RESPONSES


@dataclass
class ChatOnlyMock:
    """The built-in mock, but serving nothing natively except chat."""

    mock: MockProvider

    def relays(self, operation: Operation) -> bool:
        """Nothing but chat."""
        return False

    async def complete(self, request: UpstreamRequest) -> Completion:
        """The mock's chat completion."""
        return await self.mock.complete(request)

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """The mock's chat stream."""
        return self.mock.stream(request)

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Never called: the router must bridge."""
        raise AssertionError("bridged requests must not be relayed")

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Never called: the router must bridge."""
        raise AssertionError("bridged requests must not be relayed")


@pytest.fixture
async def stub() -> AsyncIterator[router_pb2_grpc.RouterServiceAsyncStub]:
    providers: dict[str, Provider] = {
        "mock": ChatOnlyMock(MockProvider(MockSettings(reply=REPLY))),
        "tools": ChatOnlyProvider(chunks=tool_chunks()),
    }
    channels = (ChannelEntry(name="mock", type="mock", models=("text",)),
                ChannelEntry(name="tools", type="fake", models=("tools",),
                             model_map={"tools": "tools-up"}))
    config = GatewayConfig(models=(ModelEntry("text"), ModelEntry("tools")), channels=channels,
                           group_multipliers_bps={})
    servicer = RouterServicer(ModelRouter(config, providers))
    running = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
        [SERVICE_NAME], ServiceInterceptor(ERRORS))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await running.stop(0)


def _body(model: str, stream: bool, **fields: Any) -> bytes:
    return orjson.dumps({"model": model, "input": "Hello", **fields,
                         **({"stream": True} if stream else {})})


async def _stream(stub: router_pb2_grpc.RouterServiceAsyncStub, model: str, **fields: Any
                  ) -> tuple[list[router_pb2.StreamRelayResponse], list[Any]]:
    call = stub.StreamRelay(router_pb2.StreamRelayRequest(
        request_id="req_bridge", operation=RESPONSES, model=model,
        body=_body(model, True, **fields), content_type="application/json"))
    items = [item async for item in call]
    return items, [event_of(piece) for item in items for piece in item.pieces]


async def test_relay_answers_a_response_object(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    answer = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_bridge", operation=RESPONSES, model="text",
        body=_body("text", False, instructions="Be brief."), content_type="application/json"))
    assert not answer.HasField("error") and answer.content_type == "application/json"
    response = response_of(answer.body)
    assert (response.output_text, response.status) == (REPLY, "completed")
    assert response.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == \
        (response.usage.input_tokens, response.usage.output_tokens)
    assert answer.usage.completion_tokens == 4 and answer.route.channel == "mock"


async def test_stream_relay_sends_the_events_and_holds_completed_for_the_end(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    items, events = await _stream(stub, "text")
    assert items[0].content_type == "text/event-stream"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == REPLY and len(deltas) == 4
    last = items[-1]
    assert last.HasField("end") and not last.end.HasField("error")
    assert event_of(last.pieces[-1]).type == "response.completed"
    final = accumulate(events)
    assert final.output_text == REPLY and final.usage is not None
    assert final.usage.output_tokens == last.end.usage.completion_tokens == 4


async def test_a_cut_mock_stream_ends_with_an_error_and_no_completed_event(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    items, events = await _stream(stub, "text", input="Hello [[mock:cut:2]]")
    assert [e.type for e in events if e.type == "response.output_text.delta"] == \
        ["response.output_text.delta"] * 2
    assert all(e.type != "response.completed" for e in events)
    end = items[-1].end
    assert (end.error.http_status, end.error.code) == (502, "upstream_error")


async def test_streamed_tool_calls_through_grpc(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    items, events = await _stream(stub, "tools", tools=[
        {"type": "function", "name": "weather", "parameters": {"type": "object"}},
        {"type": "function", "name": "time", "parameters": {"type": "object"}}])
    final = accumulate(events)
    assert [(o.name, o.arguments) for o in final.output if o.type == "function_call"] == \
        [("weather", '{"city":"Paris"}'), ("time", "{}")]
    end = items[-1].end
    assert (end.finish_reason, end.route.upstream_model) == ("tool_calls", "tools-up")
    assert (end.usage.prompt_tokens, end.usage.cached_prompt_tokens,
            end.usage.reasoning_tokens) == (11, 4, 2)


async def test_unsupported_features_and_operations_are_400s(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    refused = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_bridge", operation=RESPONSES, model="text",
        body=_body("text", False, background=True), content_type="application/json"))
    assert (refused.error.http_status, refused.error.param) == (400, "background")
    embeddings = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_bridge", operation=router_pb2.OPERATION_EMBEDDINGS, model="text",
        body=orjson.dumps({"model": "text", "input": "x"}), content_type="application/json"))
    assert (embeddings.error.http_status, embeddings.error.code) == (400, "model_not_supported")
