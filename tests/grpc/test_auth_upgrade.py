"""AuthService on a database made before keys had a daily limit: it gains the column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.config import DATABASE_FILE, Settings
from services.auth.server import start
from tests.grpc.test_auth_service import ADMIN, ADMIN_KEY, HASH_SECRET, create_account, create_key


async def _with_auth(settings: Settings, secret: str = "") -> tuple[str, auth_pb2.Principal]:
    """Start auth; issue a key when `secret` is empty, then authenticate it."""
    started = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    try:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        if not secret:
            account = await create_account(stub)
            limits = auth_pb2.KeyLimits(rpm=60, concurrency=-1)
            secret = (await create_key(stub, account.account_id, limits=limits)).secret
        reply = await stub.AuthenticateKey(auth_pb2.AuthenticateKeyRequest(secret=secret))
        assert reply.decision == auth_pb2.AUTH_DECISION_ALLOWED
        fresh = await create_key(stub, reply.principal.account_id,
                                 limits=auth_pb2.KeyLimits(rpd=7))
        assert fresh.key.limits.rpd == 7
        listed = await stub.ListApiKeys(
            auth_pb2.ListApiKeysRequest(account_id=reply.principal.account_id), metadata=ADMIN)
        assert [k.limits.rpd for k in listed.keys][-1] == 7
        return secret, reply.principal
    finally:
        await channel.close()
        await started.stop(0)


async def test_an_older_database_gains_rpd_and_its_keys_keep_their_limits(tmp_path: Path) -> None:
    settings = Settings(listen_addr="127.0.0.1:0", home=tmp_path, admin_key=ADMIN_KEY,
                        hash_secret=HASH_SECRET)
    secret, before = await _with_auth(settings)
    with sqlite3.connect(tmp_path / DATABASE_FILE) as db:  # as the first release made it
        db.execute("ALTER TABLE auth_api_keys DROP COLUMN rpd")
        assert "rpd" not in {row[1] for row in db.execute("PRAGMA table_info(auth_api_keys)")}
    _, after = await _with_auth(settings, secret)
    assert after.limits == auth_pb2.KeyLimits(rpm=60, concurrency=-1) == before.limits
