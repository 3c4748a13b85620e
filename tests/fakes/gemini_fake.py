"""A fake Gemini API (Google Generative Language, v1beta) on 127.0.0.1, for tests.

It serves (under /v1beta and /v1) `models/<m>:generateContent`, `:streamGenerateContent?alt=sse`,
`:embedContent`, `:batchEmbedContents` and Imagen's `:predict` in Google's wire format
(proven by driving it with the official `google-genai` SDK), records every request, and is
scriptable: the answer (`answer`, also the media answers: `image_part`, `audio_part`),
Imagen's (`predictions`, by default one PNG per sampleCount), stream events (`events`),
failures with Google's error JSON
(`fail`), latency before answering, a dropped connection mid-stream (`drop_after`), and
answers without usageMetadata (build them with `usage=None`). A wrong `x-goog-api-key`
gets Google's 400 API_KEY_INVALID.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
from aiohttp import web
from aiohttp.test_utils import TestServer
from google.genai import types

from services.router.providers.mock_media import TINY_PNG_B64

FAKE_KEY = "gemini-fake-key-0123456789"
MODEL_VERSION = "gemini-2.5-flash"
RESPONSE_ID = "fake-response-1"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
Json = dict[str, Any]
# The fields of a generateContent body, checked with the SDK's own (extra-forbidding)
# types, so that a misspelt field fails as Google fails it: 400 INVALID_ARGUMENT.
_GENERATE_FIELDS: dict[str, Any] = {
    "contents": pydantic.TypeAdapter(list[types.Content]),
    "systemInstruction": pydantic.TypeAdapter(types.Content),
    "tools": pydantic.TypeAdapter(list[types.Tool]),
    "toolConfig": pydantic.TypeAdapter(types.ToolConfig),
    "generationConfig": pydantic.TypeAdapter(types.GenerationConfig),
}
# On the wire generationConfig also holds imageConfig, which the SDK's type lacks.
_IMAGE_CONFIG = pydantic.TypeAdapter(types.ImageConfig)
# Imagen's :predict body: instances of prompts and its parameters (Google's names).
_PREDICT_PARAMETERS = frozenset({"sampleCount", "aspectRatio", "personGeneration",
                                 "imageSize", "negativePrompt", "outputOptions"})
# A valid 1x1 PNG, Imagen's default image.
PNG = base64.b64decode(TINY_PNG_B64)
PCM_TYPE = "audio/L16;codec=pcm;rate=24000"
_EMBED_FIELDS: dict[str, Any] = {
    "model": pydantic.TypeAdapter(str),
    "content": pydantic.TypeAdapter(types.Content),
    "outputDimensionality": pydantic.TypeAdapter(int),
    "taskType": pydantic.TypeAdapter(str),
    "title": pydantic.TypeAdapter(str),
}


def usage_metadata(prompt: int = 7, candidates: int = 3, *, cached: int = 0,
                   thoughts: int = 0) -> Json:
    """A usageMetadata object as Gemini sends it (total includes thoughts)."""
    usage: Json = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                   "totalTokenCount": prompt + candidates + thoughts}
    if cached:
        usage["cachedContentTokenCount"] = cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def response(parts: list[Json], finish: str | None = "STOP", *, usage: Json | None = None,
             index: int | None = None, extra: Mapping[str, Any] | None = None) -> Json:
    """A GenerateContentResponse with one candidate holding `parts`."""
    candidate: Json = {"content": {"role": "model", "parts": parts}}
    if finish:
        candidate["finishReason"] = finish
    if index is not None:
        candidate["index"] = index
    answer: Json = {"candidates": [candidate], "modelVersion": MODEL_VERSION,
                    "responseId": RESPONSE_ID}
    if usage is not None:
        answer["usageMetadata"] = usage
    answer.update(extra or {})
    return answer


def text_response(text: str = "Hello from Gemini.", finish: str | None = "STOP", *,
                  usage: Json | None = None) -> Json:
    """A GenerateContentResponse with one text part."""
    return response([{"text": text}], finish, usage=usage)


def call_part(name: str, args: Json, signature: str = "") -> Json:
    """A functionCall part, with a thought signature when given."""
    part: Json = {"functionCall": {"name": name, "args": args}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def image_part(data: bytes = PNG, mime: str = "image/png") -> Json:
    """An inlineData part holding an image, as a Gemini image model answers."""
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


def audio_part(pcm: bytes, mime: str = PCM_TYPE) -> Json:
    """An inlineData part holding 16-bit PCM, as a Gemini TTS model answers."""
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(pcm).decode()}}


def prediction(data: bytes = PNG, mime: str = "image/png") -> Json:
    """One Imagen prediction."""
    return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime}


def error_body(status: int, message: str, reason: str = "") -> Json:
    """Google's error JSON for an HTTP status."""
    error: Json = {"code": status, "message": message,
                   "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return {"error": error}


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    version: str
    model: str
    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive
    body: Json


@dataclass
class GeminiFake:
    """The fake's script and what it received; see the module docstring."""

    base_url: str = ""
    key: str = FAKE_KEY
    answer: Json = field(default_factory=lambda: text_response(usage=usage_metadata()))
    events: list[Json] = field(default_factory=lambda: [
        text_response("Hello", None), text_response(" from Gemini.", usage=usage_metadata())])
    latency_s: float = 0.0
    drop_after: int | None = None
    failures: list[tuple[int, Json]] = field(default_factory=list)
    predictions: list[Json] | None = None  # None: one PNG per sampleCount
    received: list[Recorded] = field(default_factory=list)
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def fail(self, status: int, message: str = "failed", *, reason: str = "",
             times: int = 1) -> None:
        """Answer the next `times` requests with `status` and Google's error JSON."""
        self.failures += [(status, error_body(status, message, reason))] * times

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, then answer it as the script says."""
        model, _, method = request.match_info["call"].partition(":")
        body = orjson.loads(await request.read() or b"{}")
        self.received.append(Recorded(request.match_info["version"], model, method,
                                      dict(request.query),
                                      request.headers.copy(), body))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if request.headers.get("x-goog-api-key") != self.key:
            return _json(400, error_body(400, "API key not valid. Please pass a valid API key.",
                                         "API_KEY_INVALID"))
        if self.failures:
            status, error = self.failures.pop(0)
            return _json(status, error)
        if (problem := _invalid(method, body)) is not None:
            return _json(400, error_body(400, problem))
        if method == "generateContent":
            return _json(200, self.answer)
        if method == "streamGenerateContent":
            return await self._stream(request)
        if method == "embedContent":
            return _json(200, {"embedding": _embedding(body)})
        if method == "batchEmbedContents":
            return _json(200, {"embeddings": [_embedding(r) for r in body["requests"]]})
        if method == "predict":
            count = body.get("parameters", {}).get("sampleCount", 1)
            answer = [prediction()] * count if self.predictions is None else self.predictions
            return _json(200, {"predictions": answer} if answer else {})
        return _json(404, error_body(404, f"method {method} is not found"))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await out.prepare(request)
        for number, event in enumerate(self.events):
            if number == self.drop_after:
                assert request.transport is not None
                request.transport.close()
                self.dropped.set()
                return out
            # Google ends each event with CRLF CRLF.
            await out.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        await out.write_eof()
        return out


def _invalid(method: str, body: Json) -> str | None:
    """Why Google would refuse the body (unknown or mistyped fields), else None."""
    if method == "predict":
        return _invalid_predict(body)
    if method in ("generateContent", "streamGenerateContent"):
        config = body.get("generationConfig")
        if isinstance(config, dict) and "imageConfig" in config:
            body = {**body, "generationConfig": {
                k: v for k, v in config.items() if k != "imageConfig"}}
            try:
                _IMAGE_CONFIG.validate_python(config["imageConfig"])
            except pydantic.ValidationError as exc:
                return f"Invalid value at 'imageConfig': {exc.errors()[0]['msg']}"
        checks = [(body, _GENERATE_FIELDS)]
    elif method == "embedContent":
        checks = [(body, _EMBED_FIELDS)]
    elif method == "batchEmbedContents":
        checks = [(request, _EMBED_FIELDS) for request in body.get("requests", [])]
    else:
        return None
    for fields, known in checks:
        for name, value in fields.items():
            if name not in known:
                return f'Invalid JSON payload received. Unknown name "{name}"'
            try:
                known[name].validate_python(value)
            except pydantic.ValidationError as exc:
                return f"Invalid value at '{name}': {exc.errors()[0]['msg']}"
    return None


def _invalid_predict(body: Json) -> str | None:
    """Why Imagen would refuse a :predict body, else None."""
    instances = body.get("instances")
    if (not isinstance(instances, list) or len(instances) != 1
            or not isinstance(instances[0].get("prompt"), str)):
        return "Invalid value at 'instances': one instance with a prompt is required"
    unknown = set(body) - {"instances", "parameters"} | (
        set(body.get("parameters", {})) - _PREDICT_PARAMETERS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{min(unknown)}"'
    count = body.get("parameters", {}).get("sampleCount", 1)
    if not isinstance(count, int) or not 1 <= count <= 4:
        return "Invalid sample count: it must be from 1 to 4"
    return None


def _embedding(request: Json) -> Json:
    """Deterministic values: as many as asked (default 4), from the text's length."""
    size = request.get("outputDimensionality") or 4
    text = "".join(p.get("text", "") for p in request["content"]["parts"])
    return {"values": [round((len(text) + i) / 100, 4) for i in range(size)]}


def _json(status: int, body: Json) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@asynccontextmanager
async def gemini_fake() -> AsyncIterator[GeminiFake]:
    """A running GeminiFake; its base_url is what GEMINI_BASE_URL would be."""
    fake = GeminiFake()
    app = web.Application()
    # Google serves both versions; the SDK uses v1, the router v1beta.
    app.router.add_post("/{version:v1|v1beta}/models/{call}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()
