"""Builders shared by the router unit tests."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import orjson

from services.router.providers.base import RelayAttempt, UpstreamRequest
from services.router.relay_request import Operation, RelayRequest, parse_relay_request
from services.router.request import ChatRequest, parse_chat_request


def chat_request(
    text: str = "Say hello.",
    *,
    model: str = "demo",
    stream: bool = False,
    include_usage: bool = False,
    request_id: str = "req_test",
    **extra: Any,
) -> ChatRequest:
    """A parsed chat request with one user message."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return parse_chat_request(orjson.dumps(body), model, request_id, stream=stream)


def upstream(chat: ChatRequest, upstream_model: str = "", timeout_s: float = 5.0) -> UpstreamRequest:
    """An attempt for `chat`, sending `upstream_model` (default: the client's model)."""
    return UpstreamRequest(chat, upstream_model or chat.model, timeout_s)


BOUNDARY = "----apirelay-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(
    fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]] | None = None
) -> bytes:
    """A multipart/form-data body (boundary BOUNDARY) with text fields and files."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"'
        f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, (filename, data) in (files or {}).items()
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def relay_request(
    operation: Operation, body: Mapping[str, Any] | bytes, *, stream: bool = False,
    model: str = "demo", content_type: str = "application/json", request_id: str = "req_test",
) -> RelayRequest:
    """A parsed relayed request: a JSON body from a mapping, or bytes as they are."""
    raw = body if isinstance(body, bytes) else orjson.dumps({"model": model, **body})
    return parse_relay_request(operation, raw, content_type, model, request_id, stream=stream)


def form_request(
    operation: Operation, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]],
    *, model: str = "demo",
) -> RelayRequest:
    """A parsed multipart relayed request (the model field comes first)."""
    body = multipart({"model": model, **fields}, files)
    return relay_request(operation, body, model=model, content_type=MULTIPART)


def attempt(
    request: RelayRequest, upstream_model: str = "", timeout_s: float = 5.0
) -> RelayAttempt:
    """An attempt for `request`, sending `upstream_model` (default: the client's model)."""
    return RelayAttempt(request, upstream_model or request.model, timeout_s)


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent 16-bit mono WAV file lasting `seconds`."""
    pcm = bytes(int(rate * seconds) * 2)
    header = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt " + header
            + b"data" + struct.pack("<I", len(pcm)) + pcm)
