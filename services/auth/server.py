"""Wiring of the auth service: server secret, database, core, servicer, gRPC server."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from apirelay.auth.v1 import auth_pb2_grpc
from services.auth.config import Settings
from services.auth.core import AccountAdmin, KeyVerifier, SecretHasher
from services.auth.service import ADMIN_METHODS, ERRORS, SERVICE_NAME, AuthServicer
from services.auth.store import SqlAuthStore, create_engine, create_schema
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server

logger = logging.getLogger(__name__)

HASH_SECRET_BYTES = 32
MIN_HASH_SECRET_CHARS = 32


def load_hash_secret(settings: Settings) -> bytes:
    """AUTH_HASH_SECRET, else the secret file in $APIRELAY_HOME (created on first start)."""
    if settings.hash_secret:
        secret = settings.hash_secret
    else:
        secret = _read_or_create(settings.hash_secret_file)
    if len(secret) < MIN_HASH_SECRET_CHARS:
        logger.warning("the auth hash secret is shorter than %s characters", MIN_HASH_SECRET_CHARS)
    return secret.encode()


def _read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together cannot both write a different secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text(encoding="ascii").strip()
        if not secret:
            raise ValueError(f"the auth hash secret file {path} is empty") from None
        return secret
    secret = secrets.token_hex(HASH_SECRET_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    logger.info("created the auth hash secret file %s", path)
    return secret


async def start(settings: Settings) -> StartedService:
    """Open the database, create the schema, and start serving on `settings.listen_addr`."""
    hasher = SecretHasher(load_hash_secret(settings))
    engine = create_engine(settings.effective_database_url)
    try:
        # Alembic migrations come later; until then create_all makes missing tables.
        await create_schema(engine)
        store = SqlAuthStore(engine)
        servicer = AuthServicer(KeyVerifier(store, hasher), AccountAdmin(store, hasher))
        running = await start_grpc_server(
            settings.listen_addr,
            lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            ServiceInterceptor(ERRORS, admin_methods=ADMIN_METHODS, admin_key=settings.admin_key),
        )
    except BaseException:
        await engine.dispose()
        raise
    if not settings.admin_key:
        logger.warning("APIRELAY_ADMIN_KEY is unset: admin RPCs are refused")
    start_metrics_server(settings.metrics_addr)
    return StartedService(running, [engine.dispose])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
