"""Builds the router: config file, shared HTTP session, providers, core, gRPC server."""

from __future__ import annotations

import os
from collections.abc import Mapping

import aiohttp

from apirelay.router.v1 import router_pb2_grpc
from services.common.gateway_config import load_gateway_config
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server
from services.router.catalog import router_config
from services.router.config import Settings
from services.router.core import ModelRouter
from services.router.providers import build_providers
from services.router.service import ERRORS, SERVICE_NAME, RouterServicer

# Idle upstream connections are kept this long for the next request.
KEEPALIVE_S = 30.0
# Upstream host names are resolved again after this long.
DNS_CACHE_S = 60


def upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session every upstream call of this process shares.

    Each call sets its own timeouts (from its channel); the session's are only the
    fallback. No cookies, no redirects followed, no User-Agent: upstreams need none.
    """
    connector = aiohttp.TCPConnector(
        limit=settings.max_upstream_connections,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ttl_dns_cache=DNS_CACHE_S,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s),
        skip_auto_headers=("User-Agent",),
        trust_env=False,
    )


async def start(settings: Settings, environ: Mapping[str, str] = os.environ) -> StartedService:
    """Start the router; `environ` holds the upstream keys the channels name."""
    config = router_config(load_gateway_config(settings.config_path), environ)
    session = upstream_session(settings)
    try:
        providers = build_providers(config.channels, session, environ, settings.connect_timeout_s)
        servicer = RouterServicer(ModelRouter(config, providers))
        running = await start_grpc_server(
            settings.listen_addr,
            lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            ServiceInterceptor(ERRORS),
        )
    except BaseException:
        await session.close()
        raise
    start_metrics_server(settings.metrics_addr)
    return StartedService(running, [session.close])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
