"""A fake Azure OpenAI resource: deployment URLs, `api-version`, the `api-key` header.

It speaks the OpenAI wire format below `/openai/deployments/{deployment}/...` and
refuses what Azure refuses: a missing or wrong `api-key` (401), a missing `api-version`
(404, as Azure answers). Scriptable: an HTTP error for the next requests, usage left
out, or queued `ScriptedAnswer`s for the next chat requests. Every request is recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_script import ScriptedAnswer
from tests.fakes.serve import serving

AZURE_KEY = "azure-fake-key-0123456789abcdef"
REPLY_WORDS = ("Hello", " from", " Azure", ".")


@dataclass(frozen=True)
class AzureCall:
    """One request the fake received."""

    deployment: str
    operation: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Mapping[str, Any]


@dataclass
class AzureFake:
    """The scriptable fake; `endpoint` is its resource endpoint once it runs."""

    endpoint: str = ""
    calls: list[AzureCall] = field(default_factory=list)
    fail_status: int = 0
    omit_usage: bool = False
    scripted: deque[ScriptedAnswer] = field(default_factory=deque)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check the Azure conventions, then answer like the deployment's model."""
        body = await request.json() if request.can_read_body else {}
        deployment, operation = request.match_info["deployment"], request.match_info["op"]
        self.calls.append(AzureCall(deployment, operation, dict(request.query),
                                    request.headers.copy(), body))
        if request.headers.get("api-key") != AZURE_KEY:
            return _error(401, "401", "Access denied due to invalid subscription key.")
        if "api-version" not in request.query:
            return _error(404, "404", "Resource not found")
        if self.fail_status:
            return _error(self.fail_status, str(self.fail_status), "scripted failure")
        if operation == "embeddings":
            return web.json_response(_embeddings(deployment))
        if operation != "chat/completions":
            return _error(404, "404", "Resource not found")
        if self.scripted:
            return await self._scripted(request, body, self.scripted.popleft())
        if body.get("stream"):
            return await self._stream(request, deployment, body)
        return web.json_response(self._completion(deployment))

    def _usage(self) -> dict[str, Any] | None:
        if self.omit_usage:
            return None
        return {"prompt_tokens": 7, "completion_tokens": len(REPLY_WORDS), "total_tokens": 11,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 0}}

    def _completion(self, deployment: str) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": "chatcmpl-azure", "object": "chat.completion", "created": 1,
            "model": deployment, "system_fingerprint": "fp_azure",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "".join(REPLY_WORDS)}}],
        }
        if (usage := self._usage()) is not None:
            answer["usage"] = usage
        return answer

    async def _stream(self, request: web.Request, deployment: str,
                      body: Mapping[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""},
                                                            None)]
        deltas += [({"content": word}, None) for word in REPLY_WORDS]
        deltas.append(({}, "stop"))
        for delta, finish in deltas:
            await response.write(_event(_chunk(deployment, [
                {"index": 0, "delta": delta, "finish_reason": finish}])))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") and not self.omit_usage:
            await response.write(_event({**_chunk(deployment, []), "usage": self._usage()}))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _scripted(self, request: web.Request, body: Mapping[str, Any],
                        answer: ScriptedAnswer) -> web.StreamResponse:
        if answer.status:
            return _error(answer.status, str(answer.status), "scripted failure")
        if not body.get("stream"):
            return web.json_response(answer.completion)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for chunk in answer.stream(body):
            await response.write(_event(chunk))
        await response.write(b"data: [DONE]\n\n")
        return response


def _chunk(deployment: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "chatcmpl-azure", "object": "chat.completion.chunk", "created": 1,
            "model": deployment, "choices": choices}


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _embeddings(deployment: str) -> dict[str, Any]:
    return {"object": "list", "model": deployment,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@asynccontextmanager
async def azure_fake() -> AsyncIterator[AzureFake]:
    """A running fake on 127.0.0.1 with a free port."""
    fake = AzureFake()
    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/{op:.*}", fake.handle)
    async with serving(app) as fake.endpoint:
        yield fake
