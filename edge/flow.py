"""The one request flow every endpoint shares once its body is validated.

    Idempotency-Key claim (non-streaming only) -> response cache lookup (if on; a hit
    is answered by edge.response_cache) -> model check -> estimate -> admission (lease
    and hold in parallel) -> router call -> answer (cost added; kept in the cache) ->
    settlement (always, exactly once, in the background)

Chat completions use the router's chat RPCs, every other endpoint Relay/StreamRelay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from edge.admission import admit
from edge.body import read_body, require_json, require_multipart
from edge.catalog import require_model
from edge.cost import COST_HEADER, CostReporter, add_cost_to_json, usd
from edge.domain import Completion, ModelInfo, Operation, Principal, Usage
from edge.endpoints import Endpoint
from edge.errors import ApiError, UpstreamError, from_failure, from_upstream
from edge.estimate import Estimate
from edge.idempotency import StoredResponse
from edge.idempotent import IDEMPOTENCY_HEADER, claim, replay
from edge.keys import (
    CATALOG,
    CLIENTS,
    IDEMPOTENCY,
    PRINCIPAL,
    REQUEST_ID,
    SETTINGS,
    SETTLER,
    SHOWN_REQUEST_ID,
    STARTED_AT,
)
from edge.limits import ratelimit_headers
from edge.outcome import Metering, Outcome
from edge.relay import StreamRelay, StreamSetup
from edge.response_cache import CACHE_HEADER, CacheSlot, cache_slot, serve_hit
from edge.router_client import RouterStream
from services.common.context import REQUEST_ID_HEADER

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Job:
    """One validated request, ready to run."""

    endpoint: Endpoint
    model: str
    body: bytes  # forwarded to the router exactly as the client sent it
    content_type: str
    stream: bool
    estimate: Callable[[ModelInfo], Estimate]
    digest: bytes | None = None  # identifies the request for Idempotency-Key (else body)


async def json_body(request: web.Request) -> bytes:
    """The JSON endpoint's body within EDGE_MAX_BODY_BYTES (400 for a form, 413)."""
    require_json(request)
    return await read_body(request, request.app[SETTINGS].max_body_bytes)


async def form_body(request: web.Request) -> tuple[bytes, str]:
    """The multipart body within EDGE_MAX_UPLOAD_BYTES, and its full content type."""
    content_type = require_multipart(request)
    return await read_body(request, request.app[SETTINGS].max_upload_bytes), content_type


async def run(request: web.Request, job: Job) -> web.StreamResponse:
    """Serve `job`; a non-streaming one with an Idempotency-Key runs under its claim."""
    principal = request[PRINCIPAL]
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    if raw_key is None or job.stream:
        # A stream cannot be replayed, so a streaming request ignores Idempotency-Key.
        return await _lookup(request, principal, job)
    digest = job.body if job.digest is None else job.digest
    claimed = await claim(request.app[IDEMPOTENCY], principal.key_id, raw_key, request, digest)
    if isinstance(claimed, StoredResponse):
        return replay(claimed, request[SHOWN_REQUEST_ID])
    return await claimed.run(_lookup(request, principal, job))


async def _lookup(request: web.Request, principal: Principal, job: Job) -> web.StreamResponse:
    """Answer from the response cache when it holds this request, else serve it."""
    slot = cache_slot(request, principal, job.endpoint.operation, job.stream, job.body)
    answer = None if slot is None else await slot.get()
    if answer is not None:
        headers = {REQUEST_ID_HEADER: request[SHOWN_REQUEST_ID]}
        return await serve_hit(request, principal, job.model, answer, headers)
    return await _serve(request, principal, job, slot)


