"""The one gRPC server bootstrap: health, reflection, signals, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.interceptor import ServiceInterceptor

logger = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]


@dataclass(slots=True)
class RunningServer:
    """A started server, the port it bound, and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: Sequence[str]

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, stop taking calls, let running calls finish within `grace`."""
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)


async def start_grpc_server(
    listen_addr: str,
    register: Registrar,
    service_names: Sequence[str],
    interceptor: ServiceInterceptor,
) -> RunningServer:
    """Build, bind and start a server; `listen_addr` may use port 0 (tests)."""
    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(listen_addr)
    if port == 0:
        raise OSError(f"cannot bind {listen_addr}")
    await server.start()
    for name in (*service_names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("listening on %s (port %s)", listen_addr, port)
    return RunningServer(server, port, health_servicer, service_names)


async def wait_for_shutdown_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutdown signal received; draining")


Cleanup = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class StartedService:
    """A running service and what to close after its server stopped (engines, clients)."""

    running: RunningServer
    cleanups: list[Cleanup] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.running.port

    async def stop(self, grace: float) -> None:
        """Drain the server, then run the cleanups in reverse order."""
        await self.running.stop(grace)
        for cleanup in reversed(self.cleanups):
            await cleanup()


async def serve_until_signal(started: StartedService, grace: float) -> None:
    """Run until SIGTERM/SIGINT, then drain within `grace` seconds and clean up."""
    try:
        await wait_for_shutdown_signal()
    finally:
        await started.stop(grace)
