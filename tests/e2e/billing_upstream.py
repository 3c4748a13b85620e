"""A scripted OpenAI chat upstream for the billing e2e tests: paced streams, chosen usage.

Markers in the request's last message steer the answer:
- `[[words:N]]` answers N words (default 8), each one content chunk;
- `[[pace:MS]]` waits MS milliseconds before each word (streams in flight);
- `[[usage:P:C]]` reports prompt P and completion C (C may be negative or absurd);
  default: prompt 20 and completion N;
- `[[nousage]]` reports no usage at all;
- `[[hold:NAME]]` after the words, sets `held(NAME)` and waits for `release(NAME)`
  before the finish and usage chunks (usage that comes after a client left).
As OpenAI does, a stream carries its usage chunk only when the request asked with
`stream_options.include_usage`. Every request body is recorded.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e import fake_wire as wire

Json = dict[str, Any]
PROMPT = 20
_MARK = re.compile(r"\[\[(words|pace|usage|nousage|hold)(?::([-0-9A-Za-z_:]+))?\]\]")


def words(count: int) -> list[str]:
    """The words an answer of `count` words sends (what the client receives)."""
    return [f" w{i}" for i in range(count)]


@dataclass(frozen=True)
class Script:
    """What one request asked for."""

    words: int = 8
    pace_s: float = 0.0
    usage: tuple[int, int] | None = None  # None: prompt 20, completion = words
    no_usage: bool = False
    hold: str = ""

    @classmethod
    def of(cls, text: str) -> Script:
        """The script in `text`'s markers."""
        values: Json = {}
        for kind, arg in _MARK.findall(text):
            if kind == "words":
                values["words"] = int(arg)
            elif kind == "pace":
                values["pace_s"] = int(arg) / 1000
            elif kind == "usage":
                prompt, completion = arg.split(":")
                values["usage"] = (int(prompt), int(completion))
            elif kind == "nousage":
                values["no_usage"] = True
            else:
                values["hold"] = arg
        return cls(**values)

    def usage_json(self) -> Json:
        """The usage object the answer reports."""
        prompt, completion = self.usage or (PROMPT, self.words)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


@dataclass
class ScriptedUpstream:
    """The upstream's state: recorded bodies and the hold gates."""

    bodies: list[Json] = field(default_factory=list)
    _gates: dict[str, asyncio.Event] = field(default_factory=dict)
    _held: dict[str, asyncio.Event] = field(default_factory=dict)

    def calls_with(self, text: str) -> int:
        """Requests whose last message contains `text`."""
        return sum(text in _last_text(body) for body in self.bodies)

    def held(self, name: str) -> asyncio.Event:
        """Set once a `[[hold:NAME]]` stream waits."""
        return self._held.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        """Let a held stream go on."""
        self._gates.setdefault(name, asyncio.Event()).set()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        script = Script.of(_last_text(body))
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            answer = {**base, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": "".join(words(script.words))}}]}
            if not script.no_usage:
                answer["usage"] = script.usage_json()
            return web.json_response(answer)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(wire.event({**base, "choices": [_delta({"role": "assistant"})]}))
        for word in words(script.words):
            if script.pace_s:
                await asyncio.sleep(script.pace_s)
            await response.write(wire.event({**base, "choices": [_delta({"content": word})]}))
        if script.hold:
            self.held(script.hold).set()
            await self._gates.setdefault(script.hold, asyncio.Event()).wait()
        await response.write(wire.event({**base, "choices": [_delta({}, "stop")]}))
        if include and not script.no_usage:
            await response.write(wire.event({**base, "choices": [], "usage": script.usage_json()}))
        await response.write(b"data: [DONE]\n\n")
        return response


def _delta(delta: Json, finish: str | None = None) -> Json:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _last_text(body: Json) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content")
    return content if isinstance(content, str) else ""


async def start_upstream() -> tuple[ScriptedUpstream, TestServer]:
    """The upstream on a free port of 127.0.0.1."""
    upstream = ScriptedUpstream()
    server = TestServer(upstream.app(), host="127.0.0.1")
    await server.start_server()
    return upstream, server
