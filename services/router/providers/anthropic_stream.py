"""Anthropic stream events as OpenAI `chat.completion.chunk`s.

message_start gives the role chunk (held back by the tally until the first output);
text, input_json and thinking deltas become `content`, tool-call `arguments` and
`reasoning_content` deltas. Each `tool_use` block gets the next OpenAI tool-call index
(0, 1, ... in the order the blocks start, whatever Anthropic's block indexes are), its
first chunk carrying id and name. A finished thinking block goes out once whole with
its signature as `thinking_blocks` (signature deltas are not forwarded one by one).
message_delta gives the finish chunk; message_stop the usage chunk, forwarded only when
the client asked (`stream_options.include_usage`) but always counted. `ping` is
dropped; an `error` event raises the ProviderError of its type, which fails over when
nothing was delivered yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.anthropic_errors import error_for_event
from services.router.providers.anthropic_response import finish_reason, usage_of
from services.router.providers.base import StreamPiece, field_of, usage_json

INVALID = "the upstream sent an invalid stream event"


@dataclass(slots=True)
class _Block:
    """One open content block: its kind, its tool-call index, its thinking so far."""

    kind: str
    tool_index: int = -1
    thinking: str = ""
    signature: str = ""
    data: str = ""


class StreamTranslator:
    """Turns one Anthropic event stream into StreamPieces; `stopped` after message_stop."""

    def __init__(self, created: int, *, forward_usage: bool,
                 redact: tuple[str, ...] = ()) -> None:
        self._created = created
        self._forward_usage = forward_usage
        self._redact = redact
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self.finished = False
        self.stopped = False

    def read(self, event: bytes, payload: bytes) -> list[StreamPiece]:
        """The pieces of one event (maybe none); raise ProviderError for an error event."""
        if event == b"error":
            raise error_for_event(payload, self._redact)
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnavailable(200, INVALID) from exc
        kind = field_of(data, "type")
        if kind == "error":
            raise error_for_event(payload, self._redact)
        if kind == "message_start":
            return self._start(field_of(data, "message"))
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.stopped = True
            if not self._usage:
                return []  # no counts at all: the router estimates them
            usage = usage_of(self._usage)
            chunk = self._chunk([], usage=usage_json(usage)) if self._forward_usage else None
            return [StreamPiece(chunk, usage=usage, is_last=True)]
        return []  # ping and event types added later

    def _start(self, message: Any) -> list[StreamPiece]:
        self._id = str(field_of(message, "id") or "")
        self._model = str(field_of(message, "model") or "")
        self._merge_usage(field_of(message, "usage"))
        piece = StreamPiece(self._delta({"role": "assistant", "content": ""}))
        if self._usage:
            piece.prompt_usage = usage_of(self._usage)
        return [piece]

    def _block_start(self, data: dict[str, Any]) -> list[StreamPiece]:
        block = field_of(data, "content_block")
        kind = str(field_of(block, "type") or "")
        opened = self._blocks[_index(data)] = _Block(kind)
        if kind == "tool_use":
            opened.tool_index, self._tools = self._tools, self._tools + 1
            call = {"index": opened.tool_index, "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": ""}}
            return [self._output({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._output({"content": str(block["text"])}, text=str(block["text"]))]
        if kind == "thinking":
            opened.thinking = str(block.get("thinking") or "")
            if opened.thinking:
                return [self._output({"reasoning_content": opened.thinking})]
        if kind == "redacted_thinking":
            opened.data = str(block.get("data") or "")
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[StreamPiece]:
        delta = field_of(data, "delta")
        kind = field_of(delta, "type")
        block = self._blocks.get(_index(data))
        if kind == "text_delta" and delta.get("text"):
            text = str(delta["text"])
            return [self._output({"content": text}, text=text)]
        if kind == "input_json_delta" and block is not None and delta.get("partial_json"):
            call = {"index": block.tool_index,
                    "function": {"arguments": str(delta["partial_json"])}}
            return [self._output({"tool_calls": [call]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            thought = str(delta["thinking"])
            if block is not None:
                block.thinking += thought
            return [self._output({"reasoning_content": thought})]
        if kind == "signature_delta" and block is not None:
            block.signature += str(delta.get("signature") or "")
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[StreamPiece]:
        block = self._blocks.pop(_index(data), None)
        if block is None:
            return []
        if block.kind == "thinking":
            whole = {"type": "thinking", "thinking": block.thinking,
                     "signature": block.signature}
            return [self._output({"thinking_blocks": [whole]})]
        if block.kind == "redacted_thinking":
            return [self._output({"thinking_blocks": [{"type": "redacted_thinking",
                                                        "data": block.data}]})]
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[StreamPiece]:
        self._merge_usage(field_of(data, "usage"))
        reason = finish_reason(field_of(field_of(data, "delta"), "stop_reason"))
        self.finished = True
        return [StreamPiece(self._delta({}, reason), finish_reason=reason, is_output=True)]

    def _merge_usage(self, raw: Any) -> None:
        # message_delta counts are cumulative: the later value of a field wins.
        if isinstance(raw, dict):
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def _output(self, delta: dict[str, Any], text: str = "") -> StreamPiece:
        return StreamPiece(self._delta(delta), text=text, is_output=True)

    def _delta(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": reason}])

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk",
                                 "created": self._created, "model": self._model,
                                 "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return orjson.dumps(chunk)


def _index(data: dict[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) else -1
