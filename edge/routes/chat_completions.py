"""`POST /v1/chat/completions`, streamed (SSE) or not.

Parse and validate once, check the model, estimate, admit (lease and hold in
parallel), then call the router with the client's original body bytes. However the
request ends, its Outcome goes to the Settler exactly once. A non-streaming request with
an `Idempotency-Key` is claimed after validation and before admission (`edge.idempotent`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from edge.admission import admit, ratelimit_headers
from edge.catalog import require_model
from edge.clients import RouterClient
from edge.domain import Principal
from edge.errors import UpstreamError, from_failure, from_upstream
from edge.estimate import estimate_chat, message_texts
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
    STARTED_AT,
)
from edge.openai.chat import ChatCompletionRequest
from edge.openai.validation import parse_body
from edge.relay import StreamRelay
from edge.settlement import Outcome
from services.common.context import REQUEST_ID_HEADER

routes = web.RouteTableDef()


@routes.post("/v1/chat/completions")
async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    """Run one chat completion for the authenticated key."""
    principal = request[PRINCIPAL]
    body = await request.read()
    chat = parse_body(ChatCompletionRequest, body)
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    if raw_key is None or chat.stream:
        # A stream cannot be replayed, so `stream: true` ignores Idempotency-Key.
        return await _serve(request, principal, chat, body)
    claimed = await claim(request.app[IDEMPOTENCY], principal.key_id, raw_key, request, body)
    if isinstance(claimed, StoredResponse):
        return replay(claimed, request[REQUEST_ID])
    return await claimed.run(_serve(request, principal, chat, body))


async def _serve(
    request: web.Request, principal: Principal, chat: ChatCompletionRequest, body: bytes
) -> web.StreamResponse:
    app, settings, request_id = request.app, request.app[SETTINGS], request[REQUEST_ID]
    model = await require_model(app[CATALOG], principal, chat.model)
    estimate = estimate_chat(chat, model)
    lease = await admit(app[CLIENTS], app[SETTLER], principal, request_id, chat.model, estimate)
    outcome = Outcome(request_id, principal.key_id, lease.lease_id, estimate.prompt_tokens)
    headers = {REQUEST_ID_HEADER: request_id, **ratelimit_headers(lease.states)}
    router = app[CLIENTS].router
    try:
        if chat.stream:
            stream = router.stream(request_id, chat.model, body, principal,
                                   settings.request_timeout_s)
            relay = StreamRelay(stream, outcome, settings.keepalive_s, request[STARTED_AT])
            return await relay.run(request, headers)
        return await _complete(router, outcome, principal, chat.model, body, headers,
                               settings.request_timeout_s)
    except asyncio.CancelledError:
        outcome.client_gone = True
        raise
    finally:
        app[SETTLER].finish(outcome)


async def _complete(
    router: RouterClient,
    outcome: Outcome,
    principal: Principal,
    model: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> web.Response:
    try:
        completion = await router.create(outcome.request_id, model, body, principal, timeout_s)
    except UpstreamError as exc:
        raise from_upstream(exc) from None
    outcome.record_usage(completion.usage, completion.usage_source, completion.channel)
    if completion.failure is not None:
        raise from_failure(completion.failure)
    outcome.completed = True
    if completion.usage is None:
        outcome.delivered.extend(message_texts(completion.body))
    return web.Response(body=completion.body, content_type="application/json", headers=headers)
