"""The Azure OpenAI provider: the OpenAI-compatible provider, once per deployment.

Azure serves the OpenAI wire format below a resource endpoint
(`https://NAME.openai.azure.com`), one URL per deployment:
`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`, with the
key in an `api-key` header. The deployment is the channel's upstream name of the model
(`model_map`, or `deployments` in the file, else the model id). Each deployment gets an
`OpenAIProvider` over its own URL, so bodies, streams, usage and errors are handled by
the same code as every compatible upstream. Azure's Responses API is not per deployment
(`/openai/v1/responses`), so /responses is not relayed here and is bridged onto chat.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from urllib.parse import quote

import aiohttp

from services.common.gateway_config import ChannelEntry
from services.router.errors import ChannelConfigError
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
)
from services.router.providers.http import DEFAULT_CONNECT_TIMEOUT_S
from services.router.providers.openai import OpenAIProvider
from services.router.relay_request import Operation

# The newest generally available data-plane version (2025-10); `api_version` overrides it.
DEFAULT_API_VERSION = "2024-10-21"
DEPLOYMENTS_PATH = "/openai/deployments/"


def deployment_url(endpoint: str, deployment: str) -> str:
    """The base URL of one deployment under a resource endpoint (with or without /openai)."""
    base = endpoint.rstrip("/").removesuffix("/openai")
    return base + DEPLOYMENTS_PATH + quote(deployment, safe="")


class AzureProvider:
    """Calls one Azure OpenAI resource with one key, a deployment per upstream model."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        if not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(
                f"channel {channel.name!r} needs its Azure resource endpoint as base_url")
        self._channel = replace(channel, auth=channel.auth or "api-key", responses_api=False)
        self._session = session
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._query = {"api-version": channel.api_version or DEFAULT_API_VERSION}
        # One provider per deployment, made on first use: a channel has a handful.
        self._deployments: dict[str, OpenAIProvider] = {}

    async def complete(self, request: UpstreamRequest) -> Completion:
        """A chat completion from the model's deployment."""
        return await self._deployment(request.upstream_model).complete(request)

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """A streamed chat completion from the model's deployment."""
        return self._deployment(request.upstream_model).stream(request)

    def relays(self, operation: Operation) -> bool:
        """Every deployment endpoint is relayed; /responses is not one (it is bridged)."""
        return operation is not Operation.RESPONSES

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Relay another endpoint to the model's deployment."""
        return await self._deployment(attempt.upstream_model).relay(attempt)

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Relay a streamed request of another endpoint to the model's deployment."""
        return self._deployment(attempt.upstream_model).relay_stream(attempt)

    def _deployment(self, deployment: str) -> OpenAIProvider:
        provider = self._deployments.get(deployment)
        if provider is None:
            channel = replace(self._channel,
                              base_url=deployment_url(self._channel.base_url, deployment))
            provider = OpenAIProvider(channel, self._session, self._api_key,
                                      self._connect_timeout_s, self._query)
            self._deployments[deployment] = provider
        return provider
