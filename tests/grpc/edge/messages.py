"""Messages the fake services answer with, and what the edge should make of them.

Chunks, bodies, usages, stream ends and errors as the router sends them; the tariff
the fake billing holds at and the charge (the shared formula) it settles for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from edge.translate import tariff as tariff_of
from services.common.charges import Metered, cost_nanos
from services.common.money import nanos_to_usd

MODEL = "gpt-test"
OTHER_MODEL = "gpt-other"


def tariff() -> billing_pb2.Tariff:
    """Token and unit prices with a multiplier, so that rounding shows."""
    units = {"image/1024x1024/standard": 40_000_000, "image/1024x1024/hd": 80_000_000,
             "image/512x512/standard": 18_000_000, "audio_second": 100_000,
             "character": 15_000}
    return billing_pb2.Tariff(
        prompt_nanos_per_token=150, completion_nanos_per_token=601,
        cached_prompt_nanos_per_token=75, multiplier_bps=8_333,
        unit_prices=[billing_pb2.UnitPrice(unit=u, nanos_per_unit=p) for u, p in units.items()],
    )


def charge(usage_: usage_pb2.Usage, prices: billing_pb2.Tariff | None = None) -> int:
    """What billing charges for `usage_` under `prices` (the shared formula)."""
    metered = Metered(
        usage_.prompt_tokens, usage_.completion_tokens, usage_.cached_prompt_tokens,
        {u.unit: u.quantity for u in usage_.units},
    )
    return cost_nanos(tariff_of(prices or tariff()), metered)


def chunk(text: str, finish: str | None = None) -> bytes:
    """An OpenAI chat.completion.chunk carrying `text`."""
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    })


def completion_body(text: str) -> bytes:
    """An OpenAI chat.completion carrying `text`."""
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    })


def usage(prompt: int = 11, completion: int = 7, **units: int) -> usage_pb2.Usage:
    """A reported usage (units by keyword: `character=5`; `image` names are passed whole)."""
    return usage_pb2.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        units=[usage_pb2.UnitUsage(unit=u, quantity=q) for u, q in units.items()],
    )


def unit_usage(unit: str, quantity: int) -> usage_pb2.Usage:
    """A units-only usage."""
    return usage_pb2.Usage(units=[usage_pb2.UnitUsage(unit=unit, quantity=quantity)])


def error(status: int, kind: str, code: str = "", message: str = "upstream said no",
          param: str = "") -> router_pb2.CompletionError:
    """A router CompletionError."""
    return router_pb2.CompletionError(http_status=status, type=kind, code=code,
                                      message=message, param=param)


def relayed(body: bytes, usage_: usage_pb2.Usage | None = None,
            content_type: str = "application/json") -> router_pb2.RelayResponse:
    """A successful Relay answer."""
    return router_pb2.RelayResponse(
        body=body, content_type=content_type, usage=usage_ if usage_ is not None else usage(),
        usage_source=usage_pb2.USAGE_SOURCE_UPSTREAM, route=router_pb2.RouteInfo(channel="chan-a"),
    )


def end(error_: router_pb2.CompletionError | None = None,
        usage_: usage_pb2.Usage | None = None) -> router_pb2.StreamEnd:
    """A StreamEnd (reported usage by default)."""
    return router_pb2.StreamEnd(
        usage=usage_ if usage_ is not None else usage(), error=error_,
        usage_source=usage_pb2.USAGE_SOURCE_UPSTREAM, finish_reason="stop",
        route=router_pb2.RouteInfo(channel="chan-a", upstream_model=MODEL, attempts=1),
    )


def cost_text(usage_: usage_pb2.Usage) -> str:
    """The `cost` the edge reports for `usage_` under the default tariff (exact USD)."""
    return nanos_to_usd(charge(usage_))


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One whole SSE event as the router's StreamRelay sends it."""
    name = b"" if event is None else b"event: " + event.encode() + b"\n"
    return name + b"data: " + orjson.dumps(data) + b"\n\n"


@dataclass
class Hang:
    """A stream step that waits forever (until the call is cancelled)."""


@dataclass
class Pause:
    """A stream step that sleeps `seconds`."""

    seconds: float


@dataclass
class Abort:
    """A stream step that fails the call with `code`."""

    code: grpc.StatusCode


@dataclass
class Batch:
    """A stream step that sends one item carrying several chunks (and maybe the end)."""

    chunks: list[bytes]
    end: router_pb2.StreamEnd | None = None


# A bytes step is an item with one chunk; a StreamEnd step is an item with only the end.
StreamStep = bytes | router_pb2.StreamEnd | Batch | Hang | Pause | Abort
