"""Relaying one router stream to one SSE response.

Nothing is sent before the router's first item, so a failure before any chunk is a
normal HTTP error. After the headers, a failure becomes one in-band error event and
the stream ends with `[DONE]`. A client that goes away (handler cancelled or a write
failing) cancels the gRPC call at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiohttp import web

from edge.clients import ChatStream
from edge.domain import StreamEnd
from edge.errors import UpstreamError, from_failure, from_upstream
from edge.metrics import ACTIVE_STREAMS, STREAM_TTFB
from edge.settlement import Outcome
from edge.sse import SSEWriter

logger = logging.getLogger(__name__)

Item = bytes | StreamEnd


class StreamRelay:
    """Copies a ChatStream to an SSE response, recording what it delivered in `outcome`."""

    def __init__(
        self, stream: ChatStream, outcome: Outcome, keepalive_s: float, started_at: float
    ) -> None:
        self._stream = stream
        self._outcome = outcome
        self._keepalive = keepalive_s
        self._started_at = started_at
        self._pending: asyncio.Task[Item] | None = None

    async def run(self, request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
        """Await the first item (errors raise ApiError), then send headers and relay."""
        try:
            first = await self._first()
            writer = SSEWriter(headers)
            await writer.start(request)
            ACTIVE_STREAMS.inc()
            try:
                await self._relay(writer, first)
            except ConnectionResetError:
                self._outcome.client_gone = True
                logger.info("client went away mid-stream")
            finally:
                ACTIVE_STREAMS.dec()
            return writer.response
        finally:
            self._close()

    async def _first(self) -> Item:
        try:
            item = await self._stream.read()
        except UpstreamError as exc:
            raise from_upstream(exc) from None
        if isinstance(item, StreamEnd):
            self._record_end(item)
            if item.failure is not None:
                raise from_failure(item.failure)
        return item

    async def _relay(self, writer: SSEWriter, item: Item) -> None:
        if isinstance(item, bytes):
            STREAM_TTFB.observe(time.perf_counter() - self._started_at)
        while isinstance(item, bytes):
            self._outcome.record_chunk(item)
            await writer.send(item)
            try:
                item = await self._next(writer)
            except UpstreamError as exc:
                await writer.send_error(from_upstream(exc))
                await writer.done()
                return
        self._record_end(item)
        if item.failure is not None:
            await writer.send_error(from_failure(item.failure))
        await writer.done()

    async def _next(self, writer: SSEWriter) -> Item:
        # A read is never cancelled by a keepalive timeout (that would cancel the call):
        # it runs as a task, and the wait for it is what times out.
        read = self._pending = asyncio.get_running_loop().create_task(self._stream.read())
        while True:
            done, _ = await asyncio.wait((read,), timeout=self._keepalive)
            if done:
                self._pending = None
                return read.result()
            await writer.ping()

    def _record_end(self, end: StreamEnd) -> None:
        self._outcome.record_usage(end.usage, end.usage_source, end.channel)
        self._outcome.completed = end.failure is None

    def _close(self) -> None:
        self._stream.cancel()
        read, self._pending = self._pending, None
        if read is None:
            return
        read.cancel()
        read.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[Item]) -> None:
    # The stream is abandoned; its last read's outcome (usually CANCELLED) is moot.
    if not task.cancelled():
        task.exception()
