"""The in-memory idempotency store's state machine, and the key/fingerprint rules."""

from __future__ import annotations

import pytest

from edge.errors import ApiError
from edge.idempotency import (
    Claimed,
    InFlight,
    MemoryIdempotencyStore,
    Mismatch,
    Replay,
    StoredResponse,
)
from edge.idempotent import check_key, fingerprint, storable

OK = StoredResponse(200, b'{"id": "chatcmpl-1"}', "application/json")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryIdempotencyStore:
    return MemoryIdempotencyStore(ttl_s=60.0, pending_ttl_s=5.0, max_entries=3, clock=clock)


async def test_claim_then_in_flight_then_replay(store: MemoryIdempotencyStore) -> None:
    assert await store.claim("key_1", "k", "fp") == Claimed()
    assert await store.claim("key_1", "k", "fp") == InFlight()
    await store.complete("key_1", "k", "fp", OK)
    assert await store.claim("key_1", "k", "fp") == Replay(OK)


async def test_a_different_fingerprint_is_a_mismatch_pending_or_done(
    store: MemoryIdempotencyStore,
) -> None:
    await store.claim("key_1", "k", "fp")
    assert await store.claim("key_1", "k", "other") == Mismatch()
    await store.complete("key_1", "k", "fp", OK)
    assert await store.claim("key_1", "k", "other") == Mismatch()


async def test_keys_are_scoped_by_api_key(store: MemoryIdempotencyStore) -> None:
    await store.claim("key_1", "k", "fp")
    assert await store.claim("key_2", "k", "other") == Claimed()


async def test_records_expire_after_the_ttl(store: MemoryIdempotencyStore, clock: Clock) -> None:
    await store.claim("key_1", "k", "fp")
    clock.now += 4.0
    await store.complete("key_1", "k", "fp", OK)  # the TTL now counts from completion
    clock.now += 59.9
    assert await store.claim("key_1", "k", "other") == Mismatch()
    clock.now += 0.1
    assert await store.claim("key_1", "k", "other") == Claimed()


async def test_a_pending_claim_of_a_dead_request_lapses_after_the_pending_ttl(
    store: MemoryIdempotencyStore, clock: Clock
) -> None:
    await store.claim("key_1", "k", "fp")  # its edge dies: never completed nor abandoned
    clock.now += 4.9
    assert await store.claim("key_1", "k", "fp") == InFlight()
    clock.now += 0.1
    assert await store.claim("key_1", "k", "fp") == Claimed()


async def test_abandon_lets_a_retry_claim_again(store: MemoryIdempotencyStore) -> None:
    await store.claim("key_1", "k", "fp")
    await store.abandon("key_1", "k")
    assert await store.claim("key_1", "k", "fp") == Claimed()


async def test_abandon_and_complete_leave_a_finished_record(store: MemoryIdempotencyStore) -> None:
    await store.claim("key_1", "k", "fp")
    await store.complete("key_1", "k", "fp", OK)
    await store.abandon("key_1", "k")
    await store.complete("key_1", "k", "fp", StoredResponse(500, b"", "application/json"))
    assert await store.claim("key_1", "k", "fp") == Replay(OK)


async def test_the_oldest_record_is_evicted_when_full(store: MemoryIdempotencyStore) -> None:
    for key in ("a", "b", "c"):
        await store.claim("key_1", key, "fp")
    assert await store.claim("key_1", "d", "fp") == Claimed()
    assert await store.claim("key_1", "a", "fp") == Claimed()  # "a" was evicted
    assert await store.claim("key_1", "c", "fp") == InFlight()  # "b" went for the new "a"


def test_the_fingerprint_covers_method_path_and_body() -> None:
    base = fingerprint("POST", "/v1/chat/completions", b"{}")
    assert base == fingerprint("POST", "/v1/chat/completions", b"{}")
    assert base != fingerprint("POST", "/v1/chat/completions", b"{ }")
    assert base != fingerprint("POST", "/v1/completions", b"{}")
    assert base != fingerprint("PUT", "/v1/chat/completions", b"{}")


@pytest.mark.parametrize("raw", ["", "x" * 256, "tab\there", "caf\u00e9", "nl\n"])
def test_malformed_keys_are_refused(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_key(raw)
    assert (caught.value.status, caught.value.code) == (400, "invalid_idempotency_key")
    assert caught.value.param is None


def test_good_keys_pass() -> None:
    assert check_key("x" * 255) == "x" * 255
    assert check_key("a1b2-c3 d4") == "a1b2-c3 d4"


@pytest.mark.parametrize(("status", "kept"), [
    (200, True), (201, True), (400, True), (404, True), (422, True),
    (409, False), (429, False), (499, False), (500, False), (503, False),
])
def test_only_final_answers_are_stored(status: int, kept: bool) -> None:
    assert storable(status) is kept