async def _serve(
    request: web.Request, principal: Principal, job: Job, slot: CacheSlot | None = None
) -> web.StreamResponse:
    app, request_id = request.app, request[REQUEST_ID]
    model = await require_model(app[CATALOG], principal, job.model)
    estimate = job.estimate(model)
    admission = await admit(app[CLIENTS], app[SETTLER], principal, request_id, job.model,
                            estimate)
    endpoint = job.endpoint
    metering = Metering(endpoint.chunk_texts, estimate.units, endpoint.units_billed)
    outcome = Outcome(request_id, principal.key_id, admission.lease.lease_id,
                      estimate.prompt_tokens, metering,
                      max_completion=None if estimate.units else estimate.max_completion_tokens,
                      stream=job.stream, started_at=request[STARTED_AT])
    cost = CostReporter(admission.reservation, app[SETTINGS].report_cost)
    headers = {REQUEST_ID_HEADER: request[SHOWN_REQUEST_ID],
               **ratelimit_headers(admission.lease.states)}
    try:
        outcome.called = True
        if job.stream:
            return await _stream(request, principal, job, outcome, cost, headers)
        return await _complete(request, principal, job, outcome, cost, headers, slot)
    except ApiError as error:
        outcome.record_error(error)
        raise
    except asyncio.CancelledError:
        outcome.client_gone = True
        raise
    finally:
        app[SETTLER].finish(outcome)


async def _call(request: web.Request, principal: Principal, job: Job) -> Completion:
    router, request_id = request.app[CLIENTS].router, request[REQUEST_ID]
    timeout_s = request.app[SETTINGS].request_timeout_s
    operation = job.endpoint.operation
    try:
        if operation is Operation.CHAT:
            return await router.create(request_id, job.model, job.body, principal, timeout_s)
        return await router.relay(request_id, operation, job.model, job.body,
                                  job.content_type, principal, timeout_s)
    except UpstreamError as exc:
        raise from_upstream(exc) from None


def _open_stream(request: web.Request, principal: Principal, job: Job) -> RouterStream:
    router, request_id = request.app[CLIENTS].router, request[REQUEST_ID]
    timeout_s = request.app[SETTINGS].request_timeout_s
    operation = job.endpoint.operation
    if operation is Operation.CHAT:
        return router.stream(request_id, job.model, job.body, principal, timeout_s)
    return router.stream_relay(request_id, operation, job.model, job.body, job.content_type,
                               principal, timeout_s)


async def _complete(
    request: web.Request, principal: Principal, job: Job, outcome: Outcome,
    cost: CostReporter, headers: dict[str, str], slot: CacheSlot | None,
) -> web.Response:
    result = await _call(request, principal, job)
    failed = result.failure is not None
    outcome.record_usage(result.usage, result.usage_source, result.channel, failed=failed)
    if result.failure is not None:
        raise from_failure(result.failure)
    outcome.completed = True
    if result.usage is None or result.usage.completion_tokens <= 0:
        # Read only when usage is missing or reports no output: edge.usage_guard checks it.
        outcome.delivered.extend(job.endpoint.body_texts(result.body))
    body = result.body
    final = outcome.final_usage()
    nanos = None if final is None else cost.nanos(final[0])
    if slot is not None and final is not None:
        await slot.put(body, result.content_type, *final)
        headers[CACHE_HEADER] = "miss"
    if nanos is not None:
        headers[COST_HEADER] = usd(nanos)
        if result.content_type.startswith(JSON):
            body = add_cost_to_json(body, nanos) or body
    headers["Content-Type"] = result.content_type
    outcome.mark_first_byte()  # the whole answer goes out now
    return web.Response(body=body, headers=headers)


async def _stream(
    request: web.Request, principal: Principal, job: Job, outcome: Outcome,
    cost: CostReporter, headers: dict[str, str],
) -> web.StreamResponse:
    stream_format = job.endpoint.stream_format
    if stream_format is None:  # the routes never stream such an endpoint
        raise RuntimeError(f"{job.endpoint.operation.value} cannot stream")
    if not stream_format.sse:
        # Binary audio cannot carry a usage object; its charge (the estimate's units,
        # billed once audio flows, which is when headers go out) is known up front.
        nanos = cost.nanos(Usage(0, 0, 0, units=outcome.metering.units))
        if nanos is not None:
            headers[COST_HEADER] = usd(nanos)
    setup = StreamSetup(stream_format, request.app[SETTINGS].keepalive_s, cost,
                        job.endpoint.operation.value)
    relay = StreamRelay(_open_stream(request, principal, job), outcome, setup)
    return await relay.run(request, headers)
