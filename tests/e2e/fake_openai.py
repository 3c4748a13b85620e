"""A fake OpenAI upstream for end-to-end tests: records every request, speaks the wire format.

Every request is recorded as it arrived (method, path, headers, raw body bytes). Markers
anywhere in the raw body steer an answer, so they work in JSON and multipart alike:
- `[[fake:status:NNN]]` answers HTTP NNN with an OpenAI error envelope;
- `[[fake:hold:NAME]]` sets `held(NAME)`, waits until the test calls `release(NAME)`,
  then answers;
- `[[fake:drip]]` streams many small chunks slowly (to be cut off by a disconnect);
- `[[fake:cut]]` sends the first events of a stream, then an in-band error;
- `[[fake:pause:NAME]]` sends the first events of a stream, sets `held(NAME)` and goes
  silent until `release(NAME)`.
A stream whose client goes away is recorded in `disconnects` and sets `disconnected`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from services.common.multipart import Form, parse_form
from tests.e2e import fake_wire as wire

_MARKER = re.compile(rb"\[\[fake:(status|hold|drip|cut|pause)(?::([A-Za-z0-9_-]+))?\]\]")
DRIP_WORDS = 400
DRIP_INTERVAL_S = 0.01
CUT_AFTER = 3  # events: the role chunk and two words


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)

    def form(self) -> Form:
        """The body parsed as multipart/form-data."""
        return parse_form(self.body, self.headers.get("content-type", ""))


@dataclass(frozen=True)
class Disconnect:
    """A stream whose client went away: where, and when (time.monotonic())."""

    path: str
    at: float


@dataclass
class FakeOpenAI:
    """The fake's state: what it received and the controls tests use."""

    requests: list[Recorded] = field(default_factory=list)
    disconnects: list[Disconnect] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    _gates: dict[str, asyncio.Event] = field(default_factory=dict)
    _held: dict[str, asyncio.Event] = field(default_factory=dict)

    def to(self, path: str) -> list[Recorded]:
        """The recorded requests to `path` (for example "/v1/embeddings")."""
        return [r for r in self.requests if r.path == path]

    def release(self, name: str) -> None:
        """Let the requests held by `[[fake:hold:NAME]]` answer."""
        self._gate(name).set()

    def held(self, name: str) -> asyncio.Event:
        """Set once a request marked `[[fake:hold:NAME]]` has arrived and waits."""
        return self._held.setdefault(name, asyncio.Event())

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/images/edits", self._images)
        app.router.add_post("/v1/audio/transcriptions", self._transcription)
        app.router.add_post("/v1/audio/translations", self._transcription)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/responses", self._responses)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path,
                                      CIMultiDict(request.headers), body))
        for kind, arg in _MARKER.findall(body):
            if kind == b"status":
                status = int(arg)
                return web.json_response(wire.error_body(status), status=status)
            if kind == b"hold":
                self.held(arg.decode()).set()
                await self._gate(arg.decode()).wait()
        return await handler(request)

    # --- text ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(wire.chat_completion(body["model"]))
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        words = await _words(request)
        chunks = wire.chat_chunks(body["model"], words, include)
        return await self._sse(request, (wire.event(c) for c in chunks))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(wire.text_completion(body["model"]))
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        words = await _words(request)
        chunks = wire.text_completion_chunks(body["model"], words, include)
        return await self._sse(request, (wire.event(c) for c in chunks))

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        words = await _words(request)
        if not body.get("stream"):
            return web.json_response(wire.response_object(body["model"], "completed", words))
        events = wire.response_events(body["model"], words)
        return await self._sse(request, (wire.event(data, name) for name, data in events),
                               done=False)

    async def _sse(
        self, request: web.Request, events: Iterable[bytes], done: bool = True
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        markers = dict(_MARKER.findall(await request.read()))
        drip = b"drip" in markers
        try:
            for sent, data in enumerate(events):
                if sent == CUT_AFTER and b"cut" in markers:
                    await response.write(wire.event(wire.error_body(500)))
                    return response
                if sent == CUT_AFTER and b"pause" in markers:
                    name = markers[b"pause"].decode()
                    self.held(name).set()
                    await self._gate(name).wait()
                await response.write(data)
                if drip:
                    await asyncio.sleep(DRIP_INTERVAL_S)
            if done:
                await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(Disconnect(request.path, time.monotonic()))
            self.disconnected.set()
            raise
        return response

    # --- embeddings, images, audio -------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = wire.embedding_inputs(body.get("input"))
        return web.json_response(wire.embeddings(
            body["model"], inputs, body.get("dimensions"), body.get("encoding_format")))

    async def _images(self, request: web.Request) -> web.Response:
        fields = await _fields(request)
        n = int(fields.get("n") or 1)
        return web.json_response(wire.images(n, fields.get("response_format")))

    async def _transcription(self, request: web.Request) -> web.Response:
        fields = await _fields(request)
        task = "translate" if request.path.endswith("translations") else "transcribe"
        body, content_type = wire.transcript(fields.get("response_format"), task)
        return web.Response(body=body, content_type=content_type)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(
            headers={"content-type": wire.speech_type(body.get("response_format"))})
        await response.prepare(request)
        try:
            for _ in range(wire.SPEECH_CHUNKS):
                await response.write(wire.SPEECH_CHUNK)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(Disconnect(request.path, time.monotonic()))
            self.disconnected.set()
            raise
        await response.write_eof()
        return response


async def _words(request: web.Request) -> list[str]:
    if b"[[fake:drip]]" in await request.read():
        return [f" w{i}" for i in range(DRIP_WORDS)]
    return list(wire.REPLY_WORDS)


async def _fields(request: web.Request) -> Mapping[str, Any]:
    """The JSON body, or the plain fields of a multipart form."""
    content_type = request.headers.get("content-type", "")
    raw = await request.read()
    if content_type.startswith("multipart/"):
        form = parse_form(raw, content_type)
        return {p.name: p.text for p in form.parts if p.filename is None}
    parsed: dict[str, Any] = orjson.loads(raw)
    return parsed


async def start_fake_openai() -> tuple[FakeOpenAI, TestServer]:
    """Start the fake on 127.0.0.1; the caller closes the server."""
    fake = FakeOpenAI()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    return fake, server

