"""How long an Anthropic or Gemini 429 cools its key: read from its headers and body."""

from __future__ import annotations

import email.utils
import time

import orjson
import pytest

from services.common.gateway_config import ChannelEntry
from services.router.errors import ProviderError, UpstreamRateLimited
from services.router.providers.anthropic import AnthropicProvider
from services.router.providers.anthropic_errors import cooldown_s, error_for_status
from services.router.providers.gemini import GeminiProvider
from services.router.providers.gemini_errors import gemini_error, stream_error
from tests.unit.router.helpers import chat_request, upstream
from tests.unit.router.scripted import ScriptedUpstream

ANTHROPIC_429 = orjson.dumps({"type": "error", "error": {
    "type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}})
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _gemini_429(delay: str) -> bytes:
    return orjson.dumps({"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}})


def test_anthropic_retry_after_comes_first() -> None:
    headers = {"retry-after": "7", "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z"}
    assert cooldown_s(headers, NOW) == 7.0
    error = error_for_status(429, ANTHROPIC_429, (), headers)
    assert isinstance(error, UpstreamRateLimited) and error.retry_after_s == 7.0


def test_anthropic_resets_of_the_exhausted_limits() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "40",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:50Z",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:12Z",
    }
    assert cooldown_s(headers, NOW) == 12.0  # the exhausted limit, not the later reset
    del headers["anthropic-ratelimit-input-tokens-remaining"]
    assert cooldown_s(headers, NOW) == 50.0  # none says which: the latest reset
    assert cooldown_s({"anthropic-ratelimit-tokens-reset": "2025-12-31T23:59:00Z"}, NOW) == 0.0
    assert cooldown_s({"anthropic-ratelimit-tokens-reset": "soon"}, NOW) is None
    assert error_for_status(429, ANTHROPIC_429).retry_after_s is None  # the default then


def test_gemini_retry_info_in_the_error_details() -> None:
    assert gemini_error(429, _gemini_429("13s")).retry_after_s == 13.0
    assert gemini_error(429, _gemini_429("0.5s"), (), {"retry-after": "9"}).retry_after_s == 0.5
    assert gemini_error(429, _gemini_429("13 seconds"), (), {"retry-after": "9"}).retry_after_s \
        == 9.0
    assert gemini_error(429, b"{}").retry_after_s is None
    event = orjson.loads(_gemini_429("21s"))
    in_band = stream_error(event)
    assert isinstance(in_band, UpstreamRateLimited) and in_band.retry_after_s == 21.0


async def _raised(call: object) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_the_anthropic_provider_passes_its_429_headers(up: ScriptedUpstream) -> None:
    up.answer(429, ANTHROPIC_429, {"retry-after": "4"})
    assert up.session is not None
    channel = ChannelEntry(name="an", type="anthropic", models=("claude",), base_url=up.base_url)
    provider = AnthropicProvider(channel, up.session, "sk-ant-k")
    error = await _raised(provider.complete(upstream(chat_request(model="claude"))))
    assert error.kind == "rate_limited" and error.retry_after_s == 4.0
    stream = provider.stream(upstream(chat_request(model="claude", stream=True)))
    error = await _raised(anext(stream))
    assert error.kind == "rate_limited" and error.retry_after_s == 4.0


async def test_the_gemini_provider_passes_its_retry_delay(up: ScriptedUpstream) -> None:
    up.answer(429, _gemini_429("13s"))
    assert up.session is not None
    channel = ChannelEntry(name="gm", type="gemini", models=("gemini-x",), base_url=up.base_url)
    provider = GeminiProvider(channel, up.session, "g-key", 5.0)
    error = await _raised(provider.complete(upstream(chat_request(model="gemini-x"))))
    assert error.kind == "rate_limited" and error.retry_after_s == 13.0


def test_gemini_retry_after_as_an_http_date_is_read() -> None:
    at = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = gemini_error(429, b"{}", (), {"retry-after": at}).retry_after_s
    assert delay is not None and 25 < delay <= 30
