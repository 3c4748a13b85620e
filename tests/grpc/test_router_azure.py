"""RouterService with an azure channel and a zero-config channel, through grpc.aio on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.providers.azure import DEFAULT_API_VERSION
from services.router.server import start
from tests.fakes.azure_fake import AZURE_KEY, AzureFake, azure_fake

CONFIG = """
models:
  - {{id: house, aliases: [house-latest], context_window: 8000, capabilities: [tools],
      price: {{prompt: 1, completion: 1}}}}
channels:
  - name: az
    type: azure
    base_url: {endpoint}
    api_key_env: AZ_KEY
    deployments: {{house: house-deployment}}
    models: [house]
"""


@pytest.fixture
async def fake() -> AsyncIterator[AzureFake]:
    async with azure_fake() as running:
        yield running


@pytest.fixture
async def stub(tmp_path: Path, fake: AzureFake) -> AsyncIterator[router_pb2_grpc.RouterServiceAsyncStub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(CONFIG.format(endpoint=fake.endpoint))
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(path))
    # A zero-config DeepSeek channel too, pointed nowhere: it must only be listed.
    environ = {"AZ_KEY": AZURE_KEY, "DEEPSEEK_API_KEY": "sk-deepseek"}
    started = await start(settings, environ=environ)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


def _body(model: str, **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})


async def test_list_models_shows_aliases_capabilities_and_zero_config_models(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    models = {m.id: m for m in (await stub.ListModels(router_pb2.ListModelsRequest())).models}
    assert {"house", "house-latest", "deepseek-chat", "deepseek-reasoner"} <= set(models)
    house, alias = models["house"], models["house-latest"]
    assert (house.context_window, house.supports_tools, house.supports_vision) == (8000, True, False)
    assert (alias.alias_of, house.alias_of, alias.context_window) == ("house", "", 8000)
    assert models["deepseek-chat"].supports_json and models["deepseek-chat"].owned_by == "deepseek"


async def test_chat_by_alias_reaches_the_deployment(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AzureFake,
) -> None:
    response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        request_id="req_az", model="house-latest", body=_body("house-latest")))
    assert not response.HasField("error")
    completion = ChatCompletion.model_validate_json(response.body)
    assert completion.choices[0].message.content == "Hello from Azure."
    assert response.usage.prompt_tokens == 7
    call = fake.calls[-1]
    assert (call.deployment, call.query["api-version"]) == ("house-deployment", DEFAULT_API_VERSION)
    assert call.headers["api-key"] == AZURE_KEY


async def test_stream_through_azure(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AzureFake,
) -> None:
    chunks: list[ChatCompletionChunk] = []
    async for message in stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
            request_id="req_azs", model="house",
            body=_body("house", stream=True, stream_options={"include_usage": True}))):
        chunks += [ChatCompletionChunk.model_validate_json(c) for c in message.chunks if c]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Azure."
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    assert fake.calls[-1].deployment == "house-deployment"
