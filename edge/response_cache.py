"""The optional exact response cache, as the request flow (edge.flow) uses it.

Off by default. With EDGE_RESPONSE_CACHE=key every non-streaming chat, completions and
embeddings answer (2xx) is kept per API key under sha256(method, path, body bytes); with
`header` only requests sending `x-apirelay-cache: on` are looked up and kept. Either way
`x-apirelay-cache: off` skips the cache and `x-apirelay-cache-ttl: N` keeps the answer at
most N seconds (never longer than EDGE_RESPONSE_CACHE_TTL_S). Exact means the same bytes:
`temperature`, `n` and `seed` are part of the body, so a sampled answer is replayed as it
was; a client wanting a fresh sample sends `x-apirelay-cache: off` or another body.

A hit calls no upstream and answers the stored body with `x-apirelay-cache: hit`. It is
billed as EDGE_RESPONSE_CACHE_BILLING says: `full` holds and settles the stored usage like
a normal request (the cost priced at this request's tariff; TPM counts the stored tokens);
`free` places no hold and charges nothing, and takes a lease with 0 tokens, so RPM,
concurrency and RPD count the hit while TPM does not.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from redis import exceptions as redis_errors

from edge.admission import admit, rate_limited
from edge.catalog import require_model
from edge.config import CacheBilling, CacheMode
from edge.cost import COST_HEADER, CostReporter, add_cost_to_json, usd
from edge.domain import LimitState, Operation, Principal, Usage, UsageSource
from edge.errors import ApiError, UpstreamError, from_upstream
from edge.estimate import Estimate
from edge.idempotent import fingerprint
from edge.keys import CATALOG, CLIENTS, REQUEST_ID, RESPONSE_CACHE, SETTINGS, SETTLER
from edge.limits import ratelimit_headers
from edge.metrics import RESPONSE_CACHE_LOOKUPS
from edge.openai.errors import ErrorCode, ErrorType
from edge.outcome import Metering, Outcome
from edge.response_cache_store import CachedAnswer, ResponseCacheStore

logger = logging.getLogger(__name__)

CACHE_HEADER = "x-apirelay-cache"
CACHE_TTL_HEADER = "x-apirelay-cache-ttl"
CACHE_CHANNEL = "cache"  # the channel a hit's usage record names: no upstream served it
CACHEABLE = frozenset({Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS})
# Larger answers (big embedding batches) go uncached rather than fill memory or Redis.
MAX_CACHED_BODY_BYTES = 4 * 1024 * 1024
_STORE_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_SWITCH = {"on": True, "off": False}


@dataclass(frozen=True, slots=True)
class CacheSlot:
    """Where one request's answer is looked up and kept."""

    store: ResponseCacheStore
    name: str
    ttl_s: float

    async def get(self) -> CachedAnswer | None:
        """The stored answer, or None (also when the store is down or the entry unreadable)."""
        try:
            answer = await self.store.get(self.name)
        except _STORE_DOWN as exc:
            logger.warning("response cache unavailable: %s", type(exc).__name__)
            answer = None
        except (KeyError, TypeError, ValueError) as exc:  # written by an incompatible edge
            logger.warning("unreadable response cache entry: %s", type(exc).__name__)
            answer = None
        RESPONSE_CACHE_LOOKUPS.labels("miss" if answer is None else "hit").inc()
        return answer

    async def put(self, body: bytes, content_type: str, usage: Usage, source: UsageSource) -> None:
        """Keep a successful answer (without its cost) and the usage it was billed for."""
        if len(body) > MAX_CACHED_BODY_BYTES:
            return
        try:
            await self.store.put(self.name, CachedAnswer(body, content_type, usage, source),
                                 self.ttl_s)
        except _STORE_DOWN as exc:
            logger.warning("could not keep a response in the cache: %s", type(exc).__name__)


