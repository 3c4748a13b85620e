"""The channel admin rules: channels kept in the router database, changed at runtime.

Which version of a channel wins (the rule the README documents):
- A channel of apirelay.yaml is written to the database at every start (source
  "config"), unless it was changed through the admin RPCs (source "admin"): from then
  on the database's version wins and the file's is ignored. A "config" channel that left
  the file is deleted from the database at the next start.
- Channels whose key comes from an environment variable (`api_key_env`) keep reading it
  from the environment: such keys are never copied into the database. Keys added through
  the admin RPCs are stored encrypted (crypto.py) and join the same pool.
- Zero-config channels (catalog.py) are made from the environment at each start, never
  stored, and are read-only at runtime.
Every change builds a whole new ModelRouter from the new channel set and swaps it in
(`LiveRouter`); requests in flight finish on the router they started with.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from services.common.gateway_config import ChannelEntry, ConfigError, GatewayConfig, with_channels
from services.router.admin_types import (
    ChannelChanges,
    ChannelExists,
    ChannelNotFound,
    ChannelReadOnly,
    ChannelView,
    InvalidChannel,
    KeyTest,
    KeyView,
)
from services.router.catalog import env_channels
from services.router.channels import NO_KEY_ID, Channel, UpstreamKey, keys_from_env
from services.router.core import ModelRouter
from services.router.crypto import DecryptionError, KeyCipher, hint
from services.router.egress import EgressPolicy, EgressRefused
from services.router.errors import ChannelConfigError
from services.router.live import LiveRouter
from services.router.presets import apply_preset
from services.router.providers import CHANNEL_TYPES
from services.router.request import parse_chat_request
from services.router.store import (
    ChannelNameTaken,
    ChannelSource,
    ChannelStore,
    StoredChannel,
    StoredKey,
)

logger = logging.getLogger(__name__)

# Builds the router serving a channel set (server.py owns how providers are made).
RouterBuilder = Callable[[GatewayConfig, tuple[Channel, ...]], ModelRouter]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True)
class _Loaded:
    config: GatewayConfig
    channels: tuple[Channel, ...]
    views: tuple[ChannelView, ...]


_NO_VIEW = ChannelView(ChannelEntry("", "", ()), ChannelSource.ADMIN, (), ())
# A test call must not hang an admin's terminal on a dead upstream.
TEST_TIMEOUT_S = 20.0
MAX_KEY_CHARS = 4096


class ChannelAdmin:
    """Channel changes at runtime: validated, stored, then served at once."""

    def __init__(
        self,
        store: ChannelStore,
        cipher: KeyCipher,
        egress: EgressPolicy,
        file_config: GatewayConfig,
        environ: Mapping[str, str],
        build: RouterBuilder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._egress = egress
        self._file = file_config
        self._environ = environ
        self._build = build
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded = _Loaded(replace(file_config, channels=()), (), ())
        self.live = LiveRouter(build(self._loaded.config, ()))

    async def start(self) -> LiveRouter:
        """Write the file's channels to the database, then serve what it holds."""
        async with self._lock:
            await seed_from_config(self._store, self._file.channels)
            loaded = self._load(await self._store.list_channels())
            self._install(loaded, self._make_router(loaded))
        return self.live

    def channels(self) -> tuple[ChannelView, ...]:
        """Every channel served, sorted by name, without secrets."""
        return self._loaded.views

    async def create(self, entry: ChannelEntry, tags: Sequence[str], keys: Sequence[str]) -> ChannelView:
        """Add a channel with its keys; it serves at once."""
        async with self._lock:
            _check_entry(entry)
            if any(v.entry.name == entry.name for v in self._loaded.views):
                raise ChannelExists(f"channel {entry.name!r} already exists")
            await self._check_url(entry.base_url)
            new = StoredChannel(entry, ChannelSource.ADMIN, tuple(tags), self._seal(entry.name, keys))
            loaded = self._load([*await self._store.list_channels(), new], strict=entry.name)
            router = self._make_router(loaded)
            await self._store.insert_channel(new)
            return self._install(loaded, router, entry.name)

    async def update(self, name: str, changes: ChannelChanges) -> ChannelView:
        """Change a channel's fields and keys; the change applies at once."""
        async with self._lock:
            stored = await self._stored(name)
            entry = stored.entry
            if changes.base_url is not None and changes.base_url.rstrip("/") != entry.base_url:
                await self._check_url(changes.base_url)
                entry = replace(entry, base_url=changes.base_url.rstrip("/"))
            entry = replace(
                entry,
                models=entry.models if changes.models is None else changes.models,
                priority=entry.priority if changes.priority is None else changes.priority,
                weight=entry.weight if changes.weight is None else changes.weight)
            _check_entry(entry)
            known = {k.id for k in stored.keys}
            unknown = [k for k in changes.remove_key_ids if k not in known]
            if unknown:
                raise InvalidChannel(f"remove_key_ids: {name!r} has no stored key {unknown[0]!r}")
            added = self._seal(name, changes.add_keys)
            kept = tuple(k for k in stored.keys if k.id not in changes.remove_key_ids)
            tags = stored.tags if changes.tags is None else changes.tags
            changed = StoredChannel(entry, ChannelSource.ADMIN, tuple(tags), kept + added)
            return await self._save(changed, added, changes.remove_key_ids)

    async def set_enabled(self, name: str, enabled: bool) -> ChannelView:
        """Enable or disable a channel for new requests; enabling also re-enables the keys
        the upstream had blamed (401/403/402), as the operator has fixed them."""
        async with self._lock:
            stored = await self._stored(name)
            changed = replace(stored, entry=replace(stored.entry, enabled=enabled),
                              source=ChannelSource.ADMIN)
            view = await self._save(changed)
            if enabled:
                # Every router built shares one HealthBook (server.router_builder).
                keys = self.live.current.health.enable_channel(name)
                if keys:
                    logger.info("channel %s: keys re-enabled: %s", name, ", ".join(keys))
            return view

    async def test(self, name: str, model: str = "") -> tuple[str, list[KeyTest]]:
        """One tiny completion per key of the channel; failures are results, not errors."""
        loaded = self._loaded
        channel = next((c for c in loaded.channels if c.name == name), None)
        if channel is None:
            raise ChannelNotFound(f"no channel {name!r}")
        model = model or channel.entry.models[0]
        if model not in channel.entry.models:
            raise InvalidChannel(f"model: channel {name!r} does not serve {model!r}")
        entry = replace(channel.entry, enabled=True)
        config = replace(loaded.config, channels=(entry,))
        results = []
        for key in channel.keys:
            router = self._build(config, (Channel(entry, (key,)),))
            results.append(await self._test_key(router, key.id, model))
        return model, results

    async def _test_key(self, router: ModelRouter, key_id: str, model: str) -> KeyTest:
        body = (b'{"model":"%s","messages":[{"role":"user","content":"ping"}],"max_tokens":1}'
                % model.encode())
        chat = parse_chat_request(body, model, f"channel-test-{secrets.token_hex(6)}",
                                  stream=False)
        started = self._clock()
        result = await router.complete(chat, TEST_TIMEOUT_S)
        latency_ms = round((self._clock() - started) * 1000)
        if result.error is None:
            return KeyTest(key_id, True, 200, latency_ms)
        error = result.error
        return KeyTest(key_id, False, error.http_status, latency_ms,
                       f"{error.type}: {error.message}"[:300])

    async def _stored(self, name: str) -> StoredChannel:
        stored = await self._store.get_channel(name)
        if stored is not None:
            return stored
        if any(v.entry.name == name for v in self._loaded.views):
            raise ChannelReadOnly(
                f"channel {name!r} is made from environment variables; change those instead")
        raise ChannelNotFound(f"no channel {name!r}")

    async def _save(self, changed: StoredChannel, added: Sequence[StoredKey] = (),
                    removed: Sequence[str] = ()) -> ChannelView:
        current = [c for c in await self._store.list_channels() if c.name != changed.name]
        loaded = self._load([*current, changed], strict=changed.name)
        router = self._make_router(loaded)
        if not await self._store.update_channel(changed, added, removed):
            raise ChannelNotFound(f"no channel {changed.name!r}")
        return self._install(loaded, router, changed.name)

    async def _check_url(self, url: str) -> None:
        if not url:
            return
        try:
            await self._egress.check(url, "base_url")
        except EgressRefused as exc:
            raise InvalidChannel(str(exc)) from exc

    def _seal(self, channel: str, secrets_: Sequence[str]) -> tuple[StoredKey, ...]:
        now = datetime.now(UTC)
        sealed = []
        for secret in secrets_:
            secret = secret.strip()
            # The secret itself is never part of a message.
            if not secret or len(secret) > MAX_KEY_CHARS or any(c.isspace() for c in secret):
                raise InvalidChannel("keys: a key must be 1 to 4096 characters without spaces")
            sealed.append(StoredKey(f"key_{secrets.token_hex(8)}",
                                    self._cipher.encrypt(channel, secret), hint(secret), now))
        return tuple(sealed)

    def _make_router(self, loaded: _Loaded) -> ModelRouter:
        try:
            return self._build(loaded.config, loaded.channels)
        except ChannelConfigError as exc:
            raise InvalidChannel(f"channel: {exc}") from exc

    def _install(self, loaded: _Loaded, router: ModelRouter, name: str = "") -> ChannelView:
        self._loaded = loaded
        self.live.swap(router)
        logger.info("serving %d channels%s", len(loaded.channels),
                    f" after a change to {name}" if name else "")
        # The changed channel is in the set: _load raised for it otherwise.
        return next((v for v in loaded.views if v.entry.name == name), None) or _NO_VIEW

    def _load(self, stored: Sequence[StoredChannel], strict: str = "") -> _Loaded:
        """The config, channels and views of a stored set plus the zero-config channels."""
        config = replace(self._file, channels=())
        channels: list[Channel] = []
        views: list[ChannelView] = []
        for item in sorted(stored, key=lambda c: c.name):
            try:
                config = with_channels(config, [apply_preset(item.entry)], "router database")
            except ConfigError as exc:
                if item.name == strict:
                    raise InvalidChannel(f"models: {exc}") from exc
                logger.warning("channel %s is not served: %s", item.name, exc)
                continue
            channels.append(Channel(config.channels[-1], self._pool(item)))
            views.append(ChannelView(item.entry, item.source, item.tags, self._key_views(item)))
        if self._file.auto_channels:
            for entry in env_channels(config, self._environ):
                config = with_channels(config, [entry], "zero-config")
                channels.append(Channel(config.channels[-1], keys_from_env(entry, self._environ)))
                views.append(ChannelView(entry, ChannelSource.ENVIRONMENT, (),
                                         self._env_key_views(entry)))
        views.sort(key=lambda v: v.entry.name)
        return _Loaded(config, tuple(channels), tuple(views))

    def _pool(self, item: StoredChannel) -> tuple[UpstreamKey, ...]:
        keys = [k for k in keys_from_env(item.entry, self._environ) if k.id != NO_KEY_ID]
        for stored in item.keys:
            if stored.disabled:
                continue
            try:
                keys.append(UpstreamKey(stored.id, self._cipher.decrypt(item.name, stored.ciphertext)))
            except DecryptionError:
                logger.warning("channel %s: key %s cannot be decrypted (another "
                               "ROUTER_ENCRYPTION_KEY?); not used", item.name, stored.id)
        return tuple(keys) or (UpstreamKey(NO_KEY_ID),)

    def _key_views(self, item: StoredChannel) -> tuple[KeyView, ...]:
        stored = tuple(KeyView(k.id, k.hint, k.disabled, k.created_at) for k in item.keys)
        return self._env_key_views(item.entry) + stored

    def _env_key_views(self, entry: ChannelEntry) -> tuple[KeyView, ...]:
        return tuple(KeyView(k.id, hint(k.secret)) for k in keys_from_env(entry, self._environ)
                     if k.id != NO_KEY_ID)


