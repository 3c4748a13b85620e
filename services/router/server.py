"""Builds the router: config file, channel database, shared HTTP session, core, gRPC server."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from apirelay.router.v1 import router_pb2_grpc
from services.common.gateway_config import GatewayConfig, load_gateway_config
from services.common.grpc_client import open_channel
from services.common.grpc_server import (
    Cleanup,
    StartedService,
    serve_until_signal,
    start_grpc_server,
)
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server
from services.router.admin import ChannelAdmin, RouterBuilder
from services.router.affinity import AffinityBook
from services.router.caps import CapGate, RateLimitLeases
from services.router.channels import Channel
from services.router.config import Settings
from services.router.core import ModelRouter
from services.router.crypto import KEY_BYTES, KeyCipher, load_key
from services.router.database import create_engine, create_schema
from services.router.egress import EgressPolicy, allow_private
from services.router.health import HealthBook
from services.router.providers import build_key_providers
from services.router.service import ADMIN_METHODS, ERRORS, SERVICE_NAME, RouterServicer
from services.router.store import SqlChannelStore

logger = logging.getLogger(__name__)

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


def router_builder(session: aiohttp.ClientSession, settings: Settings,
                   caps: CapGate | None = None,
                   affinity: AffinityBook | None = None) -> RouterBuilder:
    """How a channel set becomes a ModelRouter (called at start and on every change).

    Every router built shares one HealthBook, so an admin change does not forget which
    keys are ejected, cooling down or disabled, one CapGate (its wait queue) and one
    AffinityBook (which target served which prompt).
    """
    health = HealthBook()

    def build(config: GatewayConfig, channels: tuple[Channel, ...]) -> ModelRouter:
        providers = {c.name: build_key_providers(c, session, settings.connect_timeout_s)
                     for c in channels}
        return ModelRouter(config, providers, health=health, caps=caps,
                           affinity=affinity or AffinityBook(config.affinity))

    return build


def key_cipher(settings: Settings) -> KeyCipher:
    """The cipher of upstream keys: ROUTER_ENCRYPTION_KEY, the home's file, or ephemeral."""
    if settings.encryption_key or settings.secret_file is not None:
        return KeyCipher(load_key(settings.encryption_key, settings.secret_file or Path()))
    # No home and no key: the database is in memory too, so nothing outlives the key.
    return KeyCipher(os.urandom(KEY_BYTES))


async def start(settings: Settings, environ: Mapping[str, str] = os.environ) -> StartedService:
    """Start the router; `environ` holds the upstream keys the channels name."""
    file_config = load_gateway_config(settings.config_path)
    session = upstream_session(settings)
    # Caps are held on the ratelimit service; without its address they are not enforced.
    leases = open_channel(settings.ratelimit_addr) if settings.ratelimit_addr else None
    caps = None if leases is None else CapGate(RateLimitLeases(leases), file_config.queue)
    engine = create_engine(settings.effective_database_url)
    cleanups: list[Cleanup] = [session.close, engine.dispose]
    if leases is not None:
        cleanups.append(leases.close)
    try:
        await create_schema(engine)
        admin = ChannelAdmin(
            SqlChannelStore(engine), key_cipher(settings),
            EgressPolicy(allow_private(environ, settings.config_path)),
            file_config, environ,
            router_builder(session, settings, caps, AffinityBook(file_config.affinity)))
        servicer = RouterServicer(await admin.start(), admin)
        running = await start_grpc_server(
            settings.listen_addr,
            lambda server: router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            ServiceInterceptor(ERRORS, admin_methods=ADMIN_METHODS, admin_key=settings.admin_key),
        )
    except BaseException:
        for cleanup in reversed(cleanups):
            await cleanup()
        raise
    if not settings.admin_key:
        logger.warning("APIRELAY_ADMIN_KEY is unset: channel admin RPCs are refused")
    start_metrics_server(settings.metrics_addr)
    return StartedService(running, cleanups)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
