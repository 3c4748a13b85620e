"""Relaying one router stream (chat, legacy completions, responses, speech) to the client.

Nothing is sent before the router's first item, so a failure before any chunk is a
normal HTTP error. After the headers, a failure ends the stream as its StreamFormat
says (an in-band error event, or an aborted connection for binary audio). A client
that goes away (handler cancelled or a write failing) cancels the gRPC call at once.

All pieces of one router item go out in one write. The last item carries the usage
event, which gets the request's `cost` before it is written. While the router is quiet,
an event stream gets a `: ping` comment whenever nothing was written for `keepalive_s`
(one task per stream; a lock keeps its writes from interleaving with the relay's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from edge.cost import CostReporter
from edge.domain import StreamEnd, StreamItem
from edge.errors import ApiError, UpstreamError, from_failure, from_upstream
from edge.metrics import ACTIVE_STREAMS, STREAM_TTFB
from edge.outcome import Outcome
from edge.router_client import RouterStream
from edge.sse import PING, prepare_headers
from edge.stream_formats import StreamFormat

logger = logging.getLogger(__name__)

DEFAULT_BINARY_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class StreamSetup:
    """How to write one stream: its format, pings, cost, and what to label metrics with."""

    format: StreamFormat
    keepalive_s: float
    cost: CostReporter
    endpoint: str


class StreamRelay:
    """Copies a RouterStream to the client, recording what it delivered in `outcome`."""

    def __init__(self, stream: RouterStream, outcome: Outcome, setup: StreamSetup) -> None:
        self._stream = stream
        self._outcome = outcome
        self._setup = setup
        self._format = setup.format
        self._writing = asyncio.Lock()
        self._last_write = 0.0

    async def run(self, request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
        """Await the first item (errors raise ApiError), then send headers and relay."""
        try:
            first = await self._first()
            response = self._response(first, headers)
            await response.prepare(request)
            active = ACTIVE_STREAMS.labels(self._setup.endpoint)
            active.inc()
            try:
                await self._relay(request, response, first)
            except ConnectionResetError:
                self._client_gone()
            finally:
                active.dec()
            return response
        finally:
            self._stream.cancel()

    def _response(self, first: StreamItem, headers: Mapping[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=headers)
        if self._format.sse:
            prepare_headers(response)
        else:
            response.headers["Content-Type"] = first.content_type or DEFAULT_BINARY_TYPE
        return response

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

    async def _relay(
        self, request: web.Request, response: web.StreamResponse, item: StreamItem
    ) -> None:
        if item.chunks:
            self._outcome.mark_first_byte()
            ttfb = self._outcome.first_byte_at - self._outcome.started_at
            STREAM_TTFB.labels(self._setup.endpoint).observe(ttfb)
        keepalive = None
        if item.end is None and self._format.sse:
            self._last_write = asyncio.get_running_loop().time()
            keepalive = asyncio.get_running_loop().create_task(self._keepalive(response))
        try:
            while (end := item.end) is None:
                await self._send(response, item.chunks)
                try:
                    item = await self._stream.read()
                except UpstreamError as exc:
                    if not self._outcome.client_gone:
                        await self._finish(request, response, from_upstream(exc))
                    return
            # The last item's chunks and the end are recorded first, so the cost it
            # carries is that of what will be settled (a doubtful usage replaced).
            self._record_chunks(item.chunks)
            self._record_end(end)
            await self._send(response, self._with_cost(item.chunks), record=False)
            failure = None if end.failure is None else from_failure(end.failure)
            await self._finish(request, response, failure)
        finally:
            if keepalive is not None:
                keepalive.cancel()

    def _with_cost(self, chunks: tuple[bytes, ...]) -> tuple[bytes, ...]:
        add_cost = self._format.add_cost
        final = self._outcome.final_usage() if add_cost is not None else None
        nanos = None if final is None else self._setup.cost.nanos(final[0])
        if add_cost is None or nanos is None:
            return chunks
        return tuple(add_cost(chunk, nanos) or chunk for chunk in chunks)

    async def _send(
        self, response: web.StreamResponse, chunks: tuple[bytes, ...], *, record: bool = True
    ) -> None:
        if not chunks:
            return
        async with self._writing:
            await response.write(self._format.encode(chunks))
            self._last_write = asyncio.get_running_loop().time()
        # Recorded once written: a chunk whose write failed (the client left) was not
        # delivered, so it is not billed.
        if record:
            self._record_chunks(chunks)

    async def _finish(
        self, request: web.Request, response: web.StreamResponse, error: ApiError | None
    ) -> None:
        trailer = self._format.error_trailer
        if error is not None:
            self._outcome.record_error(error, cut=True)
        if error is not None and trailer is None:
            # A binary body cannot carry an error: break the connection instead.
            logger.warning("stream failed after its first byte; aborting the connection")
            if request.transport is not None:
                request.transport.abort()
            return
        async with self._writing:
            if error is not None and trailer is not None:
                last = self._outcome.chunks[-1] if self._outcome.chunks else None
                await response.write(trailer(error, last))
            if self._format.closing:
                await response.write(self._format.closing)
            await response.write_eof()

    async def _keepalive(self, response: web.StreamResponse) -> None:
        """Ping whenever nothing was written for keepalive_s; a failed ping ends the call."""
        loop = asyncio.get_running_loop()
        keepalive_s = self._setup.keepalive_s
        try:
            while True:
                await asyncio.sleep(self._last_write + keepalive_s - loop.time())
                async with self._writing:
                    if loop.time() - self._last_write >= keepalive_s:
                        await response.write(PING)
                        self._last_write = loop.time()
        except ConnectionResetError:
            # The relay is waiting for the router: cancelling the call ends that read.
            self._client_gone()
            self._stream.cancel()

    def _client_gone(self) -> None:
        self._outcome.client_gone = True
        logger.info("client went away mid-stream")

    def _record_chunks(self, chunks: tuple[bytes, ...]) -> None:
        if chunks:
            self._outcome.mark_first_byte()
        for chunk in chunks:
            self._outcome.record_chunk(chunk)

    def _record_end(self, end: StreamEnd) -> None:
        failed = end.failure is not None
        self._outcome.record_usage(end.usage, end.usage_source, end.channel, failed=failed)
        self._outcome.completed = not failed
