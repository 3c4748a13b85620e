"""AuthService through a real grpc.aio server (SQLite in tmp_path) and a real stub."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.config import Settings
from services.auth.core import AccountAdmin, AccountStatus, KeyVerifier, SecretHasher
from services.auth.server import start
from services.auth.service import ADMIN_METHODS, ERRORS, SERVICE_NAME, AuthServicer
from services.auth.store import SqlAuthStore, create_engine
from services.common.grpc_server import start_grpc_server
from services.common.interceptor import ServiceInterceptor
from tests.backends import free_port

ADMIN_KEY = "test-admin-key"
HASH_SECRET = "grpc-test-hash-secret-0123456789abcdef"
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)

if TYPE_CHECKING:
    # Exists only in the generated .pyi: the stub's type when built on an aio channel.
    Stub: TypeAlias = auth_pb2_grpc.AuthServiceAsyncStub


@dataclass
class Running:
    """A started auth service, its stub, and its settings."""

    stub: Stub
    settings: Settings


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[Running]:
    settings = Settings(
        listen_addr="127.0.0.1:0", home=tmp_path, admin_key=ADMIN_KEY, hash_secret=HASH_SECRET
    )
    started = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    try:
        yield Running(auth_pb2_grpc.AuthServiceStub(channel), settings)
    finally:
        await channel.close()
        await started.stop(0)


def unique(prefix: str = "acct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_account(stub: Stub, group: str = "") -> auth_pb2.Account:
    request = auth_pb2.CreateAccountRequest(name=unique(), group=group)
    return (await stub.CreateAccount(request, metadata=ADMIN)).account


async def create_key(stub: Stub, account_id: str, **fields: object) -> auth_pb2.CreateApiKeyResponse:
    request = auth_pb2.CreateApiKeyRequest(account_id=account_id, **fields)  # type: ignore[arg-type]
    return await stub.CreateApiKey(request, metadata=ADMIN)


async def authenticate(stub: Stub, secret: str) -> auth_pb2.AuthenticateKeyResponse:
    return await stub.AuthenticateKey(auth_pb2.AuthenticateKeyRequest(secret=secret))


async def expect_code(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value


def auth_count(decision: str) -> float:
    value = REGISTRY.get_sample_value(
        "apirelay_auth_authentications_total", {"decision": decision}
    )
    return value or 0.0


async def test_account_lifecycle(auth: Running) -> None:
    name = unique()
    created = (await auth.stub.CreateAccount(
        auth_pb2.CreateAccountRequest(name=name), metadata=ADMIN)).account
    assert created.account_id.startswith("acct_")
    assert (created.name, created.group) == (name, "default")
    assert created.status == auth_pb2.ACCOUNT_STATUS_ACTIVE
    assert created.create_time.seconds > 0
    by_id = await auth.stub.GetAccount(
        auth_pb2.GetAccountRequest(account_id=created.account_id), metadata=ADMIN)
    by_name = await auth.stub.GetAccount(auth_pb2.GetAccountRequest(name=name), metadata=ADMIN)
    assert by_id.account == by_name.account == created
    second = await create_account(auth.stub, group="vip")
    listed = await auth.stub.ListAccounts(auth_pb2.ListAccountsRequest(), metadata=ADMIN)
    assert list(listed.accounts) == [created, second]


async def test_key_lifecycle_and_every_decision(auth: Running) -> None:
    account = await create_account(auth.stub, group="vip")
    limits = auth_pb2.KeyLimits(rpm=60, tpm=9000, concurrency=-1, rpd=5000)
    keys_before = REGISTRY.get_sample_value("apirelay_auth_api_keys_created_total") or 0.0
    issued = await create_key(
        auth.stub, account.account_id, name="ci", allowed_models=["gpt-4o"], limits=limits
    )
    key, secret = issued.key, issued.secret
    assert REGISTRY.get_sample_value("apirelay_auth_api_keys_created_total") == keys_before + 1
    assert secret.startswith("sk-") and len(secret) == 46
    assert key.display_prefix == secret[:7]
    assert (key.status, key.name, list(key.allowed_models)) == (
        auth_pb2.KEY_STATUS_ACTIVE, "ci", ["gpt-4o"])
    assert key.limits == limits and not key.HasField("revoke_time")

    allowed_before = auth_count("allowed")
    ok = await authenticate(auth.stub, secret)
    assert ok.decision == auth_pb2.AUTH_DECISION_ALLOWED
    assert ok.principal == auth_pb2.Principal(
        key_id=key.key_id, account_id=account.account_id, account_name=account.name,
        group="vip", allowed_models=["gpt-4o"], limits=limits)
    assert auth_count("allowed") == allowed_before + 1

    listed = await auth.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(account_id=account.account_id), metadata=ADMIN)
    assert list(listed.keys) == [key]
    assert secret not in str(listed)

    revoked = (await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=key.key_id), metadata=ADMIN)).key
    assert revoked.status == auth_pb2.KEY_STATUS_REVOKED and revoked.HasField("revoke_time")
    again = (await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=key.key_id), metadata=ADMIN)).key
    assert again == revoked
    result = await authenticate(auth.stub, secret)
    assert result.decision == auth_pb2.AUTH_DECISION_REVOKED
    assert not result.HasField("principal")


async def test_unknown_and_malformed_secrets(auth: Running) -> None:
    before = auth_count("unknown_key")
    for secret in ("sk-" + "A" * 43, "not-a-key", ""):
        result = await authenticate(auth.stub, secret)
        assert result.decision == auth_pb2.AUTH_DECISION_UNKNOWN_KEY
        assert not result.HasField("principal")
    assert auth_count("unknown_key") == before + 3


async def test_disabled_account(auth: Running) -> None:
    account = await create_account(auth.stub)
    secret = (await create_key(auth.stub, account.account_id)).secret
    engine = create_engine(auth.settings.effective_database_url)
    try:
        assert await SqlAuthStore(engine).set_account_status(
            account.account_id, AccountStatus.DISABLED)
    finally:
        await engine.dispose()
    result = await authenticate(auth.stub, secret)
    assert result.decision == auth_pb2.AUTH_DECISION_ACCOUNT_DISABLED
    assert not result.HasField("principal")


async def test_stored_row_holds_only_the_keyed_hash(auth: Running) -> None:
    account = await create_account(auth.stub)
    issued = await create_key(auth.stub, account.account_id)
    engine = create_engine(auth.settings.effective_database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM auth_api_keys"))).mappings().all()
    finally:
        await engine.dispose()
    (row,) = rows
    assert all(issued.secret[3:] not in str(value) for value in row.values())
    expected = hmac.new(HASH_SECRET.encode(), issued.secret.encode(), hashlib.sha256).hexdigest()
    assert row["secret_hash"] == expected
    assert row["display_prefix"] == issued.secret[:7]


async def test_duplicate_name_is_already_exists(auth: Running) -> None:
    name = unique()
    await auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(name=name), metadata=ADMIN)
    await expect_code(
        auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(name=name), metadata=ADMIN),
        grpc.StatusCode.ALREADY_EXISTS)


async def test_not_found(auth: Running) -> None:
    calls = [
        auth.stub.GetAccount(auth_pb2.GetAccountRequest(account_id="acct_nope"), metadata=ADMIN),
        auth.stub.GetAccount(auth_pb2.GetAccountRequest(name="nobody"), metadata=ADMIN),
        auth.stub.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(account_id="acct_nope"), metadata=ADMIN),
        auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(account_id="acct_nope"), metadata=ADMIN),
        auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id="key_nope"), metadata=ADMIN),
    ]
    for call in calls:
        await expect_code(call, grpc.StatusCode.NOT_FOUND)


async def test_invalid_arguments(auth: Running) -> None:
    account = await create_account(auth.stub)
    calls = [
        auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(name="has space"), metadata=ADMIN),
        auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(name=""), metadata=ADMIN),
        auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(name="x" * 65), metadata=ADMIN),
        auth.stub.GetAccount(auth_pb2.GetAccountRequest(), metadata=ADMIN),
        auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(
            account_id=account.account_id, limits=auth_pb2.KeyLimits(rpd=-2)), metadata=ADMIN),
        auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(), metadata=ADMIN),
        auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=ADMIN),
        auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(), metadata=ADMIN),
    ]
    for call in calls:
        await expect_code(call, grpc.StatusCode.INVALID_ARGUMENT)


def _admin_requests() -> dict[str, object]:
    return {
        "CreateAccount": auth_pb2.CreateAccountRequest(name=unique()),
        "GetAccount": auth_pb2.GetAccountRequest(name="x"),
        "ListAccounts": auth_pb2.ListAccountsRequest(),
        "CreateApiKey": auth_pb2.CreateApiKeyRequest(account_id="acct_x"),
        "ListApiKeys": auth_pb2.ListApiKeysRequest(account_id="acct_x"),
        "RevokeApiKey": auth_pb2.RevokeApiKeyRequest(key_id="key_x"),
    }


def test_every_rpc_but_authenticate_is_admin() -> None:
    assert {m.split("/")[-1] for m in ADMIN_METHODS} == set(_admin_requests())
    assert all(m.startswith(f"/{SERVICE_NAME}/") for m in ADMIN_METHODS)


@pytest.mark.parametrize("method", sorted(_admin_requests()))
@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer wrong-key"),), (("authorization", ADMIN_KEY + "x"),)]
)
async def test_admin_guard(auth: Running, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
    call = getattr(auth.stub, method)(_admin_requests()[method], metadata=metadata)
    await expect_code(call, grpc.StatusCode.UNAUTHENTICATED)
    listed = await auth.stub.ListAccounts(auth_pb2.ListAccountsRequest(), metadata=ADMIN)
    assert list(listed.accounts) == []


async def test_admin_api_disabled_without_admin_key(tmp_path: Path) -> None:
    settings = Settings(listen_addr="127.0.0.1:0", home=tmp_path, hash_secret=HASH_SECRET)
    started = await start(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await expect_code(
                stub.ListAccounts(auth_pb2.ListAccountsRequest(), metadata=ADMIN),
                grpc.StatusCode.PERMISSION_DENIED)
            result = await authenticate(stub, "sk-" + "B" * 43)
            assert result.decision == auth_pb2.AUTH_DECISION_UNKNOWN_KEY
    finally:
        await started.stop(0)


async def test_unreachable_database_is_unavailable() -> None:
    engine = create_engine(f"postgresql+asyncpg://nobody:pw@127.0.0.1:{free_port()}/nothing")
    store = SqlAuthStore(engine)
    hasher = SecretHasher(HASH_SECRET.encode())
    servicer = AuthServicer(KeyVerifier(store, hasher), AccountAdmin(store, hasher))
    running = await start_grpc_server(
        "127.0.0.1:0",
        lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
        ServiceInterceptor(ERRORS, admin_methods=ADMIN_METHODS, admin_key=ADMIN_KEY),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            error = await expect_code(
                authenticate(stub, "sk-" + "C" * 43), grpc.StatusCode.UNAVAILABLE)
            assert "nobody" not in (error.details() or "")
            await expect_code(
                stub.CreateAccount(auth_pb2.CreateAccountRequest(name="x"), metadata=ADMIN),
                grpc.StatusCode.UNAVAILABLE)
    finally:
        await running.stop(0)
        await engine.dispose()
