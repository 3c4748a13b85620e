"""A minimal OpenAI-compatible upstream that answers at once; run in its own process.

`python -m bench.mock_upstream --port N [--cpu K]` serves POST /v1/chat/completions
(streaming and not, shapes as OpenAI's), GET /v1/models, GET /healthz and
GET /_bench/stats (requests served), until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from aiohttp import web

REPLY_TOKENS = ("Hello", " from", " the", " bench", " upstream", ".")
PROMPT_TOKENS = 12
FINGERPRINT = "fp_bench"
HOST = "127.0.0.1"


@dataclass(slots=True)
class MockUpstream:
    """Builds OpenAI response bodies and counts the requests it answered."""

    served: int = 0
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def _envelope(self, obj: str, model: str) -> dict[str, object]:
        return {
            "id": f"chatcmpl-bench{next(self._ids)}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }

    def completion(self, model: str) -> bytes:
        """A whole `chat.completion` body."""
        body = self._envelope("chat.completion", model)
        message = {"role": "assistant", "content": "".join(REPLY_TOKENS), "refusal": None}
        body["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        ]
        body["usage"] = _usage()
        return orjson.dumps(body)

    def stream(self, model: str, include_usage: bool) -> bytes:
        """The whole SSE body of a streamed answer: role, content deltas, finish, usage, DONE."""
        head = self._envelope("chat.completion.chunk", model)
        deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
        deltas += [({"content": tok}, None) for tok in REPLY_TOKENS]
        deltas.append(({}, "stop"))
        events = []
        for delta, finish in deltas:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunk = {**head, "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            events.append(chunk)
        if include_usage:
            events.append({**head, "choices": [], "usage": _usage()})
        parts = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
        parts.append(b"data: [DONE]\n\n")
        return b"".join(parts)


def _usage() -> dict[str, int]:
    completion = len(REPLY_TOKENS)
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
    }


MOCK = web.AppKey("mock", MockUpstream)
routes = web.RouteTableDef()


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer at once with a fixed reply, streamed as SSE when asked."""
    mock = request.app[MOCK]
    try:
        body = orjson.loads(await request.read())
        model = str(body.get("model") or "bench")
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {"error": {"message": "invalid JSON body", "type": "invalid_request_error",
                           "param": None, "code": None}}
        return web.json_response(error, status=400, dumps=lambda o: orjson.dumps(o).decode())
    mock.served += 1
    if not stream:
        return web.Response(body=mock.completion(model), content_type="application/json")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    await response.write(mock.stream(model, bool(options.get("include_usage"))))
    await response.write_eof()
    return response


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    """A one-model catalog, for clients that probe it."""
    data = [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}),
                        content_type="application/json")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Readiness probe for the orchestrator."""
    return web.Response(text="ok")


@routes.get("/_bench/stats")
async def stats(request: web.Request) -> web.Response:
    """How many completions were served so far."""
    return web.Response(body=orjson.dumps({"requests": request.app[MOCK].served}),
                        content_type="application/json")


def create_app() -> web.Application:
    """The mock upstream application."""
    app = web.Application()
    app[MOCK] = MockUpstream()
    app.add_routes(routes)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner = web.AppRunner(create_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def pin_to_cpu(cpu: int) -> None:
    """Keep this process on one core when the machine has more than one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.mock_upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None, help="core index to pin to")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        pin_to_cpu(args.cpu)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(HOST, args.port))
    else:
        uvloop.run(serve(HOST, args.port))


if __name__ == "__main__":
    main()
