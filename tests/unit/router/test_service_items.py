"""The servicer's stream items: the content type on the first item that carries pieces,
held-back pieces and the end together on the last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from apirelay.router.v1 import router_pb2
from services.router.outcomes import RouteInfo, StreamHead, StreamOutcome, UsageSource
from services.router.providers.base import Usage
from services.router.relay_request import RelayRequest
from services.router.service import RouterServicer
from services.router.translate import chat_item

END = StreamOutcome(Usage(1, 2), UsageSource.UPSTREAM, "stop", RouteInfo("c", "m", 1),
                    tail=(b"usage",))


class _Context:
    def time_remaining(self) -> float:
        return 5.0


class _Router:
    """Yields a head alone, then (after a real wait) the pieces and the end."""

    async def relay_stream(
        self, request: RelayRequest, budget_s: float | None = None, account: str = ""
    ) -> AsyncGenerator[bytes | StreamHead | StreamOutcome, None]:
        yield StreamHead("audio/mpeg")
        await asyncio.sleep(0)
        yield b"audio"
        await asyncio.sleep(0)
        yield END


async def test_a_head_alone_waits_for_the_pieces_it_announces() -> None:
    servicer = RouterServicer(_Router())  # type: ignore[arg-type]
    request = router_pb2.StreamRelayRequest(
        operation=router_pb2.OPERATION_AUDIO_SPEECH, model="tts",
        body=orjson.dumps({"model": "tts", "input": "hi"}), content_type="application/json")
    context: Any = _Context()
    items = [item async for item in servicer.StreamRelay(request, context)]
    assert [(list(i.pieces), i.content_type, i.HasField("end")) for i in items] == [
        ([b"audio"], "audio/mpeg", False), ([b"usage"], "", True)]
    assert items[-1].end.usage.completion_tokens == 2


def test_chat_items_carry_the_held_usage_chunk_after_the_chunks() -> None:
    item = chat_item([b"finish", END])
    assert list(item.chunks) == [b"finish", b"usage"] and item.end.finish_reason == "stop"
    assert not chat_item([b"content"]).HasField("end")
