"""Relaying one router stream to one SSE response.

Nothing is sent before the router's first item, so a failure before any chunk is a
normal HTTP error. After the headers, a failure becomes one in-band error event and
the stream ends with `[DONE]`. A client that goes away (handler cancelled or a write
failing) cancels the gRPC call at once.

All chunks of one router item go out in one write. While the router is quiet, one
keepalive task per stream sends a `: ping` comment whenever nothing was written for
`keepalive_s`; a lock keeps its writes from interleaving with the relay's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiohttp import web

from edge.clients import ChatStream
from edge.domain import StreamEnd, StreamItem
from edge.errors import ApiError, UpstreamError, from_failure, from_upstream
from edge.metrics import ACTIVE_STREAMS, STREAM_TTFB
from edge.settlement import Outcome
from edge.sse import SSEWriter

logger = logging.getLogger(__name__)


class StreamRelay:
    """Copies a ChatStream to an SSE response, recording what it delivered in `outcome`."""

    def __init__(
        self, stream: ChatStream, outcome: Outcome, keepalive_s: float, started_at: float
    ) -> None:
        self._stream = stream
        self._outcome = outcome
        self._keepalive_s = keepalive_s
        self._started_at = started_at
        self._writing = asyncio.Lock()
        self._last_write = 0.0

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
                self._client_gone()
            finally:
                ACTIVE_STREAMS.dec()
            return writer.response
        finally:
            self._stream.cancel()

    async def _first(self) -> StreamItem:
        try:
            item = await self._stream.read()
        except UpstreamError as exc:
            raise from_upstream(exc) from None
        end = item.end
        if end is not None and end.failure is not None and not item.chunks:
            self._record_end(end)
            raise from_failure(end.failure)
        return item

    async def _relay(self, writer: SSEWriter, item: StreamItem) -> None:
        if item.chunks:
            STREAM_TTFB.observe(time.perf_counter() - self._started_at)
        keepalive = None
        if item.end is None:
            self._last_write = asyncio.get_running_loop().time()
            keepalive = asyncio.get_running_loop().create_task(self._keepalive(writer))
        try:
            while (end := item.end) is None:
                await self._send(writer, item.chunks)
                try:
                    item = await self._stream.read()
                except UpstreamError as exc:
                    if not self._outcome.client_gone:
                        await self._finish(writer, from_upstream(exc))
                    return
            await self._send(writer, item.chunks)
            self._record_end(end)
            failure = None if end.failure is None else from_failure(end.failure)
            await self._finish(writer, failure)
        finally:
            if keepalive is not None:
                keepalive.cancel()

    async def _send(self, writer: SSEWriter, chunks: tuple[bytes, ...]) -> None:
        if not chunks:
            return
        for chunk in chunks:
            self._outcome.record_chunk(chunk)
        async with self._writing:
            await writer.send_many(chunks)
            self._last_write = asyncio.get_running_loop().time()

    async def _finish(self, writer: SSEWriter, error: ApiError | None) -> None:
        async with self._writing:
            if error is not None:
                await writer.send_error(error)
            await writer.done()

    async def _keepalive(self, writer: SSEWriter) -> None:
        """Ping whenever nothing was written for keepalive_s; a failed ping ends the call."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self._last_write + self._keepalive_s - loop.time())
                async with self._writing:
                    if loop.time() - self._last_write >= self._keepalive_s:
                        await writer.ping()
                        self._last_write = loop.time()
        except ConnectionResetError:
            # The relay is waiting for the router: cancelling the call ends that read.
            self._client_gone()
            self._stream.cancel()

    def _client_gone(self) -> None:
        self._outcome.client_gone = True
        logger.info("client went away mid-stream")

    def _record_end(self, end: StreamEnd) -> None:
        self._outcome.record_usage(end.usage, end.usage_source, end.channel)
        self._outcome.completed = end.failure is None
