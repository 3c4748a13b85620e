"""The BL-1 world: three priced models, three account groups, 50 funded accounts.

The prices and multipliers are written here once: into the gateway's config file and
into the oracle's tariffs, so the oracle never asks the gateway what a price is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc

from apirelay.auth.v1 import auth_pb2, auth_pb2_grpc
from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from services.common.charges import Tariff
from tests.chaos.cluster import Cluster
from tests.chaos.plan import CACHED_MODEL, MODELS

UPSTREAM_KEY_ENV = "BL1_UPSTREAM_KEY"
# (prompt, completion, cached prompt) nano-USD per token.
PRICES = {MODELS[0]: (150, 600, 150), MODELS[1]: (1000, 3000, 1000),
          CACHED_MODEL: (2500, 10000, 1250)}
# Odd multipliers, so that rounding half up is exercised on most charges.
GROUPS = {"default": 10_000, "partner": 8_500, "odd": 7_777}
RICH_NANOS = 5_000_000_000
# A tight account affords a handful of requests, then is refused: holds must never
# take its available balance below zero.
TIGHT_NANOS = 2_000_000
TIGHT_EVERY = 5  # every 5th account is tight


def config_yaml(upstream_url: str) -> str:
    """apirelay.yaml: the models, two channels to the one upstream, the groups."""
    models = "\n".join(
        f"  - {{id: {m}, max_output_tokens: 64, price: "
        f"{{prompt: {p}, completion: {c}, cached_prompt: {k}}}}}"
        for m, (p, c, k) in PRICES.items())
    # Two channels to the same upstream: a 5xx before the first byte fails over.
    channels = "\n".join(
        f"  - {{name: {name}, type: openai, base_url: \"{upstream_url}/v1\", "
        f"api_key_env: {UPSTREAM_KEY_ENV}, models: [{', '.join(MODELS)}]}}"
        for name in ("up-a", "up-b"))
    groups = "\n".join(f"  {name}: {bps}" for name, bps in GROUPS.items())
    return (f"builtin_models: false\nauto_channels: false\nmodels:\n{models}\n"
            f"channels:\n{channels}\ngroups:\n{groups}\n")


def write_config(path: Path, upstream_url: str) -> Path:
    """Write the config file; return its path."""
    path.write_text(config_yaml(upstream_url))
    return path


def tariffs() -> dict[tuple[str, str], Tariff]:
    """Each (model, group)'s tariff, as the oracle prices it."""
    return {
        (model, group): Tariff(prompt, completion, cached, bps, cache_write_nanos=prompt,
                               reasoning_nanos=completion, request_nanos=0)
        for model, (prompt, completion, cached) in PRICES.items()
        for group, bps in GROUPS.items()
    }


@dataclass(frozen=True, slots=True)
class Account:
    """One funded account and its key."""

    index: int
    account_id: str
    group: str
    secret: str
    seeded_nanos: int


def group_of(index: int) -> str:
    """The pricing group of account `index`."""
    return tuple(GROUPS)[index % len(GROUPS)]


def seed_of(index: int) -> int:
    """The opening balance of account `index` (distinct per account)."""
    base = TIGHT_NANOS if index % TIGHT_EVERY == TIGHT_EVERY - 1 else RICH_NANOS
    return base + index * 1_001


async def create_accounts(cluster: Cluster, count: int, tag: str) -> list[Account]:
    """Create `count` accounts with keys (default limits) and fund them."""
    async with grpc.aio.insecure_channel(cluster.addresses["auth"][0]) as auth_channel, \
            grpc.aio.insecure_channel(cluster.addresses["billing"][0]) as billing_channel:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        billing = billing_pb2_grpc.BillingServiceStub(billing_channel)
        meta = cluster.admin_metadata

        async def one(index: int) -> Account:
            group = group_of(index)
            created = await auth.CreateAccount(
                auth_pb2.CreateAccountRequest(name=f"{tag}-{index:02d}", group=group),
                metadata=meta, timeout=10)
            account_id = created.account.account_id
            key = await auth.CreateApiKey(
                auth_pb2.CreateApiKeyRequest(account_id=account_id), metadata=meta, timeout=10)
            await billing.AddCredit(
                billing_pb2.AddCreditRequest(account_id=account_id, amount_nanos=seed_of(index),
                                             reference=f"{tag}-seed-{index}"),
                metadata=meta, timeout=10)
            return Account(index, account_id, group, key.secret, seed_of(index))

        return list(await asyncio.gather(*(one(i) for i in range(count))))
