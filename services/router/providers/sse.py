"""A lenient, incremental server-sent events decoder for upstream chat streams.

It follows the SSE rules (fields, comments, events ended by a blank line, multi-line
data joined by newlines, LF / CRLF / CR line ends) and forgives what real upstreams get
wrong: a last event without its blank line, and several JSON chunks in one event when
the blank lines between them were left out.

It works on bytes as they come off the socket, whatever their framing, so a chunk's
JSON reaches the client without being decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, NamedTuple, TypeVar

import orjson

from services.router.errors import UpstreamUnavailable

DONE = b"[DONE]"
DEFAULT_EVENT = b"message"

P = TypeVar("P")


class SSEEvent(NamedTuple):
    """One dispatched event: its type ("message" unless named) and its data.

    A NamedTuple, not a frozen dataclass: one is built per streamed chunk, and a
    tuple is built several times faster.
    """

    event: bytes
    data: bytes


class SSEDecoder:
    """Turns a byte stream into events; feed it every read, then call `end`."""

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events that `chunk` completes (a partial last line waits for more)."""
        buffer = self._tail + chunk if self._tail else chunk
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF split across reads.
            keep = buffer.endswith(b"\r")
            if keep:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep:
                buffer += b"\r"
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            # Nearly every line is `data: {...}`; take it without the general parse.
            if line.startswith(b"data: "):
                self._data.append(line[6:])
            else:
                self._line(line, events)
        return events

    def end(self) -> list[SSEEvent]:
        """The events still pending when the stream ends (no final blank line needed)."""
        events: list[SSEEvent] = []
        tail, self._tail = self._tail.rstrip(b"\r"), b""
        if tail:
            self._line(tail, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(SSEEvent(self._event or DEFAULT_EVENT, data))
            self._data, self._event = [], b""
            return
        if line[0] == 0x3A:  # ":" starts a comment (keep-alives, provider notes)
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value


def split_payloads(data: bytes) -> list[bytes]:
    """The payloads an event's data holds: the data itself, or one per line if joined."""
    if b"\n" not in data or data == DONE or _is_json(data):
        return [data]
    return [line.strip() for line in data.split(b"\n") if line.strip()]


def _is_json(text: bytes) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class EventReader(Generic[P]):
    """Turns the bytes of an upstream event stream into pieces, in order, as they arrive.

    `read(event, payload)` makes one piece (and raises for an in-band error);
    `finishes(piece)` says whether a piece proves the answer whole, so that a stream
    ending without `[DONE]` after it is complete rather than cut.
    """

    def __init__(self, read: Callable[[bytes, bytes], P], finishes: Callable[[P], bool]) -> None:
        self._decoder = SSEDecoder()
        self._read = read
        self._finishes = finishes
        self._finished = False
        self.done = False

    def feed(self, data: bytes) -> Iterator[P]:
        """The pieces `data` completes; empty `data` is the end of the stream.

        An in-band error or an early end raises after the pieces before it.
        """
        events = self._decoder.feed(data) if data else self._decoder.end()
        for event in events:
            payloads = (event.data,) if b"\n" not in event.data else split_payloads(event.data)
            for payload in payloads:
                if payload == DONE:
                    self.done = True
                    return
                piece = self._read(event.event, payload)
                self._finished = self._finished or self._finishes(piece)
                yield piece
        if not data:
            self.done = True
            # Some servers omit [DONE] (and Responses streams have none): a piece that
            # finishes the answer proves it whole.
            if not self._finished:
                raise UpstreamUnavailable(200, "the upstream stream ended early")
