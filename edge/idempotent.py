"""`Idempotency-Key` on one request: check the key, claim it, and store or drop the result.

A retry with the same key and body gets the stored response back (`idempotent-replayed:
true`) without reaching the router or billing; a different body gets 422; a retry while
the first is still running gets 409. Both carry `x-should-retry: false`: the official
OpenAI SDKs retry a 409 by themselves otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from aiohttp import web
from redis import exceptions as redis_errors

from edge.errors import CLIENT_CLOSED_REQUEST, ApiError
from edge.idempotency import (
    IdempotencyStore,
    InFlight,
    Mismatch,
    Replay,
    StoredResponse,
)
from edge.openai.errors import ErrorCode, ErrorType
from services.common.context import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "idempotent-replayed"
MAX_KEY_LENGTH = 255
_RETRYABLE = (409, 429, CLIENT_CLOSED_REQUEST)
_NO_RETRY = {"x-should-retry": "false"}
_STORE_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError)


def fingerprint(method: str, path: str, body: bytes) -> str:
    """sha256 over the method, the path and the raw body bytes."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode()):
        digest.update(part)
        digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def check_key(raw: str) -> str:
    """The key itself, or 400 if it is empty, too long or not printable ASCII."""
    if not raw or len(raw) > MAX_KEY_LENGTH or not (raw.isascii() and raw.isprintable()):
        raise ApiError(
            400, ErrorType.INVALID_REQUEST,
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            code=ErrorCode.INVALID_IDEMPOTENCY_KEY,
        )
    return raw


def storable(status: int) -> bool:
    """Whether a response is final: 2xx, or a 4xx other than 409, 429 and 499."""
    return 200 <= status < 300 or (400 <= status < 500 and status not in _RETRYABLE)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A claimed key: `run` the request under it."""

    store: IdempotencyStore
    scope: str
    key: str
    fingerprint: str

    async def run(self, handler: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        """Await `handler`; keep a final answer for replays, drop the claim otherwise."""
        try:
            response = await handler
        except ApiError as error:
            await self._finish(error.status, error.body(), "application/json")
            raise
        except BaseException:
            await asyncio.shield(self._abandon())
            raise
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            await self._finish(response.status, response.body, response.content_type)
        else:  # only whole bodies can be replayed
            await self._abandon()
        return response

    async def _finish(self, status: int, body: bytes, content_type: str) -> None:
        if not storable(status):
            await self._abandon()
            return
        try:
            stored = StoredResponse(status, body, content_type)
            await self.store.complete(self.scope, self.key, self.fingerprint, stored)
        except _STORE_DOWN as exc:
            logger.warning("could not store an idempotent response: %s", type(exc).__name__)

    async def _abandon(self) -> None:
        try:
            await self.store.abandon(self.scope, self.key)
        except _STORE_DOWN as exc:
            logger.warning("could not drop an idempotency claim: %s", type(exc).__name__)


async def claim(
    store: IdempotencyStore, scope: str, raw_key: str, request: web.Request, body: bytes
) -> Ticket | StoredResponse:
    """A Ticket for a new key, the stored response of a finished one, or 409/422/503."""
    key = check_key(raw_key)
    print_ = fingerprint(request.method, request.path, body)
    try:
        result = await store.claim(scope, key, print_)
    except _STORE_DOWN as exc:
        logger.warning("idempotency store unavailable: %s", type(exc).__name__)
        raise ApiError(503, ErrorType.SERVER, "The service is temporarily unavailable. "
                       "Please retry shortly.") from None
    if isinstance(result, Replay):
        return result.stored
    if isinstance(result, Mismatch):
        raise ApiError(
            422, ErrorType.INVALID_REQUEST,
            "This Idempotency-Key was already used with a different request body.",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED, headers=_NO_RETRY,
        )
    if isinstance(result, InFlight):
        raise ApiError(
            409, ErrorType.INVALID_REQUEST,
            "A request with this Idempotency-Key is still in progress; retry after it finishes.",
            code=ErrorCode.IDEMPOTENCY_KEY_IN_USE, headers=_NO_RETRY,
        )
    return Ticket(store, scope, key, print_)


def replay(stored: StoredResponse, request_id: str) -> web.Response:
    """The stored response again, with this request's id."""
    return web.Response(
        status=stored.status, body=stored.body, content_type=stored.content_type,
        headers={REQUEST_ID_HEADER: request_id, REPLAYED_HEADER: "true"},
    )
