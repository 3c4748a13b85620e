"""The RouterService servicer: proto in, ModelRouter call, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.common.context import get_request_id
from services.common.interceptor import ErrorTable
from services.router import admin_wire, translate
from services.router.admin import ChannelAdmin
from services.router.admin_types import ChannelExists, ChannelNotFound, ChannelReadOnly
from services.router.caps import Demand, set_demand
from services.router.coalesce import ready_batches
from services.router.core import ModelRouter
from services.router.database import StoreUnavailable
from services.router.errors import InvalidRequest, ProviderError
from services.router.live import LiveRouter
from services.router.outcomes import StreamHead
from services.router.relay_request import RelayRequest, parse_relay_request
from services.router.request import ChatRequest, parse_chat_request

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name

ERRORS: ErrorTable = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    # Core turns provider errors into response data; one escaping is an upstream outage.
    ProviderError: grpc.StatusCode.UNAVAILABLE,
    ChannelNotFound: grpc.StatusCode.NOT_FOUND,
    ChannelExists: grpc.StatusCode.ALREADY_EXISTS,
    ChannelReadOnly: grpc.StatusCode.FAILED_PRECONDITION,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

ADMIN_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in ("ListChannels", "CreateChannel", "UpdateChannel", "DisableChannel",
                   "EnableChannel", "TestChannel")
)

RelayCall = router_pb2.RelayRequest | router_pb2.StreamRelayRequest


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Adapts RouterService calls to the live ModelRouter and the channel admin rules.

    Each request takes the router current when it starts and keeps it to its end, so a
    channel change never disturbs a request in flight.
    """

    def __init__(self, router: ModelRouter | LiveRouter, admin: ChannelAdmin | None = None) -> None:
        self._live = router if isinstance(router, LiveRouter) else LiveRouter(router)
        self._admin = admin

    @property
    def _router(self) -> ModelRouter:
        return self._live.current

    def _channels(self) -> ChannelAdmin:
        if self._admin is None:
            raise ChannelReadOnly("channels cannot be changed on this router")
        return self._admin

    async def CreateChatCompletion(
        self,
        request: router_pb2.CreateChatCompletionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.CreateChatCompletionResponse:
        """Run a non-streaming completion; failures are response data."""
        chat = _parse_chat(request.body, request.model, request.request_id, stream=False)
        set_demand(_chat_demand(request.caller, chat))
        result = await self._router.complete(chat, context.time_remaining(),
                                             request.caller.account_id)
        return router_pb2.CreateChatCompletionResponse(
            body=result.body,
            usage=translate.usage(result.usage),
            usage_source=translate.source(result.usage_source),
            finish_reason=result.finish_reason,
            route=translate.route(result.route),
            error=translate.error(result.error),
        )

    async def StreamChatCompletion(
        self,
        request: router_pb2.StreamChatCompletionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[router_pb2.StreamChatCompletionResponse]:
        """Stream the chunks ready at once as one item each; the end rides on the last."""
        chat = _parse_chat(request.body, request.model, request.request_id, stream=True)
        set_demand(_chat_demand(request.caller, chat))
        stream = self._router.stream(chat, context.time_remaining(), request.caller.account_id)
        async for batch in ready_batches(stream):
            yield translate.chat_item(batch)

    async def Relay(
        self,
        request: router_pb2.RelayRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.RelayResponse:
        """Relay a non-streaming request of another endpoint; failures are response data."""
        relayed = _parse_relay(request, stream=False)
        set_demand(_relay_demand(request.caller, relayed))
        result = await self._router.relay(relayed, context.time_remaining(),
                                          request.caller.account_id)
        return translate.relay_response(result)

    async def StreamRelay(
        self,
        request: router_pb2.StreamRelayRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[router_pb2.StreamRelayResponse]:
        """Stream the pieces ready at once as one item each; the end rides on the last."""
        relayed = _parse_relay(request, stream=True)
        set_demand(_relay_demand(request.caller, relayed))
        stream = self._router.relay_stream(relayed, context.time_remaining(),
                                           request.caller.account_id)
        content_type = ""
        async for batch in ready_batches(stream):
            heads = [item.content_type for item in batch if isinstance(item, StreamHead)]
            if heads:
                content_type = heads[0]
                if len(heads) == len(batch):
                    continue  # a head alone waits for the pieces it announces
            yield translate.relay_item(batch, content_type)
            content_type = ""

    async def ListModels(
        self,
        request: router_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.ListModelsResponse:
        """The models at least one enabled channel serves."""
        models = [
            router_pb2.Model(id=m.id, owned_by=m.owned_by, created=m.created,
                             max_output_tokens=m.max_output_tokens,
                             context_window=m.context_window, supports_tools=m.tools,
                             supports_vision=m.vision, supports_json=m.json, alias_of=m.alias_of)
            for m in self._router.list_models()
        ]
        return router_pb2.ListModelsResponse(models=models)

    async def ListChannels(
        self,
        request: router_pb2.ListChannelsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.ListChannelsResponse:
        """Every channel with key ids and hints, never a secret."""
        views = self._channels().channels()
        return router_pb2.ListChannelsResponse(
            channels=[admin_wire.channel_info(v) for v in views])

    async def CreateChannel(
        self,
        request: router_pb2.CreateChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.CreateChannelResponse:
        """Add a channel with its keys; it serves at once."""
        view = await self._channels().create(admin_wire.entry_of(request.channel),
                                             request.channel.tags, request.keys)
        return router_pb2.CreateChannelResponse(channel=admin_wire.channel_info(view))

    async def UpdateChannel(
        self,
        request: router_pb2.UpdateChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.UpdateChannelResponse:
        """Change a channel's fields and keys; applies at once."""
        view = await self._channels().update(request.name, admin_wire.changes_of(request))
        return router_pb2.UpdateChannelResponse(channel=admin_wire.channel_info(view))

    async def DisableChannel(
        self,
        request: router_pb2.DisableChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.DisableChannelResponse:
        """Stop choosing the channel for new requests."""
        view = await self._channels().set_enabled(request.name, False)
        return router_pb2.DisableChannelResponse(channel=admin_wire.channel_info(view))

    async def EnableChannel(
        self,
        request: router_pb2.EnableChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.EnableChannelResponse:
        """Let the channel be chosen again."""
        view = await self._channels().set_enabled(request.name, True)
        return router_pb2.EnableChannelResponse(channel=admin_wire.channel_info(view))

    async def TestChannel(
        self,
        request: router_pb2.TestChannelRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> router_pb2.TestChannelResponse:
        """One tiny upstream call per key; failing keys are results."""
        model, results = await self._channels().test(request.name, request.model)
        return router_pb2.TestChannelResponse(
            model=model, results=[admin_wire.key_test(r) for r in results])


def _parse_chat(body: bytes, model: str, request_id: str, *, stream: bool) -> ChatRequest:
    return parse_chat_request(body, model, request_id or get_request_id(), stream=stream)


def _parse_relay(request: RelayCall, *, stream: bool) -> RelayRequest:
    return parse_relay_request(
        translate.operation(request.operation), request.body, request.content_type,
        request.model, request.request_id or get_request_id(), stream=stream,
    )


# The demand is set for the task serving the RPC (one per call), like the request id.
# The token estimate is only computed when a capped target needs it.
def _chat_demand(caller: router_pb2.Caller, chat: ChatRequest) -> Demand:
    return Demand(chat.request_id, caller.group,
                  lambda: chat.estimated_prompt_tokens() + (chat.max_tokens or 0))


def _relay_demand(caller: router_pb2.Caller, relayed: RelayRequest) -> Demand:
    return Demand(relayed.request_id, caller.group,
                  relayed.estimated_input_tokens)