def _check_entry(entry: ChannelEntry) -> None:
    if not NAME_PATTERN.match(entry.name):
        raise InvalidChannel("name: letters, digits, '.', '_' or '-', at most 128 characters")
    if entry.type not in CHANNEL_TYPES:
        raise InvalidChannel(f"type: expected one of {', '.join(CHANNEL_TYPES)}")
    if not entry.models:
        raise InvalidChannel("models: a channel serves at least one model")
    if entry.weight < 1:
        raise InvalidChannel("weight: must be at least 1")


async def seed_from_config(store: ChannelStore, entries: Sequence[ChannelEntry]) -> None:
    """Upsert the file's channels unless changed at runtime; drop the ones it lost."""
    stored = {c.name: c for c in await store.list_channels()}
    for entry in entries:
        existing = stored.get(entry.name)
        if existing is None:
            try:
                await store.insert_channel(StoredChannel(entry, ChannelSource.CONFIG))
            except ChannelNameTaken:
                pass  # another router process seeded it at the same moment
        elif existing.source is ChannelSource.CONFIG and existing.entry != entry:
            await store.update_channel(replace(existing, entry=entry))
    names = {e.name for e in entries}
    for name, existing in stored.items():
        if existing.source is ChannelSource.CONFIG and name not in names:
            logger.info("channel %s left the config file; removed from the database", name)
            await store.delete_channel(name)
