"""Opening the router database: SQLite in $APIRELAY_HOME (WAL) or PostgreSQL (asyncpg).

The router reads its channels at start and after an admin change, never per request,
so one small async engine is all it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from services.router.models import Base

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5_000
CONNECT_TIMEOUT_S = 5.0


class StoreUnavailable(RuntimeError):
    """The router database cannot be reached."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; SQLite gets its folder, WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True,
                                   connect_args={"timeout": CONNECT_TIMEOUT_S})
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # In memory, every connection would see its own empty database: share one.
    memory = parsed.database in (None, "", ":memory:")
    engine = create_async_engine(url, poolclass=StaticPool) if memory else create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """Create missing tables. Alembic migrations replace this later."""
    with unavailable_on_failure():
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Turn "the database cannot be reached" driver errors into StoreUnavailable."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
            OSError, TimeoutError) as exc:
        # The driver's own message; statements and parameters (ciphertexts) stay out.
        cause = getattr(exc, "orig", None) or exc
        logger.warning("router database unavailable: %s: %s", type(cause).__name__, cause)
        raise StoreUnavailable("router database unavailable") from exc
