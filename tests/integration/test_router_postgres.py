"""SqlChannelStore on a real PostgreSQL database (the `postgres_url` fixture)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.router.crypto import KeyCipher
from services.router.database import create_engine, create_schema
from services.router.store import SqlChannelStore
from tests.unit.router.test_store import SECRET, check_round_trip, sample

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    await create_schema(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_round_trip_on_postgres(engine: AsyncEngine) -> None:
    await check_round_trip(SqlChannelStore(engine))


async def test_no_row_holds_a_plain_key(engine: AsyncEngine) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    store = SqlChannelStore(engine)
    await store.insert_channel(sample(name, KeyCipher(os.urandom(32))))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT encode(ciphertext, 'escape') FROM router_upstream_keys"
                " WHERE channel = :name"), {"name": name})).all()
        assert len(rows) == 1
        assert SECRET not in rows[0][0]
    finally:
        await store.delete_channel(name)
