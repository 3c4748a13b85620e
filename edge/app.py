"""The application factory: settings, service clients, middlewares, routes."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from edge.auth import Authenticator, PrincipalCache
from edge.catalog import ModelCatalog
from edge.clients import AuthClient, BatchLimits, BillingClient, Clients, RateLimitClient
from edge.config import Settings
from edge.cors import CorsPolicy, cors_headers_hook, preflight_middleware
from edge.idempotency import IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore
from edge.keys import (
    AUTHENTICATOR,
    CATALOG,
    CLIENTS,
    IDEMPOTENCY,
    LIFECYCLE,
    LIMIT_POLICY,
    RESPONSE_CACHE,
    SETTINGS,
    SETTLER,
    Lifecycle,
)
from edge.limits import LimitPolicy
from edge.middlewares import request_context, require_auth, stamp_processing_time
from edge.response_cache_store import (
    MemoryResponseCache,
    RedisResponseCache,
    ResponseCacheStore,
)
from edge.router_client import RouterClient
from edge.routes import setup_routes
from edge.settlement import Settler
from edge.spool import Spool
from edge.spool_drain import DrainPolicy, Outbox
from edge.spool_redis import RedisSpool
from edge.spool_sqlite import SqliteSpool
from services.common.context import get_request_id
from services.common.gateway_config import load_gateway_config
from services.common.grpc_client import open_channel
from services.common.limits_config import LimitsConfig
from services.common.metrics import start_metrics_server

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run edge application for `settings`."""
    cors = CorsPolicy.of(settings.cors_origins) if settings.cors_origins else None
    middlewares: list[Middleware] = [request_context, require_auth]
    if cors is not None:
        middlewares.insert(1, preflight_middleware(cors))  # preflights carry no key
    # Routes read bodies themselves within their own limit (edge.body); this is the cap
    # for anything read through aiohttp.
    max_size = max(settings.max_body_bytes, settings.max_upload_bytes)
    app = web.Application(client_max_size=max_size, middlewares=middlewares)
    app[SETTINGS] = settings
    app[LIFECYCLE] = Lifecycle()
    app[LIMIT_POLICY] = limit_policy(settings)  # read now: a bad `limits:` fails at startup
    app.cleanup_ctx.append(_service_clients)
    app.cleanup_ctx.append(_settlement)
    app.cleanup_ctx.append(_idempotency)
    app.cleanup_ctx.append(_response_cache)
    app.on_startup.append(_start_metrics)
    app.on_shutdown.append(_start_draining)
    app.on_response_prepare.append(_hide_server_header)
    app.on_response_prepare.append(stamp_processing_time)
    if cors is not None:
        app.on_response_prepare.append(cors_headers_hook(cors))
    setup_routes(app)
    return app


def limit_policy(settings: Settings) -> LimitPolicy:
    """The rate limits of requests: apirelay.yaml's `limits:` section, else the built-in ones."""
    if not settings.config_path:
        return LimitPolicy(LimitsConfig())
    return LimitPolicy(load_gateway_config(settings.config_path).limits)


def open_clients(settings: Settings, policy: LimitPolicy | None = None) -> Clients:
    """Channels to the four services and the typed clients over them."""
    timeout = settings.rpc_timeout_s
    channels = (
        ("auth", open_channel(settings.auth_addr)),
        ("ratelimit", open_channel(settings.ratelimit_addr)),
        ("billing", open_channel(settings.billing_addr)),
        ("router", open_channel(settings.router_addr)),
    )
    by_name = dict(channels)
    limits = BatchLimits(settings.batch_max_in_flight, settings.batch_max_items)
    return Clients(
        auth=AuthClient(by_name["auth"], timeout),
        ratelimit=RateLimitClient(by_name["ratelimit"], timeout, limits,
                                  policy or limit_policy(settings)),
        billing=BillingClient(by_name["billing"], timeout, limits),
        router=RouterClient(by_name["router"], timeout),
        channels=channels,
    )


async def _service_clients(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    clients = app[CLIENTS] = open_clients(settings, app[LIMIT_POLICY])
    cache = PrincipalCache(settings.auth_cache_ttl_s, settings.auth_cache_size)
    app[AUTHENTICATOR] = Authenticator(clients.auth, cache)
    app[CATALOG] = ModelCatalog(
        lambda: clients.router.list_models(get_request_id()), settings.models_ttl_s
    )
    try:
        yield
    finally:
        await clients.close()


def open_spool(settings: Settings) -> Spool:
    """The settlement spool: a Redis stream with EDGE_REDIS_URL (shared by replicas),
    else the SQLite file EDGE_SPOOL_PATH ($APIRELAY_HOME/edge-spool.db)."""
    if settings.redis_url:
        return RedisSpool.from_url(settings.redis_url, settings.spool_stream,
                                   settings.spool_group, consumer_name())
    return SqliteSpool(settings.spool_path or ":memory:")


def consumer_name() -> str:
    """This process's name among the edge replicas reading the spool's stream."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


async def _settlement(app: web.Application) -> AsyncIterator[None]:
    # Registered after the clients, so it is torn down first: pending settlements
    # finish (or are spooled) while the channels are still open.
    settings, clients = app[SETTINGS], app[CLIENTS]
    outbox = Outbox(open_spool(settings), clients.billing,
                    DrainPolicy(poll_s=settings.spool_poll_s))
    outbox.start()  # first pass at once: what a previous run left is applied now
    settler = app[SETTLER] = Settler(clients.billing, clients.ratelimit, outbox)
    yield
    if settler.pending:
        logger.info("waiting for %d pending settlement call(s)", settler.pending)
    await settler.drain()
    await outbox.close(settings.spool_drain_s)


PENDING_CLAIM_MARGIN_S = 60.0


def open_idempotency_store(settings: Settings) -> IdempotencyStore:
    """Redis when `EDGE_REDIS_URL` is set (shared by replicas), else this process's memory."""
    # A claim outlives the longest request by a margin, then a dead edge's claim lapses.
    pending_ttl_s = settings.request_timeout_s + PENDING_CLAIM_MARGIN_S
    if settings.redis_url:
        return RedisIdempotencyStore.from_url(
            settings.redis_url, settings.idempotency_ttl_s, pending_ttl_s
        )
    return MemoryIdempotencyStore(
        settings.idempotency_ttl_s, pending_ttl_s, settings.idempotency_max_entries
    )


async def _idempotency(app: web.Application) -> AsyncIterator[None]:
    store = app[IDEMPOTENCY] = open_idempotency_store(app[SETTINGS])
    try:
        yield
    finally:
        await store.close()


def open_response_cache(settings: Settings) -> ResponseCacheStore:
    """Redis when `EDGE_REDIS_URL` is set (shared by replicas), else this process's memory."""
    if settings.redis_url:
        return RedisResponseCache.from_url(settings.redis_url)
    return MemoryResponseCache(settings.response_cache_max_entries)


async def _response_cache(app: web.Application) -> AsyncIterator[None]:
    store = app[RESPONSE_CACHE] = open_response_cache(app[SETTINGS])
    try:
        yield
    finally:
        await store.close()


async def _start_metrics(app: web.Application) -> None:
    start_metrics_server(app[SETTINGS].metrics_addr)


async def _hide_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    # The framework's name and version help attackers, not clients.
    response.headers.popall("Server", None)


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE].draining = True
    logger.info("shutting down; draining in-flight requests")
