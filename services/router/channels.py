"""A channel as the router runs it: its configuration and its pool of upstream keys.

The configuration (`ChannelEntry`) says where the upstream is and what it serves; the
keys are secrets, kept apart so nothing that prints or stores an entry can leak one.
A channel's keys come from the environment variables its entry names (`api_key_env`,
`api_key_envs`) or, for channels kept in the router's database, from that database
(decrypted only in memory). Each key has a stable id that is not secret ("env:NAME" for
a variable, the store's id otherwise): metrics, logs and health state use the id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.gateway_config import ChannelEntry

# A channel that needs no key (the mock, a local server) still has one pool entry, so
# every attempt has a key id to account health and load to.
NO_KEY_ID = "none"


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """One upstream key of a channel: a stable id, and the secret (never printed)."""

    id: str
    secret: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel's configuration and its key pool (at least one entry)."""

    entry: ChannelEntry
    keys: tuple[UpstreamKey, ...]

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.entry.name


def keys_from_env(entry: ChannelEntry, environ: Mapping[str, str]) -> tuple[UpstreamKey, ...]:
    """The keys the entry's environment variables hold, in order; one keyless entry if none.

    A variable that is unset or empty adds no key (a channel whose every variable is empty
    still gets the keyless entry, so it fails at the upstream with a clear 401, not here).
    """
    names = [entry.api_key_env] if entry.api_key_env else []
    names += [n for n in entry.api_key_envs if n not in names]
    keys = tuple(UpstreamKey(f"env:{n}", environ[n]) for n in names if environ.get(n))
    return keys or (UpstreamKey(NO_KEY_ID),)


def channels_from_config(
    entries: tuple[ChannelEntry, ...], environ: Mapping[str, str]
) -> tuple[Channel, ...]:
    """Every configured channel with its keys from the environment."""
    return tuple(Channel(entry, keys_from_env(entry, environ)) for entry in entries)
