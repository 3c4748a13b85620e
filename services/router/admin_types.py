"""What the channel admin rules take and give: refusals, views without secrets, changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.gateway_config import ChannelEntry
from services.router.errors import InvalidRequest, RouterError
from services.router.store import ChannelSource


class ChannelAdminError(RouterError):
    """Base of the admin rules' refusals."""


class ChannelNotFound(ChannelAdminError):
    """No channel has this name."""


class ChannelExists(ChannelAdminError):
    """A channel with this name exists already."""


class ChannelReadOnly(ChannelAdminError):
    """The channel comes from the environment and cannot be changed at runtime."""


class InvalidChannel(InvalidRequest):
    """A field of an admin request is invalid; the message starts with the field."""


@dataclass(frozen=True, slots=True)
class KeyView:
    """An upstream key as listed: never its secret."""

    id: str
    hint: str
    disabled: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel as listed: entry, tags, source and key descriptions."""

    entry: ChannelEntry
    source: ChannelSource
    tags: tuple[str, ...]
    keys: tuple[KeyView, ...]


@dataclass(frozen=True, slots=True)
class ChannelChanges:
    """An update: None leaves a field as it is."""

    base_url: str | None = None
    models: tuple[str, ...] | None = None
    priority: int | None = None
    weight: int | None = None
    tags: tuple[str, ...] | None = None
    add_keys: tuple[str, ...] = ()
    remove_key_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyTest:
    """The outcome of one test call with one key."""

    key_id: str
    ok: bool
    http_status: int
    latency_ms: int
    error: str = ""
