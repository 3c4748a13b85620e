"""Builds the rate-limit service from its settings and runs it."""

from __future__ import annotations

import logging

import grpc

from apirelay.ratelimit.v1 import ratelimit_pb2_grpc
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server
from services.ratelimit import service
from services.ratelimit.config import Settings
from services.ratelimit.core import Limiter
from services.ratelimit.outage import FailMode
from services.ratelimit.redis_store import RedisLimiterStore
from services.ratelimit.store import LimiterStore, MemoryLimiterStore

logger = logging.getLogger(__name__)


def build_limiter(settings: Settings) -> tuple[Limiter, LimiterStore]:
    """The limiter and its primary store (Redis if a URL is set, else memory)."""
    config = settings.limiter_config()
    if not settings.redis_url:
        logger.info("rate limits kept in memory (exact for one replica only)")
        store: LimiterStore = MemoryLimiterStore()
        return Limiter(store, config), store
    store = RedisLimiterStore.from_url(
        settings.redis_url, settings.redis_prefix, settings.redis_timeout_s
    )
    fallback = MemoryLimiterStore() if settings.fail_mode is FailMode.OPEN else None
    return Limiter(store, config, fallback, settings.outage_policy()), store


async def start(settings: Settings) -> StartedService:
    """Start the gRPC server (and the metrics endpoint) with stores built from `settings`."""
    limiter, store = build_limiter(settings)
    servicer = service.RateLimitServicer(limiter)

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)

    try:
        running = await start_grpc_server(
            settings.listen_addr, register, [service.SERVICE_NAME],
            ServiceInterceptor(service.ERRORS),
        )
    except BaseException:
        await store.close()
        raise
    start_metrics_server(settings.metrics_addr)
    return StartedService(running, [store.close])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
