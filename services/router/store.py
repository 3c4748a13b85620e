"""Persistence of channels and their encrypted upstream keys: `ChannelStore` and its SQL
implementation. The store holds no rules and never sees a secret, only ciphertexts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.gateway_config import ChannelEntry, MockSettings
from services.router.database import unavailable_on_failure
from services.router.models import ChannelRow, UpstreamKeyRow

# ChannelEntry fields kept as columns; every other field goes into the `options` JSON.
_COLUMNS = ("name", "type", "base_url", "models", "model_map", "priority", "weight", "enabled")


class ChannelSource(enum.StrEnum):
    """Whose version of a stored channel wins at start."""

    CONFIG = "config"
    ADMIN = "admin"
    # Zero-config channels: made from the environment at each start, never stored.
    ENVIRONMENT = "environment"


class ChannelNameTaken(ValueError):
    """A channel with this name is already stored."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An upstream key as stored: id, ciphertext, display hint, state."""

    id: str
    ciphertext: bytes = field(repr=False)
    hint: str
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A channel as stored: its entry, tags, source and key pool."""

    entry: ChannelEntry
    source: ChannelSource
    tags: tuple[str, ...] = ()
    keys: tuple[StoredKey, ...] = ()

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.entry.name


class ChannelStore(Protocol):
    """Where channels and their keys live; holds no rules."""

    async def list_channels(self) -> list[StoredChannel]:
        """Every channel with its keys, by name."""

    async def get_channel(self, name: str) -> StoredChannel | None:
        """The channel called `name`."""

    async def insert_channel(self, channel: StoredChannel) -> None:
        """Add a channel and its keys; ChannelNameTaken if the name is stored."""

    async def update_channel(
        self, channel: StoredChannel, add: Sequence[StoredKey] = (),
        remove: Sequence[str] = (),
    ) -> bool:
        """Overwrite a channel's fields, add and remove keys; False if there is none."""

    async def delete_channel(self, name: str) -> bool:
        """Remove a channel and its keys; False if there is none."""


class SqlChannelStore:
    """ChannelStore on SQLAlchemy async (SQLite by default, PostgreSQL to scale out)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def list_channels(self) -> list[StoredChannel]:
        """Every channel with its keys, by name."""
        with unavailable_on_failure():
            async with self._sessions() as session:
                rows = list(await session.scalars(select(ChannelRow).order_by(ChannelRow.name)))
                keys = await _keys(session, [r.name for r in rows])
        return [_channel(row, keys.get(row.name, ())) for row in rows]

    async def get_channel(self, name: str) -> StoredChannel | None:
        """The channel called `name`."""
        with unavailable_on_failure():
            async with self._sessions() as session:
                row = await session.scalar(select(ChannelRow).where(ChannelRow.name == name))
                keys = await _keys(session, [name])
        return None if row is None else _channel(row, keys.get(name, ()))

    async def insert_channel(self, channel: StoredChannel) -> None:
        """Add a channel and its keys; ChannelNameTaken if the name is stored."""
        now = datetime.now(UTC)
        row = ChannelRow(**_columns(channel), created_at=now, updated_at=now)
        with unavailable_on_failure():
            async with self._sessions.begin() as session:
                session.add(row)
                try:
                    await session.flush()
                except sa_exc.IntegrityError as exc:
                    raise ChannelNameTaken(f"channel {channel.name!r} already exists") from exc
                session.add_all(_key_row(channel.name, key) for key in channel.keys)

    async def update_channel(
        self, channel: StoredChannel, add: Sequence[StoredKey] = (),
        remove: Sequence[str] = (),
    ) -> bool:
        """Overwrite a channel's fields, add and remove keys; False if there is none."""
        with unavailable_on_failure():
            async with self._sessions.begin() as session:
                row = await session.scalar(
                    select(ChannelRow).where(ChannelRow.name == channel.name).with_for_update())
                if row is None:
                    return False
                for column, value in _columns(channel).items():
                    setattr(row, column, value)
                row.updated_at = datetime.now(UTC)
                if remove:
                    await session.execute(delete(UpstreamKeyRow).where(
                        UpstreamKeyRow.channel == channel.name,
                        UpstreamKeyRow.key_id.in_(list(remove))))
                session.add_all(_key_row(channel.name, key) for key in add)
        return True

    async def delete_channel(self, name: str) -> bool:
        """Remove a channel and its keys; False if there is none."""
        with unavailable_on_failure():
            async with self._sessions.begin() as session:
                await session.execute(delete(UpstreamKeyRow).where(UpstreamKeyRow.channel == name))
                result = await session.execute(
                    delete(ChannelRow).where(ChannelRow.name == name).returning(ChannelRow.seq))
                return result.first() is not None


async def _keys(session: AsyncSession, names: list[str]) -> dict[str, list[StoredKey]]:
    if not names:
        return {}
    rows = await session.scalars(
        select(UpstreamKeyRow).where(UpstreamKeyRow.channel.in_(names))
        .order_by(UpstreamKeyRow.seq))
    found: dict[str, list[StoredKey]] = {}
    for row in rows:
        found.setdefault(row.channel, []).append(StoredKey(
            row.key_id, row.ciphertext, row.hint, _utc(row.created_at), row.disabled))
    return found


def _key_row(channel: str, key: StoredKey) -> UpstreamKeyRow:
    return UpstreamKeyRow(key_id=key.id, channel=channel, ciphertext=key.ciphertext,
                          hint=key.hint, disabled=key.disabled,
                          created_at=key.created_at.astimezone(UTC))


def _columns(channel: StoredChannel) -> dict[str, Any]:
    """The row's values of a channel: routing fields as columns, the rest as options."""
    values = {f.name: getattr(channel.entry, f.name) for f in dataclasses.fields(ChannelEntry)}
    columns: dict[str, Any] = {name: values.pop(name) for name in _COLUMNS}
    columns["models"] = list(columns["models"])
    columns["model_map"] = dict(columns["model_map"])
    values["mock"] = dataclasses.asdict(values["mock"])
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return {**columns, "tags": list(channel.tags), "options": options,
            "source": channel.source.value}


def _entry(row: ChannelRow) -> ChannelEntry:
    known = {f.name for f in dataclasses.fields(ChannelEntry)}
    # Options a later version wrote and this one does not know are ignored.
    options: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                               for k, v in row.options.items()
                               if k in known and k not in _COLUMNS}
    mock = options.pop("mock", None)
    if isinstance(mock, Mapping):
        options["mock"] = MockSettings(**mock)
    return ChannelEntry(
        name=row.name, type=row.type, base_url=row.base_url, models=tuple(row.models),
        model_map=dict(row.model_map), priority=row.priority, weight=row.weight,
        enabled=row.enabled, **options)


def _channel(row: ChannelRow, keys: Sequence[StoredKey]) -> StoredChannel:
    return StoredChannel(_entry(row), ChannelSource(row.source), tuple(row.tags), tuple(keys))


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
