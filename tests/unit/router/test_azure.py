"""The Azure provider against a fake Azure resource: deployment URL, api-version, api-key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.common.gateway_config import ChannelEntry
from services.router.config import Settings
from services.router.errors import ChannelConfigError, UpstreamRateLimited, UpstreamUnavailable
from services.router.providers import build_provider
from services.router.providers.azure import DEFAULT_API_VERSION, AzureProvider, deployment_url
from services.router.providers.base import RelayAttempt
from services.router.relay_request import Operation, parse_relay_request
from services.router.server import upstream_session
from tests.fakes.azure_fake import AZURE_KEY, AzureFake, azure_fake
from tests.unit.router.helpers import chat_request, upstream

ENV = {"AZURE_OPENAI_API_KEY": AZURE_KEY}


@pytest.fixture
async def fake() -> AsyncIterator[AzureFake]:
    async with azure_fake() as running:
        yield running


@pytest.fixture
async def provider(fake: AzureFake) -> AsyncIterator[AzureProvider]:
    channel = ChannelEntry(name="az", type="azure", models=("gpt-4o-mini",),
                           base_url=fake.endpoint, api_key_env="AZURE_OPENAI_API_KEY",
                           model_map={"gpt-4o-mini": "my-mini"})
    async with upstream_session(Settings()) as session:
        built = build_provider(channel, session, ENV)
        assert isinstance(built, AzureProvider)
        yield built


def test_deployment_url_tolerates_a_trailing_openai_and_quotes_the_name() -> None:
    assert deployment_url("https://r.openai.azure.com/", "d") == \
        "https://r.openai.azure.com/openai/deployments/d"
    assert deployment_url("https://r.openai.azure.com/openai", "a b") == \
        "https://r.openai.azure.com/openai/deployments/a%20b"


async def test_fake_speaks_azure_as_the_official_sdk_calls_it(fake: AzureFake) -> None:
    client = openai.AsyncAzureOpenAI(azure_endpoint=fake.endpoint, api_key=AZURE_KEY,
                                     api_version=DEFAULT_API_VERSION, max_retries=0)
    completion = await client.chat.completions.create(
        model="sdk-dep", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello from Azure."
    call = fake.calls[-1]
    assert (call.deployment, call.operation) == ("sdk-dep", "chat/completions")
    assert call.query["api-version"] == DEFAULT_API_VERSION
    await client.close()


async def test_chat_goes_to_the_deployment_with_api_key_and_version(
    provider: AzureProvider, fake: AzureFake
) -> None:
    answer = await provider.complete(upstream(chat_request(model="gpt-4o-mini"), "my-mini"))
    ChatCompletion.model_validate_json(answer.body)
    assert answer.text == "Hello from Azure." and answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.cached_prompt_tokens == 2
    call = fake.calls[-1]
    assert (call.deployment, call.operation) == ("my-mini", "chat/completions")
    assert call.query == {"api-version": DEFAULT_API_VERSION}
    assert call.headers["api-key"] == AZURE_KEY and "authorization" not in call.headers


async def test_stream_asks_usage_and_forwards_it_only_when_asked(
    provider: AzureProvider, fake: AzureFake
) -> None:
    pieces = [p async for p in provider.stream(upstream(
        chat_request(model="gpt-4o-mini", stream=True), "my-mini"))]
    assert fake.calls[-1].body["stream_options"] == {"include_usage": True}
    chunks = [ChatCompletionChunk.model_validate_json(p.chunk) for p in pieces if p.chunk]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello from Azure."
    last = pieces[-1]
    assert last.is_last and last.chunk is None and last.usage is not None
    assert last.usage.prompt_tokens == 7


async def test_channel_api_version_wins(fake: AzureFake) -> None:
    channel = ChannelEntry(name="az", type="azure", models=(), base_url=fake.endpoint + "/openai",
                           api_key_env="K", api_version="2025-04-01-preview")
    async with upstream_session(Settings()) as session:
        provider = AzureProvider(channel, session, AZURE_KEY)
        await provider.complete(upstream(chat_request(model="gpt-4o"), "gpt-4o"))
    assert fake.calls[-1].query["api-version"] == "2025-04-01-preview"
    assert fake.calls[-1].deployment == "gpt-4o"


async def test_embeddings_are_relayed_to_the_deployment(
    provider: AzureProvider, fake: AzureFake
) -> None:
    body = orjson.dumps({"model": "text-embedding-3-small", "input": "hello"})
    request = parse_relay_request(Operation.EMBEDDINGS, body, "application/json",
                                  "text-embedding-3-small", "req_emb", stream=False)
    answer = await provider.relay(RelayAttempt(request, "emb-dep", 5.0))
    assert answer.reported and answer.usage.prompt_tokens == 3
    assert (fake.calls[-1].deployment, fake.calls[-1].operation) == ("emb-dep", "embeddings")
    assert fake.calls[-1].body["model"] == "emb-dep"


def test_responses_are_not_relayed_but_the_rest_is(provider: AzureProvider) -> None:
    assert not provider.relays(Operation.RESPONSES)
    assert all(provider.relays(op) for op in Operation if op is not Operation.RESPONSES)


async def test_wrong_key_and_rate_limit_become_provider_errors(fake: AzureFake) -> None:
    channel = ChannelEntry(name="az", type="azure", models=(), base_url=fake.endpoint)
    async with upstream_session(Settings()) as session:
        with pytest.raises(UpstreamUnavailable) as denied:
            await AzureProvider(channel, session, "wrong").complete(
                upstream(chat_request(), "d"))
        assert denied.value.status == 401 and fake.endpoint not in denied.value.message
        fake.fail_status = 429
        with pytest.raises(UpstreamRateLimited):
            await AzureProvider(channel, session, AZURE_KEY).complete(
                upstream(chat_request(), "d"))


async def test_missing_usage_leaves_usage_none_for_the_router_to_estimate(
    provider: AzureProvider, fake: AzureFake
) -> None:
    fake.omit_usage = True
    answer = await provider.complete(upstream(chat_request(model="gpt-4o-mini"), "my-mini"))
    assert answer.usage is None and answer.text == "Hello from Azure."


async def test_an_endpoint_is_required() -> None:
    async with upstream_session(Settings()) as session:
        with pytest.raises(ChannelConfigError, match="endpoint"):
            build_provider(ChannelEntry(name="az", type="azure", models=()), session, {})
