"""EnableChannel re-enables the keys the upstream had blamed, through the HealthBook every
router built by the admin shares (as server.router_builder shares it)."""

from __future__ import annotations

import os

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.admin import ChannelAdmin
from services.router.channels import NO_KEY_ID, Channel
from services.router.core import ModelRouter
from services.router.crypto import KeyCipher
from services.router.database import create_engine, create_schema
from services.router.egress import EgressPolicy
from services.router.errors import UpstreamRateLimited, UpstreamUnavailable
from services.router.health import HealthBook
from services.router.providers import KeyedProvider
from services.router.store import SqlChannelStore
from tests.unit.router.fakes import FakeProvider

FILE = GatewayConfig(
    models=(ModelEntry("demo"),),
    channels=(ChannelEntry(name="pool", type="mock", models=("demo",)),
              ChannelEntry(name="other", type="mock", models=("demo",))),
    group_multipliers_bps={})


async def test_enable_channel_re_enables_its_disabled_keys_only() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    await create_schema(engine)
    health = HealthBook()

    def build(config: GatewayConfig, channels: tuple[Channel, ...]) -> ModelRouter:
        providers = {c.name: [KeyedProvider(k.id, FakeProvider()) for k in c.keys]
                     for c in channels}
        return ModelRouter(config, providers, health=health)

    admin = ChannelAdmin(SqlChannelStore(engine), KeyCipher(os.urandom(32)), EgressPolicy(False),
                         FILE, {}, build)
    try:
        live = await admin.start()
        blamed = UpstreamUnavailable(401, "bad key")
        for channel in ("pool", "other"):
            live.current.health.failed(channel, NO_KEY_ID, "demo", blamed)
        live.current.health.failed("pool", "k2", "demo", UpstreamRateLimited(429, "slow",
                                                                             retry_after_s=30))
        await admin.set_enabled("pool", False)
        assert live.current.health.disabled("pool", NO_KEY_ID)  # disabling keeps them out
        await admin.set_enabled("pool", True)
        assert live.current.health is health  # the swapped-in router kept the book
        assert not health.disabled("pool", NO_KEY_ID)
        assert health.available("pool", NO_KEY_ID, "demo")
        assert health.disabled("other", NO_KEY_ID)  # another channel's key stays out
        assert not health.available("pool", "k2", "demo")  # a cooldown is not a blame
    finally:
        await engine.dispose()
