"""The billing database engine: SQLite (embedded, WAL) or PostgreSQL (asyncpg).

On SQLite, writers are serialized with `BEGIN IMMEDIATE`: pysqlite's own implicit
transactions are turned off and every write transaction takes the write lock when it
starts, so a read-check-write sequence cannot interleave with another writer (the
equivalent of PostgreSQL's `SELECT ... FOR UPDATE`, which SQLite does not have).
Connections made for reads only (`READ_ONLY` execution option) begin a deferred
transaction and do not block writers under WAL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.billing.models import Base

READ_ONLY = "billing_read_only"
SQLITE_BUSY_TIMEOUT_MS = 5_000
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 20


def open_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(parsed)
    return create_async_engine(
        parsed, pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_MAX_OVERFLOW
    )


async def create_schema(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (migrations with alembic later)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


def _open_sqlite(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # None = autocommit at the driver level: SQLAlchemy's "begin" event emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
