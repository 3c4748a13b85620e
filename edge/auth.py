"""Bearer key to principal, through a short in-process cache in front of AuthService.

The cache is keyed by the SHA-256 of the secret, never the secret itself, holds only
allowed principals, and forgets them after the TTL, so a revoked key stops working
within that TTL. While AuthService is down, cached principals keep working until
their TTL; unknown keys get 503.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from edge.domain import AuthOutcome, Principal
from edge.errors import ApiError, UpstreamError, from_upstream
from edge.openai.errors import ErrorCode, ErrorType

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

_MISSING = "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
_INVALID = "Incorrect API key provided."
_MESSAGES = {
    AuthOutcome.UNKNOWN_KEY: _INVALID,
    AuthOutcome.REVOKED: "The API key provided has been revoked.",
    AuthOutcome.ACCOUNT_DISABLED: "The account of the API key provided is disabled.",
}


class PrincipalCache:
    """A bounded TTL cache of principals keyed by secret digest."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Clock = time.monotonic):
        self._ttl = ttl_s
        self._max = max(1, max_entries)
        self._clock = clock
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    def get(self, digest: bytes) -> Principal | None:
        """The cached principal, or None if absent or expired."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, digest: bytes, principal: Principal) -> None:
        """Remember `principal` for the TTL, evicting the oldest entry when full."""
        self._entries.pop(digest, None)
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (self._clock() + self._ttl, principal)

    def __len__(self) -> int:
        return len(self._entries)


def secret_digest(secret: str) -> bytes:
    """The cache key of a secret."""
    return hashlib.sha256(secret.encode()).digest()


def bearer_secret(authorization: str | None) -> str:
    """The key from an `Authorization: Bearer <key>` header ("" when absent)."""
    if not authorization:
        return ""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def invalid_key(message: str) -> ApiError:
    """OpenAI's 401 for a missing or bad key."""
    return ApiError(401, ErrorType.INVALID_REQUEST, message, code=ErrorCode.INVALID_API_KEY)


class KeyResolver(Protocol):
    """What the Authenticator needs of AuthService (edge.clients.AuthClient)."""

    async def authenticate(
        self, secret: str, request_id: str
    ) -> tuple[AuthOutcome, Principal | None]:
        """The decision for `secret` and, when allowed, its principal."""


class Authenticator:
    """Resolves the Authorization header into a principal."""

    def __init__(self, client: KeyResolver, cache: PrincipalCache) -> None:
        self._client = client
        self._cache = cache

    async def authenticate(self, authorization: str | None, request_id: str) -> Principal:
        """The principal, or ApiError 401 (bad key) / 503 (auth down, key not cached)."""
        secret = bearer_secret(authorization)
        if not secret:
            raise invalid_key(_MISSING)
        digest = secret_digest(secret)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        try:
            outcome, principal = await self._client.authenticate(secret, request_id)
        except UpstreamError as exc:
            raise from_upstream(exc) from None
        if principal is None:
            raise invalid_key(_MESSAGES.get(outcome, _INVALID))
        self._cache.put(digest, principal)
        return principal
