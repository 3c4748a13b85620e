"""A fake OpenAI-compatible upstream for end-to-end tests: counts calls, speaks the wire format."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

REPLY_WORDS = ["Fake", " upstream", " says", " hi", "."]


@dataclass
class FakeOpenAI:
    """Records what it received; answers chat completions, streaming or not."""

    calls: list[dict[str, object]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.calls.append(body)
        self.authorizations.append(request.headers.get("authorization", ""))
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
        usage = {"prompt_tokens": 11, "completion_tokens": len(REPLY_WORDS), "total_tokens": 16}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": "".join(REPLY_WORDS)}}],
                "usage": usage})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**base, "object": "chat.completion.chunk"}
        deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in REPLY_WORDS]
        for delta in deltas:
            event = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + orjson.dumps(end) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(b"data: " + orjson.dumps({**chunk, "choices": [], "usage": usage})
                                 + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


async def start_fake_openai() -> tuple[FakeOpenAI, TestServer]:
    """Start the fake on 127.0.0.1; the caller closes the server."""
    fake = FakeOpenAI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    return fake, server
