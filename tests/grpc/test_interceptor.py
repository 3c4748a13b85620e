"""The shared interceptor: error table, generic INTERNAL, admin guard, request id."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.common.context import get_request_id
from services.common.grpc_server import StartedService, start_grpc_server
from services.common.interceptor import ServiceInterceptor


class Missing(Exception):
    """A domain 'not found'."""


class MoreSpecificMissing(Missing):
    """A subclass that must map through its base."""


IDENTITY = (lambda b: b, lambda b: b)


def _behaviour(request: bytes) -> bytes:
    mode = request.decode()
    if mode == "missing":
        raise MoreSpecificMissing("no such thing")
    if mode == "boom":
        raise RuntimeError("secret detail /etc/passwd")
    return get_request_id().encode()


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return _behaviour(request)


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    if request == b"forever":
        while True:
            await asyncio.sleep(0.01)
            yield get_request_id().encode()
    if request == b"flood":  # fills flow-control windows: the server blocks in its write
        while True:
            yield b"x" * 1_000_000
    yield _behaviour(request)


def _register(server: grpc.aio.Server) -> None:
    handlers: dict[str, Any] = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, *IDENTITY),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream, *IDENTITY),
        "Admin": grpc.unary_unary_rpc_method_handler(_unary, *IDENTITY),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    interceptor = ServiceInterceptor({Missing: grpc.StatusCode.NOT_FOUND}, {"/t.T/Admin"}, "ak-1")
    running = await start_grpc_server("127.0.0.1:0", _register, ["t.T"], interceptor)
    started = StartedService(running)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as chan:
        yield chan
    await started.stop(0)


async def test_request_id_reaches_the_handler(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/t.T/Unary")
    assert await call(b"ok", metadata=(("x-request-id", "req_abc"),)) == b"req_abc"


async def test_domain_error_maps_through_its_base_class(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/t.T/Unary")(b"missing")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no such thing"


async def test_unexpected_error_is_generic_internal(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/t.T/Unary")(b"boom")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "passwd" not in (info.value.details() or "")


async def test_stream_error_after_items(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/t.T/Stream")(b"missing")
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), grpc.StatusCode.UNAUTHENTICATED),
     ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED)],
)
async def test_admin_guard_refuses(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/t.T/Admin")(b"ok", metadata=metadata)
    assert info.value.code() == code


async def test_admin_guard_accepts_the_key(channel: grpc.aio.Channel) -> None:
    reply = await channel.unary_unary("/t.T/Admin")(
        b"ok", metadata=(("authorization", "Bearer ak-1"), ("x-request-id", "r1"))
    )
    assert reply == b"r1"


@pytest.mark.parametrize("mode", [b"forever", b"flood"])
async def test_cancelled_stream_closes_cleanly(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, mode: bytes
) -> None:
    gc.collect()  # earlier tests' garbage must not be logged during this one
    await asyncio.sleep(0)
    caplog.clear()
    call = channel.unary_stream("/t.T/Stream")(mode, metadata=(("x-request-id", "r9"),))
    assert await call.read() == b"first"
    assert len(await call.read()) > 1
    await asyncio.sleep(0.2)
    call.cancel()
    await asyncio.sleep(0.1)
    gc.collect()
    await asyncio.sleep(0.05)
    # grpc itself logs a failed write when a flooded call is cancelled; ours must not error.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "asyncio"]
    assert errors == []
