"""A fake OpenAI-compatible upstream for every relayed endpoint, and a router config
that puts it behind a dead channel and the mock (for the RouterService relay tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from tests.unit.router.scripted import ScriptedUpstream, Seen

UPSTREAM_KEY = "sk-fake-relay-key"
REPLY = "One two three four."


@dataclass
class FakeUpstream:
    """An OpenAI-compatible upstream for every relayed endpoint (the script records all)."""

    script: ScriptedUpstream
    streaming: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def received(self) -> list[Seen]:
        """Every request received, in order."""
        return self.script.seen

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer as each endpoint does; streams end as the request's prompt says."""
        body = await request.read()
        path = request.match_info["tail"]
        if path == "audio/transcriptions":
            return web.Response(body=b"transcribed\n", content_type="text/plain")
        if path == "images/edits":
            return web.json_response({"created": 1, "data": [{"b64_json": "eA=="}] * 2})
        if path == "embeddings":
            return web.json_response({"object": "list", "model": orjson.loads(body)["model"],
                                      "data": [{"object": "embedding", "index": 0,
                                                "embedding": [0.1]}],
                                      "usage": {"prompt_tokens": 6, "total_tokens": 6}})
        return await self._stream(request, path, orjson.loads(body))

    async def _stream(self, request: web.Request, path: str,
                      body: dict[str, object]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            if path == "responses":
                await self._endless_response(response)
            elif body.get("prompt") == "drop":
                await response.write(_sse(_text(" One"), _text(" two")))
                assert request.transport is not None
                request.transport.close()
            else:
                await response.write(_sse(*(CHAT if path == "chat/completions" else COMPLETION)))
                # A slow [DONE]: the usage chunk must still wait for the stream's end.
                await asyncio.sleep(0.2)
                await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return response

    async def _endless_response(self, response: web.StreamResponse) -> None:
        await response.write(b'event: response.created\ndata: {"type":"response.created",'
                             b'"sequence_number":0,"response":{"id":"resp_1"}}\n\n')
        for number in range(1, 500):  # up to 10 s, far more than any test waits
            await response.write(b'event: response.output_text.delta\ndata: {"type":'
                                 b'"response.output_text.delta","sequence_number":'
                                 + str(number).encode() + b',"delta":"x"}\n\n')
            self.streaming.set()
            await asyncio.sleep(0.02)


def _sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


def _text(text: str, finish: str | None = None) -> bytes:
    return orjson.dumps({"id": "cmpl-1", "object": "text_completion", "created": 1,
                         "model": "up", "choices": [{"text": text, "index": 0,
                                                     "logprobs": None, "finish_reason": finish}]})


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
COMPLETION = [_text(" One"), _text(" two", "stop"),
              orjson.dumps({"id": "cmpl-1", "object": "text_completion", "choices": [],
                            "usage": USAGE})]
CHAT = [orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [
    {"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}),
    orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})]


def router_config(upstream_url: str) -> str:
    """The router config: the fake upstream, a dead channel, the mock."""
    return f"""
models:
  - {{id: demo}}
  - {{id: demo-image}}
  - {{id: demo-tts}}
  - {{id: remote}}
  - {{id: remote-whisper}}
channels:
  - name: dead
    type: openai
    base_url: http://127.0.0.1:9/v1
    priority: 10
    models: [demo, demo-tts]
  - name: mock
    type: mock
    models: [demo, demo-image, demo-tts]
    mock: {{reply: "{REPLY}"}}
  - name: fake-upstream
    type: openai
    base_url: {upstream_url}
    api_key_env: FAKE_UPSTREAM_KEY
    model_map: {{remote: remote-upstream}}
    models: [remote, remote-whisper]
"""

