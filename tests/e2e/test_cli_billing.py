"""The billing admin CLI against the whole in-process stack: usage log, CSV, daily sums,
credit, codes, key budgets and the ledger, after real requests through the openai client."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam

from cli import admin
from cli.main import _parser
from services.common.money import usd_to_nanos
from tests.e2e.harness import Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]
CONFIG = """
models:
  - {{id: demo, max_output_tokens: 64, price: {{prompt: 150, completion: 600}}}}
channels:
  - {{name: mock, type: mock, models: [demo]}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with open_env(tmp_path_factory.mktemp("cli-billing"), CONFIG) as env:
        yield env


async def cli(env: Env, *argv: str, **extra_env: str) -> list[str]:
    """Run an admin command in-process, as `apirelay ARGV` would, against the stack."""
    stack = env.stack
    environ = {f"{name.upper()}_SERVICE_ADDR": f"127.0.0.1:{started.port}"
               for name, started in stack.services.items()}
    environ["APIRELAY_ADMIN_KEY"] = stack.admin_metadata[0][1].removeprefix("Bearer ")
    environ.update(extra_env)
    return await admin.run_admin(_parser().parse_args(list(argv)), environ)


async def customer(env: Env, credit: str = "1") -> tuple[str, str]:
    """An account made with the CLI, funded, and a key: (name, secret)."""
    name = "cli-" + uuid.uuid4().hex[:8]
    await cli(env, "accounts", "create", name, "--credit", credit)
    secret = (await cli(env, "keys", "create", "--account", name))[-1]
    return name, secret


def balance_of(line: str) -> int:
    return usd_to_nanos(line.split("balance ", 1)[1].split(" USD", 1)[0])


async def test_usage_lists_and_exports_the_requests_made(env: Env) -> None:
    name, secret = await customer(env)
    client = env.sdk(secret)
    plain = await client.chat.completions.create(model="demo", messages=USER)
    stream = await client.chat.completions.create(
        model="demo", messages=USER, stream=True, stream_options={"include_usage": True})
    streamed = None
    async for chunk in stream:
        streamed = chunk.usage or streamed
    assert plain.usage is not None and streamed is not None
    costs = [u.prompt_tokens * 150 + u.completion_tokens * 600 for u in (plain.usage, streamed)]
    expected = 10**9 - sum(costs)
    account_id = (await admin.AdminClient(env.stack.auth, env.stack.billing,
                                          env.stack.admin_metadata).account(name)).account_id
    assert await env.settled_balance(account_id, expected) == (expected, 0)

    rows = list(csv.DictReader(await cli(env, "usage", "--account", name, "--csv")))
    assert [r["stream"] for r in rows] == ["true", "false"]  # newest first
    for row, usage, cost in zip(rows, (streamed, plain.usage), costs[::-1]):
        assert (row["account"], row["model"], row["channel"], row["status"]) == (
            name, "demo", "mock", "ok")
        assert (int(row["prompt"]), int(row["completion"])) == (
            usage.prompt_tokens, usage.completion_tokens)
        assert usd_to_nanos(row["cost_usd"]) == cost and row["usage_source"] == "upstream"
    table = await cli(env, "usage", "--account", name, "--limit", "1")
    assert len(table) == 3 and table[1].split("\t")[1] == rows[0]["request_id"]

    daily = list(csv.DictReader(await cli(env, "usage", "daily", "--account", name, "--csv")))
    assert [(d["account"], d["model"], d["requests"], d["failed_requests"]) for d in daily] == [
        (name, "demo", "2", "0")]
    assert usd_to_nanos(daily[0]["cost_usd"]) == sum(costs)
    shown = (await cli(env, "balance", name, APIRELAY_DISPLAY_CURRENCY="CNY",
                       APIRELAY_USD_RATE="7.10"))[0]
    assert balance_of(shown) == expected and " CNY)" in shown


async def test_credit_codes_budgets_and_ledger_commands(env: Env) -> None:
    name, _ = await customer(env, credit="2")
    adjusted = await cli(env, "credit", "adjust", name, "-0.5", "--reason", "e2e correction")
    assert balance_of(adjusted[-1]) == 1_500_000_000
    limited = await cli(env, "credit", "limit", name, "3")
    assert "credit limit 3.000000000" in limited[0]
    codes = await cli(env, "codes", "create", "--count", "2", "--usd", "0.25")
    assert len(codes) == 2 and len(set(codes)) == 2
    redeemed = await cli(env, "codes", "redeem", name, codes[0])
    assert balance_of(redeemed[-1]) == 1_750_000_000
    other, _ = await customer(env)
    with pytest.raises(admin.CommandError, match="failed_precondition"):
        await cli(env, "codes", "redeem", other, codes[0])
    entries = await cli(env, "ledger", name)
    kinds = [line.split("\t")[2] for line in entries]
    assert kinds == ["redemption", "adjustment", "topup"]
    assert (await cli(env, "ledger", "check"))[-1] == "ledger consistent"
    key_id = (await cli(env, "keys", "list", "--account", name))[0].split("\t")[0]
    budget = await cli(env, "keys", "budget", key_id, "--daily", "1.5")
    assert "daily   cap 1.500000000 USD" in budget[1] and "monthly cap none" in budget[2]
