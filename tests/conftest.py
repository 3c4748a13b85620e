"""Shared fixtures: real Redis and PostgreSQL for the integration layer."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from tests import backends


def _unavailable(exc: Exception) -> None:
    # In CI a missing backend fails the run; on a laptop without one it skips, loudly.
    if os.environ.get("CI"):
        pytest.fail(f"backend required in CI: {exc}")
    pytest.skip(f"backend not available: {exc}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL; tests must namespace their keys (unique ids)."""
    try:
        with backends.redis_url() as url:
            yield url
    except backends.BackendUnavailable as exc:
        _unavailable(exc)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL of a fresh, empty PostgreSQL database for this test session."""
    try:
        ctx = backends.postgres_server_url()
        server_url = ctx.__enter__()
    except backends.BackendUnavailable as exc:
        _unavailable(exc)
        return
    name = "apirelay_test_" + uuid.uuid4().hex[:12]
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        ctx.__exit__(None, None, None)


async def _admin(server_url: str, statement: str) -> None:
    import asyncpg

    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
