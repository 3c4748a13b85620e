"""SqlChannelStore on SQLite: round trip, ciphertexts only, and the config seeding rules."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.gateway_config import ChannelEntry, MockSettings
from services.router.admin import seed_from_config
from services.router.crypto import KeyCipher, hint
from services.router.database import create_engine, create_schema
from services.router.store import (
    ChannelNameTaken,
    ChannelSource,
    SqlChannelStore,
    StoredChannel,
    StoredKey,
)

SECRET = "sk-live-" + "a1b2c3d4" * 4
CREATED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def sample(name: str, cipher: KeyCipher) -> StoredChannel:
    """A channel using every kind of field, with one encrypted key."""
    entry = ChannelEntry(
        name=name, type="openai", models=("gpt-4o-mini", "gpt-4o"),
        base_url="https://api.example.com/v1", model_map={"gpt-4o": "gpt-4o-2024"},
        priority=3, weight=7, enabled=False, timeout_s=42.0, preset="openai",
        api_key_env="SOME_VAR", stream_usage=False, token_limit_field="max_tokens",
        mock=MockSettings(reply="hi", tokens_per_second=5.0),
        api_key_envs=("MORE_A", "MORE_B"), first_byte_timeout_s=2.5)
    key = StoredKey(f"key_{uuid.uuid4().hex[:16]}", cipher.encrypt(name, SECRET), hint(SECRET),
                    CREATED)
    return StoredChannel(entry, ChannelSource.ADMIN, ("eu", "paid"), (key,))


async def check_round_trip(store: SqlChannelStore) -> None:
    """Insert, read, update with key changes, delete: every field survives."""
    cipher = KeyCipher(os.urandom(32))
    name = f"ch-{uuid.uuid4().hex[:8]}"
    channel = sample(name, cipher)
    await store.insert_channel(channel)
    with pytest.raises(ChannelNameTaken):
        await store.insert_channel(channel)
    loaded = await store.get_channel(name)
    assert loaded == channel
    assert cipher.decrypt(name, loaded.keys[0].ciphertext) == SECRET
    assert name in [c.name for c in await store.list_channels()]
    extra = StoredKey(f"key_{uuid.uuid4().hex[:16]}", cipher.encrypt(name, "sk-2"), "...", CREATED)
    changed = replace(channel, entry=replace(channel.entry, weight=2, enabled=True), tags=())
    assert await store.update_channel(changed, add=[extra], remove=[channel.keys[0].id])
    after = await store.get_channel(name)
    assert after is not None
    assert (after.entry.weight, after.entry.enabled, after.tags) == (2, True, ())
    assert [k.id for k in after.keys] == [extra.id]
    assert not await store.update_channel(replace(channel, entry=replace(channel.entry, name="x" + name)))
    assert await store.delete_channel(name)
    assert await store.get_channel(name) is None
    assert not await store.delete_channel(name)


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    path = tmp_path / "router.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await create_schema(engine)
    try:
        yield engine, path
    finally:
        await engine.dispose()


async def test_round_trip_on_sqlite(sqlite: tuple[AsyncEngine, Path]) -> None:
    await check_round_trip(SqlChannelStore(sqlite[0]))


async def test_the_database_file_never_holds_the_key(sqlite: tuple[AsyncEngine, Path]) -> None:
    engine, path = sqlite
    store = SqlChannelStore(engine)
    cipher = KeyCipher(os.urandom(32))
    await store.insert_channel(sample("secretive", cipher))
    await engine.dispose()  # flush the WAL into the file
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in path.parent.glob("router.db-*"))
    assert SECRET.encode() not in raw
    assert SECRET[-8:].encode() not in raw
    with sqlite3.connect(path) as db:
        (blob,) = db.execute("SELECT ciphertext FROM router_upstream_keys").fetchone()
    assert cipher.decrypt("secretive", blob) == SECRET


async def test_in_memory_database_is_shared_by_its_connections() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    await create_schema(engine)
    try:
        await check_round_trip(SqlChannelStore(engine))
    finally:
        await engine.dispose()


async def test_seeding_upserts_config_channels_unless_changed_at_runtime(
        sqlite: tuple[AsyncEngine, Path]) -> None:
    store = SqlChannelStore(sqlite[0])
    a = ChannelEntry("a", "mock", ("m",), weight=1)
    b = ChannelEntry("b", "mock", ("m",), weight=1)
    gone = ChannelEntry("gone", "mock", ("m",))
    await seed_from_config(store, [a, b, gone])
    assert {c.name: c.source for c in await store.list_channels()} == {
        "a": ChannelSource.CONFIG, "b": ChannelSource.CONFIG, "gone": ChannelSource.CONFIG}
    # An admin changed b at runtime: from then on the database's version wins.
    await store.update_channel(StoredChannel(replace(b, weight=9), ChannelSource.ADMIN))
    await seed_from_config(store, [replace(a, weight=5), replace(b, weight=3)])
    stored = {c.name: c for c in await store.list_channels()}
    assert set(stored) == {"a", "b"}  # a config channel that left the file is removed
    assert stored["a"].entry.weight == 5
    assert stored["b"].entry.weight == 9