def cache_slot(
    request: web.Request, principal: Principal, operation: Operation, stream: bool, body: bytes
) -> CacheSlot | None:
    """The request's cache slot, or None when the cache is not used for it (400 on a bad header)."""
    settings = request.app[SETTINGS]
    mode = settings.response_cache
    if mode is CacheMode.OFF or stream or operation not in CACHEABLE:
        return None
    wanted = _switch(request.headers.get(CACHE_HEADER))
    if wanted is False or (mode is CacheMode.HEADER and wanted is not True):
        return None
    ttl_s = _ttl(request.headers.get(CACHE_TTL_HEADER), settings.response_cache_ttl_s)
    # The key id scopes the entry: one key never sees another key's answers.
    name = f"{principal.key_id}:{fingerprint(request.method, request.path, body)}"
    return CacheSlot(request.app[RESPONSE_CACHE], name, ttl_s)


def _bad_header(name: str, expected: str) -> ApiError:
    return ApiError(400, ErrorType.INVALID_REQUEST, f"The {name} header must be {expected}.",
                    code=ErrorCode.INVALID_CACHE_HEADER)


def _switch(raw: str | None) -> bool | None:
    if raw is None:
        return None
    wanted = _SWITCH.get(raw.strip().lower())
    if wanted is None:
        raise _bad_header(CACHE_HEADER, "'on' or 'off'")
    return wanted


def _ttl(raw: str | None, longest_s: float) -> float:
    if raw is None:
        return longest_s
    seconds = raw.strip()
    if not (seconds.isascii() and seconds.isdigit() and int(seconds) > 0):
        raise _bad_header(CACHE_TTL_HEADER, "a whole number of seconds, at least 1")
    return min(float(seconds), longest_s)


async def serve_hit(
    request: web.Request, principal: Principal, model: str, answer: CachedAnswer,
    headers: dict[str, str],
) -> web.Response:
    """Answer `answer` again, admitted and billed as EDGE_RESPONSE_CACHE_BILLING says."""
    await require_model(request.app[CATALOG], principal, model)
    if request.app[SETTINGS].response_cache_billing is CacheBilling.FREE:
        states, nanos = await _admit_free(request, principal, model)
    else:
        states, nanos = await _admit_full(request, principal, model, answer)
    headers.update(ratelimit_headers(states))
    headers[CACHE_HEADER] = "hit"
    body = answer.body
    if nanos is not None:
        headers[COST_HEADER] = usd(nanos)
        if answer.content_type.startswith("application/json"):
            body = add_cost_to_json(body, nanos) or body
    headers["Content-Type"] = answer.content_type
    return web.Response(body=body, headers=headers)


async def _admit_full(
    request: web.Request, principal: Principal, model: str, answer: CachedAnswer
) -> tuple[tuple[LimitState, ...], int | None]:
    app, request_id = request.app, request[REQUEST_ID]
    usage = answer.usage
    # The stored usage is exactly what the hit will settle: hold and count just that.
    estimate = Estimate(usage.prompt_tokens, usage.completion_tokens, usage.units)
    admission = await admit(app[CLIENTS], app[SETTLER], principal, request_id, model, estimate)
    outcome = Outcome(request_id, principal.key_id, admission.lease.lease_id,
                      usage.prompt_tokens, Metering(units=usage.units))
    outcome.record_usage(usage, answer.usage_source, CACHE_CHANNEL)
    outcome.completed = True
    app[SETTLER].finish(outcome)
    cost = CostReporter(admission.reservation, app[SETTINGS].report_cost)
    return admission.lease.states, cost.nanos(usage)


async def _admit_free(
    request: web.Request, principal: Principal, model: str
) -> tuple[tuple[LimitState, ...], int | None]:
    app, request_id = request.app, request[REQUEST_ID]
    limiter, settler = app[CLIENTS].ratelimit, app[SETTLER]
    possible, call = limiter.start_acquire(request_id, principal, model, 0)
    acquire = asyncio.ensure_future(call)
    try:
        lease = await asyncio.shield(acquire)
    except asyncio.CancelledError:
        settler.undo(request_id, principal.key_id, hold=False, lease_id=possible, after=acquire)
        raise
    except UpstreamError as exc:  # the call's effect is unknown: release what it may hold
        settler.undo(request_id, principal.key_id, hold=False, lease_id=possible)
        raise from_upstream(exc) from None
    if not lease.allowed:
        raise rate_limited(lease, model)
    if lease.lease_id:  # the answer is already here: give the concurrency slot back now
        settler.undo(request_id, principal.key_id, hold=False, lease_id=lease.lease_id)
    return lease.states, 0 if app[SETTINGS].report_cost else None
