"""The official openai client against the edge (fake services): our wire format conforms."""

from __future__ import annotations

from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from apirelay.common.v1 import usage_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from tests.grpc.edge.conftest import Edge
from tests.grpc.edge.messages import MODEL, Pause, chunk, end, error

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]


async def test_sdk_non_stream_completion(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert result.choices[0].message.content == "Hi there"
    assert result.usage is not None and result.usage.total_tokens == 18


async def test_sdk_stream(sdk: openai.AsyncOpenAI, edge: Edge) -> None:
    edge.fakes.router.script = [chunk("Hel"), Pause(0.12), chunk("lo", "stop"), end()]
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Hello"  # keepalive comments were sent and ignored


async def test_sdk_raises_on_an_in_band_stream_error(sdk: openai.AsyncOpenAI, edge: Edge) -> None:
    edge.fakes.router.script = [
        chunk("Hel"), end(error(502, "server_error", "", "upstream dropped"), usage_pb2.Usage()),
    ]
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError, match="upstream dropped"):
        async for _ in stream:
            pass


async def test_sdk_authentication_error(edge: Edge) -> None:
    async with openai.AsyncOpenAI(base_url=edge.base_url, api_key="sk-bad", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.request_id


async def test_sdk_not_found_error(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="nope", messages=MESSAGES)
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")


async def test_sdk_rate_limit_error(sdk: openai.AsyncOpenAI, edge: Edge) -> None:
    edge.fakes.ratelimit.deny_by = ratelimit_pb2.LIMIT_KIND_TPM
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"  # ceil(0.25 s), at least 1


async def test_sdk_bad_request_error(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model=MODEL, messages=cast(Any, [{"role": "robot", "content": "x"}])
        )
    assert caught.value.param == "messages.0.role"
