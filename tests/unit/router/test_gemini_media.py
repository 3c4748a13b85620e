"""Gemini images against the fake Gemini API: Imagen :predict and Gemini image models,
request bodies, the OpenAI images answer, units, and the client's errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from openai.types import ImagesResponse

from services.common.gateway_config import ChannelEntry
from services.router.config import Settings
from services.router.errors import UpstreamRateLimited, UpstreamRejected
from services.router.providers import build_provider
from services.router.providers.gemini import GeminiProvider
from services.router.providers.gemini_media import GEMINI_RATIOS, IMAGEN_RATIOS, aspect_ratio
from services.router.relay_request import Operation
from services.router.server import upstream_session
from tests.fakes.gemini_fake import (
    FAKE_KEY,
    PNG,
    GeminiFake,
    gemini_fake,
    image_part,
    response,
)
from tests.unit.router.helpers import attempt, relay_request


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


@pytest.fixture
async def provider(fake: GeminiFake) -> AsyncIterator[GeminiProvider]:
    channel = ChannelEntry(name="g", type="gemini", models=("demo",), base_url=fake.base_url,
                           api_key_env="GEMINI_API_KEY")
    async with upstream_session(Settings()) as session:
        built = build_provider(channel, session, {"GEMINI_API_KEY": FAKE_KEY})
        assert isinstance(built, GeminiProvider)
        yield built


async def test_imagen_predict_body_answer_and_units(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    request = relay_request(Operation.IMAGE_GENERATIONS, {
        "prompt": "a red fox", "n": 3, "size": "1792x1024", "quality": "hd"})
    answer = await provider.relay(attempt(request, "imagen-4.0-generate-001"))
    parsed = ImagesResponse.model_validate_json(answer.body)
    assert parsed.data is not None and len(parsed.data) == 3
    assert all(base64.b64decode(d.b64_json or "") == PNG for d in parsed.data)
    assert parsed.output_format == "png" and answer.content_type == "application/json"
    assert dict(answer.usage.units) == {"image/1792x1024/hd": 3} and answer.reported
    sent = fake.received[0]
    assert (sent.model, sent.method, sent.headers["x-goog-api-key"]) == (
        "imagen-4.0-generate-001", "predict", FAKE_KEY)
    assert sent.body == {"instances": [{"prompt": "a red fox"}],
                         "parameters": {"sampleCount": 3, "aspectRatio": "16:9"}}


async def test_gemini_image_model_calls_generate_content_once_per_image(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.answer = response([{"text": "Here it is"}, image_part(b"jpegbytes", "image/jpeg")])
    request = relay_request(Operation.IMAGE_GENERATIONS, {
        "prompt": "a red fox", "n": 2, "size": "1536x1024", "response_format": "b64_json"})
    answer = await provider.relay(attempt(request, "gemini-2.5-flash-image"))
    parsed = ImagesResponse.model_validate_json(answer.body)
    assert [base64.b64decode(d.b64_json or "") for d in parsed.data or []] == [b"jpegbytes"] * 2
    assert parsed.output_format == "jpeg"
    assert dict(answer.usage.units) == {"image/1536x1024/standard": 2}
    assert [r.method for r in fake.received] == ["generateContent"] * 2
    assert fake.received[0].body == {
        "contents": [{"role": "user", "parts": [{"text": "a red fox"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"],
                             "imageConfig": {"aspectRatio": "3:2"}}}


async def test_default_size_sends_no_ratio_and_bills_the_default_unit(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    answer = await provider.relay(attempt(
        relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "x"}), "imagen-3"))
    assert fake.received[0].body["parameters"] == {"sampleCount": 1}
    assert dict(answer.usage.units) == {"image/1024x1024/standard": 1}


@pytest.mark.parametrize(("body", "param"), [
    ({"response_format": "url"}, "response_format"),
    ({"n": 5}, "n"),
    ({"size": "1536x1024"}, "size"),  # 3:2 is not an Imagen ratio
    ({"size": "big"}, "size"),
    ({"prompt": ""}, "prompt"),
])
async def test_what_gemini_cannot_do_is_a_400_naming_the_field(
    provider: GeminiProvider, fake: GeminiFake, body: dict[str, object], param: str,
) -> None:
    request = relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "a fox", **body})
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "imagen-4.0-generate-001"))
    assert (caught.value.status, caught.value.param) == (400, param)
    assert fake.received == []


async def test_filtered_images_are_a_content_filter_400(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.predictions = [{"raiFilteredReason": "It may violate our policies."}]
    request = relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "bad"})
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "imagen-4.0-generate-001"))
    assert (caught.value.code, caught.value.param) == ("content_filter", "prompt")
    assert "violate" in str(caught.value)
    fake.predictions = []  # Google leaves `predictions` out
    with pytest.raises(UpstreamRejected):
        await provider.relay(attempt(request, "imagen-4.0-generate-001"))
    fake.answer = response([], "IMAGE_SAFETY")
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "gemini-2.5-flash-image"))
    assert caught.value.code == "content_filter"


async def test_upstream_errors_map_as_on_chat(provider: GeminiProvider, fake: GeminiFake) -> None:
    fake.fail(429, "quota")
    request = relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "x", "n": 2})
    with pytest.raises(UpstreamRateLimited):
        await provider.relay(attempt(request, "gemini-2.5-flash-image"))
    fake.fail(400, "Invalid prompt")
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "imagen-4.0-generate-001"))
    assert caught.value.status == 400 and not caught.value.retryable


def test_sizes_map_to_the_nearest_offered_ratio() -> None:
    assert aspect_ratio("1024x1024", IMAGEN_RATIOS) == "1:1"
    assert aspect_ratio("1024x1792", IMAGEN_RATIOS) == "9:16"
    assert aspect_ratio("1024x1536", GEMINI_RATIOS) == "2:3"
    assert aspect_ratio("auto", IMAGEN_RATIOS) is None
    assert aspect_ratio(None, IMAGEN_RATIOS) is None


def test_gemini_serves_the_media_operations() -> None:
    channel = ChannelEntry(name="g", type="gemini", models=("demo",))
    provider = GeminiProvider(channel, None, "k")  # type: ignore[arg-type]
    served = {op for op in Operation if provider.relays(op)}
    assert served == {Operation.EMBEDDINGS, Operation.IMAGE_GENERATIONS, Operation.AUDIO_SPEECH,
                      Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS}
