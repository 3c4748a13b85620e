"""The response cache's pieces: the memory store, the record format, settings, slots."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from redis import exceptions as redis_errors

from edge.config import CacheBilling, CacheMode, Settings
from edge.domain import Operation, Principal, Usage, UsageSource
from edge.errors import ApiError
from edge.keys import RESPONSE_CACHE, SETTINGS
from edge.response_cache import MAX_CACHED_BODY_BYTES, CacheSlot, cache_slot
from edge.response_cache_store import CachedAnswer, MemoryResponseCache, decode, encode
from services.common.limits_config import LimitValues

USAGE = Usage(11, 7, 18, cached_prompt_tokens=3, reasoning_tokens=2,
              units={"image/1024x1024/hd": 2})
ANSWER = CachedAnswer(b'{"id":"x","bin":"\xff"}', "application/json", USAGE,
                      UsageSource.UPSTREAM)
PATH = "/v1/chat/completions"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(key_id: str = "key_1") -> Principal:
    return Principal(key_id, "acct_1", "acme", "default", frozenset(), LimitValues())


async def test_memory_store_keeps_an_answer_until_its_ttl() -> None:
    clock = Clock()
    store = MemoryResponseCache(10, clock)
    await store.put("a", ANSWER, 5.0)
    assert await store.get("a") == ANSWER
    assert await store.get("b") is None
    clock.now += 4.9
    assert await store.get("a") == ANSWER
    clock.now += 0.2
    assert await store.get("a") is None


async def test_memory_store_evicts_the_least_recently_used() -> None:
    store = MemoryResponseCache(2, Clock())
    await store.put("a", ANSWER, 60)
    await store.put("b", ANSWER, 60)
    assert await store.get("a") == ANSWER  # "a" is now the most recent
    await store.put("c", ANSWER, 60)
    assert await store.get("b") is None
    assert await store.get("a") == await store.get("c") == ANSWER


def test_a_record_round_trips_body_bytes_usage_and_units() -> None:
    assert decode(encode(ANSWER)) == ANSWER
    estimated = replace(ANSWER, usage=Usage(1, 0, 1), usage_source=UsageSource.ESTIMATED)
    assert decode(encode(estimated)) == estimated


def test_settings_read_the_cache_variables() -> None:
    assert Settings.from_env({}).response_cache is CacheMode.OFF
    settings = Settings.from_env({
        "EDGE_RESPONSE_CACHE": "Header", "EDGE_RESPONSE_CACHE_TTL_S": "30",
        "EDGE_RESPONSE_CACHE_BILLING": "free",
    })
    assert settings.response_cache is CacheMode.HEADER
    assert settings.response_cache_ttl_s == 30.0
    assert settings.response_cache_billing is CacheBilling.FREE
    with pytest.raises(ValueError, match="EDGE_RESPONSE_CACHE must be one of off|key|header"):
        Settings.from_env({"EDGE_RESPONSE_CACHE": "always"})
    with pytest.raises(ValueError, match="EDGE_RESPONSE_CACHE_BILLING"):
        Settings.from_env({"EDGE_RESPONSE_CACHE_BILLING": "half"})


def request_for(
    mode: CacheMode, headers: dict[str, str] | None = None, ttl_s: float = 60.0
) -> web.Request:
    app = web.Application()
    app[SETTINGS] = replace(Settings(), response_cache=mode, response_cache_ttl_s=ttl_s)
    app[RESPONSE_CACHE] = MemoryResponseCache(10)
    return make_mocked_request("POST", PATH, headers=headers or {}, app=app)


def slot_for(
    mode: CacheMode, headers: dict[str, str] | None = None, *, body: bytes = b"{}",
    operation: Operation = Operation.CHAT, stream: bool = False, key_id: str = "key_1",
    ttl_s: float = 60.0,
) -> CacheSlot | None:
    request = request_for(mode, headers, ttl_s)
    return cache_slot(request, principal(key_id), operation, stream, body)


def test_key_mode_caches_non_streaming_chat_completions_and_embeddings_only() -> None:
    for operation in (Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS):
        assert slot_for(CacheMode.KEY, operation=operation) is not None
    for operation in (Operation.RESPONSES, Operation.IMAGE_GENERATIONS,
                      Operation.AUDIO_TRANSCRIPTIONS):
        assert slot_for(CacheMode.KEY, operation=operation) is None
    assert slot_for(CacheMode.KEY, stream=True) is None
    assert slot_for(CacheMode.OFF, {"x-apirelay-cache": "on"}) is None


def test_the_header_turns_the_cache_on_or_off_per_request() -> None:
    assert slot_for(CacheMode.HEADER) is None
    assert slot_for(CacheMode.HEADER, {"x-apirelay-cache": "ON"}) is not None
    assert slot_for(CacheMode.HEADER, {"x-apirelay-cache": "off"}) is None
    assert slot_for(CacheMode.KEY, {"x-apirelay-cache": "off"}) is None


def test_entries_are_named_per_key_and_per_body() -> None:
    names = {
        slot.name for slot in (
            slot_for(CacheMode.KEY), slot_for(CacheMode.KEY, key_id="key_2"),
            slot_for(CacheMode.KEY, body=b'{"a":1}'), slot_for(CacheMode.KEY),
        ) if slot is not None
    }
    assert len(names) == 3
    assert all(name.startswith(("key_1:", "key_2:")) for name in names)


def test_the_ttl_header_only_shortens() -> None:
    short = slot_for(CacheMode.KEY, {"x-apirelay-cache-ttl": "5"})
    long = slot_for(CacheMode.KEY, {"x-apirelay-cache-ttl": "3600"})
    assert short is not None and short.ttl_s == 5.0
    assert long is not None and long.ttl_s == 60.0


@pytest.mark.parametrize("headers", [
    {"x-apirelay-cache": "yes please"}, {"x-apirelay-cache-ttl": "0"},
    {"x-apirelay-cache-ttl": "1.5"}, {"x-apirelay-cache-ttl": "-3"},
    {"x-apirelay-cache-ttl": "\u0661"},
])
def test_a_malformed_cache_header_is_400(headers: dict[str, str]) -> None:
    with pytest.raises(ApiError) as caught:
        slot_for(CacheMode.KEY, headers)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_cache_header"


class DownStore:
    """A store whose Redis is unreachable."""

    async def get(self, name: str) -> CachedAnswer | None:
        raise redis_errors.ConnectionError("refused")

    async def put(self, name: str, answer: CachedAnswer, ttl_s: float) -> None:
        raise redis_errors.TimeoutError("slow")

    async def close(self) -> None:
        """Nothing to close."""


async def test_a_store_outage_is_a_miss_not_an_error() -> None:
    slot = CacheSlot(DownStore(), "key_1:x", 60.0)
    assert await slot.get() is None
    await slot.put(b"{}", "application/json", USAGE, UsageSource.UPSTREAM)


async def test_the_slot_keeps_answers_up_to_the_size_cap() -> None:
    store = MemoryResponseCache(10)
    slot = CacheSlot(store, "key_1:x", 60.0)
    await slot.put(b"x" * (MAX_CACHED_BODY_BYTES + 1), "application/json", USAGE,
                   UsageSource.UPSTREAM)
    assert await slot.get() is None
    await slot.put(ANSWER.body, ANSWER.content_type, USAGE, UsageSource.UPSTREAM)
    assert await slot.get() == ANSWER
