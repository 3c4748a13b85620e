"""`POST /v1/chat/completions`, streamed (SSE) or not.

Parsed and validated once, then run by the shared flow (edge.flow) with the client's
original body bytes.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from edge.endpoints import CHAT
from edge.estimate import estimate_chat
from edge.flow import JSON, Job, json_body, run
from edge.openai.chat import ChatCompletionRequest
from edge.openai.validation import parse_body

routes = web.RouteTableDef()


@routes.post("/v1/chat/completions")
async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    """Run one chat completion for the authenticated key."""
    body = await json_body(request)
    chat = parse_body(ChatCompletionRequest, body)
    job = Job(CHAT, chat.model, body, JSON, bool(chat.stream), partial(estimate_chat, chat))
    return await run(request, job)
