"""Opening the billing database: SQLite (embedded, WAL) or PostgreSQL (asyncpg).

The URL's dialect picks the transaction runner (see `runner.py`). SQLite URLs may name
the aiosqlite driver (`sqlite+aiosqlite://`, the configured form) or none: either way
the database is opened with the stdlib `sqlite3` driver on a sync engine, because its
one connection is used synchronously on the event loop and needs no async driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.billing.checkpoint import WalCheckpointer
from services.billing.models import Base
from services.billing.runner import AsyncEngineRunner, SqliteRunner, TransactionRunner

# Only another process (a backup, a CLI) can hold the lock: this one has one connection.
SQLITE_BUSY_TIMEOUT_MS = 5_000
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 20


def open_database(url: str) -> TransactionRunner:
    """The transaction runner for `url`; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _open_sqlite(parsed)
        file = parsed.database if parsed.database not in (None, "", ":memory:") else None
        checkpointer = WalCheckpointer(str(Path(file).expanduser())) if file else None
        return SqliteRunner(engine, checkpointer)
    return AsyncEngineRunner(open_async_engine(url))


def open_async_engine(url: str) -> AsyncEngine:
    """An async engine (PostgreSQL on asyncpg) with the service's pool sizes."""
    return create_async_engine(
        make_url(url), pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_MAX_OVERFLOW
    )


class SchemaOutdated(RuntimeError):
    """The database has the billing tables, but not all of this version's columns."""


async def create_schema(runner: TransactionRunner) -> None:
    """Create the tables that do not exist yet; SchemaOutdated if one lacks a column."""
    await runner.write(_create_and_check)


def _create_and_check(conn: Connection) -> None:
    Base.metadata.create_all(conn)
    # create_all never alters an existing table, and until migrations exist (alembic
    # later) a missing column would fail every reserve or settle: refuse to start.
    inspector = inspect(conn)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        if missing:
            raise SchemaOutdated(
                f"billing table {table.name!r} lacks columns {', '.join(missing)}: the"
                " database was made by an older version; recreate it (no migrations yet)"
            )


def _open_sqlite(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # NullPool: the runner keeps its single connection for its whole life.
    engine = create_engine(url.set(drivername="sqlite"), poolclass=NullPool)
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # None = autocommit at the driver level: the runner emits BEGIN [IMMEDIATE] itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL in WAL mode syncs the log only at checkpoints, not at each commit: a
    # committed transaction survives a crash of this process, but a power loss or OS
    # crash may lose the last commits (the database is never corrupted).
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on a thread of their own (checkpoint.py), not inside a commit.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
