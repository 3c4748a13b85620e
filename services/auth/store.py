"""Persistence of accounts and keys: the `AuthStore` protocol and its SQL implementation.

The store only ever sees secret hashes. Driver failures that mean "the database cannot be
reached" become `StoreUnavailable`; a taken account name becomes `AccountNameTaken`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, event, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from services.auth.core import (
    Account,
    AccountStatus,
    ApiKey,
    KeyMatch,
    KeyStatus,
    Limits,
)
from services.auth.errors import AccountNameTaken, StoreUnavailable
from services.auth.models import AccountRow, ApiKeyRow, Base

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5_000
CONNECT_TIMEOUT_S = 5.0


class AuthStore(Protocol):
    """Where accounts and keys live; holds no rules."""

    async def insert_account(self, account: Account) -> None:
        """Add an account; AccountNameTaken if the name exists."""

    async def get_account(self, account_id: str) -> Account | None:
        """The account with this id."""

    async def get_account_by_name(self, name: str) -> Account | None:
        """The account with this name."""

    async def list_accounts(self) -> list[Account]:
        """Every account in creation order."""

    async def set_account_status(self, account_id: str, status: AccountStatus) -> bool:
        """Change an account's status; False if there is no such account."""

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        """Add a key with the keyed hash of its secret."""

    async def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id."""

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        """An account's keys in creation order."""

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark an active key revoked at `at`; returns the key as stored afterwards."""

    async def find_key_by_hash(self, secret_hash: str) -> KeyMatch | None:
        """The key with this secret hash and its account, in one read."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; SQLite gets its folder, WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pool_pre_ping: it would add a round trip to every AuthenticateKey. A connection
        # broken by a server restart fails one call (UNAVAILABLE) and the pool drops it.
        return create_async_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_S})
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """Create missing tables and columns. Alembic migrations replace this later."""
    with _unavailable_on_failure():
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(_add_missing_columns)


# Columns added since the first release, with the DDL that adds them to an older table.
_ADDED_COLUMNS = (("auth_api_keys", "rpd", "BIGINT NOT NULL DEFAULT 0"),)


def _add_missing_columns(conn: Connection) -> None:
    # create_all never alters an existing table; without this a database made by an
    # older version would fail every key read (keys created then keep working).
    inspector = inspect(conn)
    for table, column, ddl in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


@contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
            OSError, TimeoutError) as exc:
        # The driver's own message; statements and parameters (hashes at most) stay out.
        cause = getattr(exc, "orig", None) or exc
        logger.warning("auth database unavailable: %s: %s", type(cause).__name__, cause)
        raise StoreUnavailable("auth database unavailable") from exc


class SqlAuthStore:
    """AuthStore on SQLAlchemy async (SQLite by default, PostgreSQL to scale out)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def insert_account(self, account: Account) -> None:
        """Add an account; AccountNameTaken if the name exists."""
        row = AccountRow(
            account_id=account.account_id,
            name=account.name,
            group_name=account.group,
            status=account.status.value,
            created_at=account.created_at.astimezone(UTC),
        )
        with _unavailable_on_failure():
            async with self._sessions.begin() as session:
                session.add(row)
                try:
                    await session.flush()
                except sa_exc.IntegrityError as exc:
                    raise AccountNameTaken(f"account {account.name!r} already exists") from exc

    async def get_account(self, account_id: str) -> Account | None:
        """The account with this id."""
        return await self._one_account(AccountRow.account_id == account_id)

    async def get_account_by_name(self, name: str) -> Account | None:
        """The account with this name."""
        return await self._one_account(AccountRow.name == name)

    async def _one_account(self, condition: Any) -> Account | None:
        with _unavailable_on_failure():
            async with self._sessions() as session:
                row = await session.scalar(select(AccountRow).where(condition))
        return None if row is None else _account(row)

    async def list_accounts(self) -> list[Account]:
        """Every account in creation order."""
        with _unavailable_on_failure():
            async with self._sessions() as session:
                rows = await session.scalars(select(AccountRow).order_by(AccountRow.seq))
                return [_account(row) for row in rows]

    async def set_account_status(self, account_id: str, status: AccountStatus) -> bool:
        """Change an account's status; False if there is no such account."""
        statement = (
            update(AccountRow)
            .where(AccountRow.account_id == account_id)
            .values(status=status.value)
            .returning(AccountRow.seq)
        )
        with _unavailable_on_failure():
            async with self._sessions.begin() as session:
                return (await session.execute(statement)).first() is not None

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        """Add a key with the keyed hash of its secret."""
        row = ApiKeyRow(
            key_id=key.key_id,
            account_id=key.account_id,
            secret_hash=secret_hash,
            display_prefix=key.display_prefix,
            name=key.name,
            status=key.status.value,
            allowed_models=list(key.allowed_models),
            rpm=key.limits.rpm,
            tpm=key.limits.tpm,
            concurrency=key.limits.concurrency,
            rpd=key.limits.rpd,
            created_at=key.created_at.astimezone(UTC),
            revoked_at=None if key.revoked_at is None else key.revoked_at.astimezone(UTC),
        )
        with _unavailable_on_failure():
            async with self._sessions.begin() as session:
                session.add(row)

    async def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id."""
        with _unavailable_on_failure():
            async with self._sessions() as session:
                row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
        return None if row is None else _api_key(row)

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        """An account's keys in creation order."""
        statement = (
            select(ApiKeyRow).where(ApiKeyRow.account_id == account_id).order_by(ApiKeyRow.seq)
        )
        with _unavailable_on_failure():
            async with self._sessions() as session:
                return [_api_key(row) for row in await session.scalars(statement)]

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark an active key revoked at `at`; returns the key as stored afterwards."""
        # The status condition keeps the first revoke time if two revocations race.
        statement = (
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.status == KeyStatus.ACTIVE.value)
            .values(status=KeyStatus.REVOKED.value, revoked_at=at.astimezone(UTC))
        )
        with _unavailable_on_failure():
            async with self._sessions.begin() as session:
                await session.execute(statement)
                row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
                return None if row is None else _api_key(row)

    async def find_key_by_hash(self, secret_hash: str) -> KeyMatch | None:
        """The key with this secret hash and its account, in one read."""
        statement = (
            select(ApiKeyRow, AccountRow)
            .join(AccountRow, AccountRow.account_id == ApiKeyRow.account_id)
            .where(ApiKeyRow.secret_hash == secret_hash)
        )
        with _unavailable_on_failure():
            async with self._sessions() as session:
                found = (await session.execute(statement)).first()
        if found is None:
            return None
        key_row, account_row = found
        return KeyMatch(_api_key(key_row), _account(account_row), key_row.secret_hash)


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _account(row: AccountRow) -> Account:
    return Account(
        account_id=row.account_id,
        name=row.name,
        group=row.group_name,
        status=AccountStatus(row.status),
        created_at=_utc(row.created_at),
    )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        account_id=row.account_id,
        name=row.name,
        display_prefix=row.display_prefix,
        status=KeyStatus(row.status),
        allowed_models=tuple(row.allowed_models),
        limits=Limits(rpm=row.rpm, tpm=row.tpm, concurrency=row.concurrency, rpd=row.rpd),
        created_at=_utc(row.created_at),
        revoked_at=None if row.revoked_at is None else _utc(row.revoked_at),
    )
