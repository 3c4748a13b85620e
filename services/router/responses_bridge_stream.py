"""Responses stream events built from a chat provider's chunks.

The order is OpenAI's: `response.created`, `response.in_progress`, then per output item
`response.output_item.added`, (for a message) `response.content_part.added`, its
deltas, the matching `.done` events and `response.output_item.done`; an item is closed
when the next one starts, and the last one when the chat stream finishes. The stream
ends with `response.completed` (or `response.incomplete`) carrying the whole response
and its usage; that event is marked last, so it goes out in the stream's last item.
Every event has `sequence_number`, counted from 0. Tool-call arguments of a call that
was already closed mean the upstream interleaved its calls: an upstream failure, since
the client could no longer receive them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import (
    RelayPiece,
    StreamPiece,
    Usage,
    field_of,
    loads_or_none,
)
from services.router.providers.events import EVENT_STREAM, frame
from services.router.providers.relay_usage import stream_estimate
from services.router.responses_bridge_answer import (
    Envelope,
    call_item,
    message_item,
    new_id,
    text_part,
)


@dataclass(slots=True)
class _Item:
    """One output item being streamed."""

    index: int
    item_id: str
    call_id: str = ""  # empty for a message
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def json(self, status: str) -> dict[str, Any]:
        joined = "".join(self.parts)
        if not self.call_id:
            return message_item(self.item_id, status, [text_part(joined)] if joined else [])
        return call_item(self.item_id, status, self.call_id, self.name, joined)


class ResponseEvents:
    """Turns one chat stream into Responses events (see the module docstring)."""

    def __init__(self, envelope: Envelope) -> None:
        self._envelope = envelope
        self._sequence = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._texts: list[str] = []
        self._usage: Usage | None = None
        self.finish_reason = ""

    def start(self) -> list[RelayPiece]:
        """`response.created` and `response.in_progress`, held until the first output."""
        created = self._event("response.created", response=self._response("in_progress"))
        created.content_type = EVENT_STREAM
        return [created, self._event("response.in_progress",
                                     response=self._response("in_progress"))]

    def take(self, piece: StreamPiece) -> list[RelayPiece]:
        """The events of one chat chunk (maybe none)."""
        if piece.usage is not None:
            self._usage = piece.usage
        if piece.chunk is None:
            return []
        choices = field_of(loads_or_none(piece.chunk), "choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        delta = field_of(choice, "delta")
        out: list[RelayPiece] = []
        content = field_of(delta, "content")
        if isinstance(content, str) and content:
            out += self._text(content)
        calls = field_of(delta, "tool_calls")
        for call in calls if isinstance(calls, list) else ():
            out += self._call(call)
        reason = field_of(choice, "finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reason = reason
        return out

    def finish(self) -> list[RelayPiece]:
        """The closing events; raise UpstreamUnavailable when the chat stream was cut."""
        if not self.finish_reason:
            raise UpstreamUnavailable(200, "the upstream stream ended early")
        out = self._close()
        usage = self._usage or stream_estimate(self._envelope.request, self._texts,
                                               delivered=True)
        response = self._envelope.response("completed", [i.json("completed") for i in self._items],
                                           usage, self.finish_reason)
        last = self._event(f"response.{response['status']}", response=response)
        last.usage, last.is_last, last.is_output = self._usage, True, False
        last.finish_reason = self.finish_reason
        return [*out, last]

    def _text(self, text: str) -> list[RelayPiece]:
        out: list[RelayPiece] = []
        item = self._open
        if item is None or item.call_id:
            out += self._close()
            item = self._add(_Item(len(self._items), new_id("msg_")), out)
            out.append(self._event("response.content_part.added", item_id=item.item_id,
                                   output_index=item.index, content_index=0,
                                   part=text_part("")))
        item.parts.append(text)
        self._texts.append(text)
        event = self._event("response.output_text.delta", item_id=item.item_id,
                            output_index=item.index, content_index=0, delta=text, logprobs=[])
        event.text = text
        return [*out, event]

    def _call(self, call: Any) -> list[RelayPiece]:
        index = field_of(call, "index")
        function = field_of(call, "function")
        arguments = field_of(function, "arguments")
        item = self._calls.get(index if isinstance(index, int) else 0)
        out: list[RelayPiece] = []
        if item is None:
            out += self._close()
            call_id, name = field_of(call, "id"), field_of(function, "name")
            item = self._add(_Item(len(self._items), new_id("fc_"),
                                   call_id if isinstance(call_id, str) else new_id("call_"),
                                   name if isinstance(name, str) else ""), out)
            self._calls[index if isinstance(index, int) else 0] = item
        elif item is not self._open:
            raise UpstreamUnavailable(200, "the upstream interleaved its tool calls")
        if isinstance(arguments, str) and arguments:
            item.parts.append(arguments)
            out.append(self._event("response.function_call_arguments.delta",
                                   item_id=item.item_id, output_index=item.index,
                                   delta=arguments))
        return out

    def _add(self, item: _Item, out: list[RelayPiece]) -> _Item:
        self._items.append(item)
        self._open = item
        out.append(self._event("response.output_item.added", output_index=item.index,
                               item=item.json("in_progress")))
        return item

    def _close(self) -> list[RelayPiece]:
        item, self._open = self._open, None
        if item is None:
            return []
        common = {"item_id": item.item_id, "output_index": item.index}
        joined = "".join(item.parts)
        if item.call_id:
            out = [self._event("response.function_call_arguments.done", **common,
                               name=item.name, arguments=joined)]
        else:
            out = [self._event("response.output_text.done", **common, content_index=0,
                               text=joined, logprobs=[]),
                   self._event("response.content_part.done", **common, content_index=0,
                               part=text_part(joined))]
        out.append(self._event("response.output_item.done", output_index=item.index,
                               item=item.json("completed")))
        return out

    def _response(self, status: str) -> dict[str, Any]:
        return self._envelope.response(status, [], None)

    def _event(self, kind: str, **fields: Any) -> RelayPiece:
        data = orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        # Every event after the first delta is output; the ones before are held back.
        return RelayPiece(frame(kind.encode(), data),
                          is_output=kind.endswith((".delta", ".done")))
