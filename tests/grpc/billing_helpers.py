"""Shared by the BillingService gRPC tests: a served billing on SQLite, request builders."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import yaml  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.common.v1 import usage_pb2
from services.billing.config import Settings
from services.billing.server import start

ADMIN_KEY = "test-admin-key"
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)
IMAGE_PRICES = {
    "1024x1024": {"standard": 40_000_000, "hd": 80_000_000},
    "1792x1024": {"standard": 80_000_000, "hd": 120_000_000},
}
CONFIG: dict[str, Any] = {
    "models": [
        {"id": "m", "price": {"prompt": 150, "completion": 600, "cached_prompt": 75}},
        {"id": "free", "price": {"prompt": 0, "completion": 0}},
        {"id": "unpriced"},
        {"id": "img", "price": {"images": IMAGE_PRICES}},
        {"id": "whisper", "price": {"audio_second": 100_000}},
        {"id": "tts", "price": {"character": 15_000}},
    ],
    "groups": {"default": 10_000, "vip": 8_500},
}
RESERVED = billing_pb2.RESERVE_DECISION_RESERVED
INSUFFICIENT = billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE
NOT_PRICED = billing_pb2.RESERVE_DECISION_MODEL_NOT_PRICED
BUDGET_EXCEEDED = billing_pb2.RESERVE_DECISION_KEY_BUDGET_EXCEEDED
# The hold of reserve() below with its defaults on model "m": the largest request cost.
MAX_COST = 100 * 150 + 50 * 600

if TYPE_CHECKING:
    # Exists only in the generated .pyi: the stub's type when built on an aio channel.
    Stub: TypeAlias = billing_pb2_grpc.BillingServiceAsyncStub


@asynccontextmanager
async def serve_billing(
    tmp_path: Path,
    admin_key: str = ADMIN_KEY,
    prices: Mapping[str, Any] = CONFIG,
    database_url: str = "",
    **options: Any,
) -> AsyncIterator[Stub]:
    """A BillingService on 127.0.0.1:0 with `prices`, on `database_url` (else SQLite in
    tmp_path); `options` are further Settings fields."""
    config = tmp_path / "apirelay.yaml"
    config.write_text(yaml.safe_dump(dict(prices)), encoding="utf-8")
    settings = Settings(
        listen_addr="127.0.0.1:0",
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'data' / 'billing.db'}",
        config_path=str(config),
        admin_key=admin_key,
        **options,
    )
    started = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    try:
        yield billing_pb2_grpc.BillingServiceStub(channel)
    finally:
        await channel.close()
        await started.stop(0)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def fund(stub: Stub, amount: int) -> str:
    account = uid("acc")
    await stub.AddCredit(
        billing_pb2.AddCreditRequest(account_id=account, amount_nanos=amount), metadata=ADMIN
    )
    return account


def reserve(
    account: str,
    request_id: str,
    prompt: int = 100,
    max_completion: int = 50,
    model: str = "m",
    group: str = "default",
    units: Mapping[str, int] | None = None,
) -> billing_pb2.ReserveCreditRequest:
    return billing_pb2.ReserveCreditRequest(
        request_id=request_id,
        account_id=account,
        key_id="key-1",
        group=group,
        model=model,
        prompt_tokens=prompt,
        max_completion_tokens=max_completion,
        max_units=unit_usages(units or {}),
    )


def unit_usages(units: Mapping[str, int]) -> list[usage_pb2.UnitUsage]:
    return [usage_pb2.UnitUsage(unit=u, quantity=q) for u, q in units.items()]


def settle(
    request_id: str,
    prompt: int = 100,
    completion: int = 20,
    cached: int = 0,
    source: usage_pb2.UsageSource.ValueType = usage_pb2.USAGE_SOURCE_UPSTREAM,
    units: Mapping[str, int] | None = None,
) -> billing_pb2.SettleCreditRequest:
    usage = usage_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_prompt_tokens=cached,
        units=unit_usages(units or {}),
    )
    return billing_pb2.SettleCreditRequest(
        request_id=request_id, usage=usage, usage_source=source, channel="demo-mock"
    )


async def balance(stub: Stub, account: str) -> billing_pb2.Wallet:
    reply = await stub.GetBalance(billing_pb2.GetBalanceRequest(account_id=account), metadata=ADMIN)
    return reply.wallet


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def check_ledger(stub: Stub, accounts: set[str] | None = None) -> None:
    """CheckLedger finds the ledger balanced (for `accounts`, or everywhere)."""
    report = await stub.CheckLedger(billing_pb2.CheckLedgerRequest(), metadata=ADMIN)
    mismatches = [m for m in report.mismatches if accounts is None or m.account_id in accounts]
    assert mismatches == []
    assert report.net_nanos == 0 and list(report.holds_resolved_twice) == []


async def overdraft_round(
    stub: Stub, funds: int, requests: int, rng: random.Random
) -> tuple[str, int]:
    """Fund a fresh account, race `requests` reserves of MAX_COST at it: (account, held).

    Asserts what must hold whatever the count: nothing is over-committed (available never
    below 0) and held equals the admitted holds.
    """
    account = await fund(stub, funds)

    async def one() -> int:
        # Shuffled timing: each call yields to the loop a random number of times first.
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        reply = await stub.ReserveCredit(reserve(account, uid("req")))
        assert reply.decision in (RESERVED, INSUFFICIENT)
        assert reply.held_nanos == (MAX_COST if reply.decision == RESERVED else 0)
        return int(reply.decision == RESERVED)

    admitted = sum(await asyncio.gather(*(one() for _ in range(requests))))
    wallet = await balance(stub, account)
    assert wallet.held_nanos == admitted * MAX_COST
    assert wallet.available_nanos == funds - admitted * MAX_COST >= 0
    return account, admitted
