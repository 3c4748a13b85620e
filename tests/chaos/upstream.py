"""The BL-1 upstream: a deterministic OpenAI chat server with a call log, in its own process.

`python -m tests.chaos.upstream PORT` serves `POST /v1/chat/completions` on 127.0.0.1.
Each answer follows the plan in the request's last user message (tests/chaos/plan.py):
`pieces` content chunks (paced, so disconnects and kills land mid-stream), then the
finish chunk and the usage chunk. Faults: no usage at all; 503 before the first byte
on a request's first attempt; a stream whose connection ends after `cut_after` content
chunks (the chunked body is left unterminated, so the client sees a broken transfer).

`GET /_calls` returns the call log: one entry per attempt, with what was sent and how it
ended ("complete", "cut", "refused", or "peer_gone" when the caller went away first).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.chaos import plan as plans

REQUEST_ID_HEADER = "x-request-id"


@dataclass
class Call:
    """One attempt as the upstream saw it."""

    request_id: str
    attempt: int
    model: str
    stream: bool
    pieces: int
    fault: str
    status: int = 200
    end: str = ""
    sent: int = 0  # content chunks handed to the connection
    usage_sent: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    started: float = field(default_factory=time.time)


class Upstream:
    """The server's state: the call log and attempts per request id."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._attempts: dict[str, int] = {}

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/_calls", self._calls)
        return app

    async def _calls(self, _request: web.Request) -> web.Response:
        body = orjson.dumps([asdict(c) for c in self.calls])
        return web.Response(body=body, content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        request_id = request.headers.get(REQUEST_ID_HEADER, "")
        prompt = _last_user_text(body)
        order = plans.read_order(prompt) or plans.UpstreamOrder(3, plans.UpstreamFault.NONE, 0)
        attempt = self._attempts[request_id] = self._attempts.get(request_id, 0) + 1
        model = str(body.get("model", ""))
        call = Call(request_id, attempt, model, bool(body.get("stream")), order.pieces,
                    order.fault.value)
        if order.fault is not plans.UpstreamFault.OMIT_USAGE:
            call.prompt_tokens = plans.reported_prompt_tokens(prompt)
            call.completion_tokens = plans.reported_completion_tokens(order.pieces)
            call.cached_tokens = plans.reported_cached_tokens(model, call.prompt_tokens)
        self.calls.append(call)
        if order.fault is plans.UpstreamFault.ERROR_5XX and attempt == 1:
            call.status, call.end = 503, "refused"
            return web.json_response(_error(503), status=503)
        if not call.stream:
            call.sent, call.end = order.pieces, "complete"
            call.usage_sent = order.fault is not plans.UpstreamFault.OMIT_USAGE
            return web.json_response(_completion(call))
        return await self._stream(request, call, order)

    async def _stream(
        self, request: web.Request, call: Call, order: plans.UpstreamOrder
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        cut = order.cut_after if order.fault is plans.UpstreamFault.CUT else None
        try:
            await response.write(_event(_chunk(call, {"role": "assistant", "content": ""})))
            for index in range(order.pieces):
                if index == cut:
                    # Leave the chunked body unterminated: the reader sees a broken stream.
                    call.end = "cut"
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if index:
                    await asyncio.sleep(order.pace_ms / 1000)
                await response.write(_event(_chunk(call, {"content": plans.piece(index)})))
                call.sent += 1
            await response.write(_event(_chunk(call, {}, "stop")))
            if call.completion_tokens:
                await response.write(_event(_usage_chunk(call)))
                call.usage_sent = True
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            call.end = "complete"
        except (ConnectionResetError, ConnectionError):
            call.end = "peer_gone"
        return response


def _last_user_text(body: Any) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _usage(call: Call) -> dict[str, Any]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.prompt_tokens + call.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": call.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _chunk(call: Call, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{call.request_id}-{call.attempt}", "object": "chat.completion.chunk",
        "created": int(call.started), "model": call.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def _usage_chunk(call: Call) -> dict[str, Any]:
    chunk = _chunk(call, {})
    chunk["choices"], chunk["usage"] = [], _usage(call)
    return chunk


def _completion(call: Call) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-{call.request_id}-{call.attempt}", "object": "chat.completion",
        "created": int(call.started), "model": call.model,
        "choices": [{"index": 0, "message": {"role": "assistant",
                                             "content": plans.reply_text(call.pieces)},
                     "logprobs": None, "finish_reason": "stop"}],
    }
    if call.completion_tokens:
        body["usage"] = _usage(call)
    return body


def _error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"chaos upstream error {status}", "type": "server_error",
                      "param": None, "code": None}}


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    web.run_app(Upstream().app(), host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None)


if __name__ == "__main__":
    main()
