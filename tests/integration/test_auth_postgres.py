"""SqlAuthStore on a real PostgreSQL database (the `postgres_url` fixture)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth.core import (
    Account,
    AccountAdmin,
    AccountStatus,
    ApiKey,
    Decision,
    KeySpec,
    KeyStatus,
    KeyVerifier,
    Limits,
    SecretHasher,
)
from services.auth.errors import AccountNameTaken
from services.auth.store import SqlAuthStore, create_engine, create_schema

pytestmark = pytest.mark.integration

CREATED = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    await create_schema(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def account(name: str | None = None) -> Account:
    suffix = uuid.uuid4().hex[:12]
    return Account(f"acct_{suffix}", name or f"pg-{suffix}", "vip", AccountStatus.ACTIVE, CREATED)


def api_key(account_id: str, **changes: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "key_id": f"key_{uuid.uuid4().hex[:12]}", "account_id": account_id, "name": "ci",
        "display_prefix": "sk-abcd", "status": KeyStatus.ACTIVE,
        "allowed_models": ("gpt-4o", "o3"), "limits": Limits(60, 1000, 2),
        "created_at": CREATED,
    }
    fields.update(changes)
    return ApiKey(**fields)


async def test_accounts_round_trip(engine: AsyncEngine) -> None:
    store = SqlAuthStore(engine)
    first, second = account(), account()
    await store.insert_account(first)
    await store.insert_account(second)
    assert await store.get_account(first.account_id) == first
    assert await store.get_account_by_name(second.name) == second
    assert await store.get_account("acct_missing") is None
    ids = [a.account_id for a in await store.list_accounts()]
    assert ids.index(first.account_id) < ids.index(second.account_id)
    with pytest.raises(AccountNameTaken):
        await store.insert_account(account(name=first.name))
    assert await store.set_account_status(first.account_id, AccountStatus.DISABLED)
    assert (await store.get_account(first.account_id)).status is AccountStatus.DISABLED  # type: ignore[union-attr]
    assert not await store.set_account_status("acct_missing", AccountStatus.DISABLED)


async def test_keys_round_trip_and_revoke(engine: AsyncEngine) -> None:
    store = SqlAuthStore(engine)
    owner = account()
    await store.insert_account(owner)
    key = api_key(owner.account_id)
    later = api_key(owner.account_id, allowed_models=())
    await store.insert_key(key, uuid.uuid4().hex * 2)
    await store.insert_key(later, uuid.uuid4().hex * 2)
    assert await store.get_key(key.key_id) == key
    assert await store.list_keys(owner.account_id) == [key, later]
    first_time = CREATED + timedelta(hours=1)
    revoked = await store.revoke_key(key.key_id, first_time)
    assert revoked is not None
    assert (revoked.status, revoked.revoked_at) == (KeyStatus.REVOKED, first_time)
    assert await store.revoke_key(key.key_id, first_time + timedelta(hours=1)) == revoked
    assert await store.revoke_key("key_missing", first_time) is None


async def test_find_by_hash_is_one_query(engine: AsyncEngine) -> None:
    store = SqlAuthStore(engine)
    owner = account()
    await store.insert_account(owner)
    key = api_key(owner.account_id)
    digest = uuid.uuid4().hex * 2
    await store.insert_key(key, digest)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        match = await store.find_key_by_hash(digest)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert match is not None
    assert (match.key, match.account, match.secret_hash) == (key, owner, digest)
    assert len(statements) == 1, statements
    assert await store.find_key_by_hash("f" * 64) is None


async def test_core_on_postgres(engine: AsyncEngine) -> None:
    store = SqlAuthStore(engine)
    hasher = SecretHasher(b"integration-server-secret-0123456789")
    admin, verifier = AccountAdmin(store, hasher), KeyVerifier(store, hasher)
    owner = await admin.create_account(f"core-{uuid.uuid4().hex[:12]}")
    issued = await admin.create_api_key(KeySpec(owner.account_id, limits=Limits(rpm=5)))
    result = await verifier.authenticate(issued.secret)
    assert result.decision is Decision.ALLOWED
    assert result.principal is not None and result.principal.limits == Limits(rpm=5)
    await admin.revoke_api_key(issued.key.key_id)
    assert (await verifier.authenticate(issued.secret)).decision is Decision.REVOKED
