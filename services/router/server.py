"""Builds the router: config file, shared HTTP client, providers, core, gRPC server."""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from apirelay.router.v1 import router_pb2_grpc
from services.common.gateway_config import load_gateway_config
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server
from services.router.config import Settings
from services.router.core import ModelRouter
from services.router.providers import build_providers
from services.router.service import ERRORS, SERVICE_NAME, RouterServicer


def upstream_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client every upstream call of this process shares."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=settings.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.max_upstream_connections,
            max_keepalive_connections=settings.max_upstream_connections,
        ),
        follow_redirects=False,
    )


async def start(settings: Settings, environ: Mapping[str, str] = os.environ) -> StartedService:
    """Start the router; `environ` holds the upstream keys the channels name."""
    config = load_gateway_config(settings.config_path)
    client = upstream_client(settings)
    try:
        providers = build_providers(config.channels, client, environ)
        servicer = RouterServicer(ModelRouter(config, providers))
        running = await start_grpc_server(
            settings.listen_addr,
            lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            ServiceInterceptor(ERRORS),
        )
    except BaseException:
        await client.aclose()
        raise
    start_metrics_server(settings.metrics_addr)
    return StartedService(running, [client.aclose])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
