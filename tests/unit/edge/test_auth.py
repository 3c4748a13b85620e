"""edge.auth: the principal cache (fake clock) and the Authenticator."""

from __future__ import annotations

import grpc
import pytest

from edge.auth import Authenticator, PrincipalCache, bearer_secret, secret_digest
from edge.domain import AuthOutcome, Principal
from edge.errors import ApiError, UpstreamError
from services.common.limits_config import LimitValues

ALICE = Principal("k1", "a1", "alice", "default", frozenset(), LimitValues(60, 1000, 2))


class FakeClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeResolver:
    """Answers from a dict; can be made to fail."""

    def __init__(self) -> None:
        self.known = {"sk-alice": ALICE}
        self.calls = 0
        self.fail: grpc.StatusCode | None = None

    async def authenticate(
        self, secret: str, request_id: str
    ) -> tuple[AuthOutcome, Principal | None]:
        self.calls += 1
        if self.fail is not None:
            raise UpstreamError("auth", self.fail, "down")
        if secret == "sk-revoked":
            return AuthOutcome.REVOKED, None
        found = self.known.get(secret)
        return (AuthOutcome.ALLOWED, found) if found else (AuthOutcome.UNKNOWN_KEY, None)


def test_cache_expires_after_the_ttl() -> None:
    clock = FakeClock()
    cache = PrincipalCache(ttl_s=5, clock=clock)
    cache.put(b"d", ALICE)
    clock.now += 4.9
    assert cache.get(b"d") is ALICE
    clock.now += 0.1
    assert cache.get(b"d") is None
    assert len(cache) == 0


def test_cache_is_bounded_and_evicts_the_oldest() -> None:
    cache = PrincipalCache(ttl_s=5, max_entries=2, clock=FakeClock())
    for key in (b"a", b"b", b"c"):
        cache.put(key, ALICE)
    assert len(cache) == 2
    assert cache.get(b"a") is None and cache.get(b"c") is ALICE


def test_digest_never_contains_the_secret() -> None:
    digest = secret_digest("sk-alice")
    assert len(digest) == 32 and b"sk-alice" not in digest


@pytest.mark.parametrize(
    ("header", "secret"),
    [("Bearer sk-1", "sk-1"), ("bearer  sk-1 ", "sk-1"), ("Basic abc", ""), ("", ""),
     (None, ""), ("Bearer", "")],
)
def test_bearer_secret(header: str | None, secret: str) -> None:
    assert bearer_secret(header) == secret


async def test_authenticator_caches_allowed_principals_for_the_ttl() -> None:
    clock, resolver = FakeClock(), FakeResolver()
    auth = Authenticator(resolver, PrincipalCache(ttl_s=5, clock=clock))
    assert await auth.authenticate("Bearer sk-alice", "r1") is ALICE
    assert await auth.authenticate("Bearer sk-alice", "r2") is ALICE
    assert resolver.calls == 1
    clock.now += 5
    await auth.authenticate("Bearer sk-alice", "r3")
    assert resolver.calls == 2


@pytest.mark.parametrize("header", [None, "Bearer sk-unknown", "Bearer sk-revoked"])
async def test_authenticator_rejects_with_openais_401(header: str | None) -> None:
    auth = Authenticator(FakeResolver(), PrincipalCache(ttl_s=5, clock=FakeClock()))
    with pytest.raises(ApiError) as caught:
        await auth.authenticate(header, "r1")
    error = caught.value
    assert (error.status, error.type, error.code) == (401, "invalid_request_error",
                                                      "invalid_api_key")


async def test_rejections_are_not_cached() -> None:
    resolver = FakeResolver()
    auth = Authenticator(resolver, PrincipalCache(ttl_s=5, clock=FakeClock()))
    for _ in range(2):
        with pytest.raises(ApiError):
            await auth.authenticate("Bearer sk-unknown", "r1")
    assert resolver.calls == 2


async def test_auth_down_serves_cached_keys_until_their_ttl_then_503() -> None:
    clock, resolver = FakeClock(), FakeResolver()
    auth = Authenticator(resolver, PrincipalCache(ttl_s=5, clock=clock))
    await auth.authenticate("Bearer sk-alice", "r1")
    resolver.fail = grpc.StatusCode.UNAVAILABLE
    assert await auth.authenticate("Bearer sk-alice", "r2") is ALICE
    clock.now += 6
    with pytest.raises(ApiError) as caught:
        await auth.authenticate("Bearer sk-alice", "r3")
    assert (caught.value.status, caught.value.type) == (503, "server_error")
