"""BL-2 on PostgreSQL through gRPC: concurrent reserves never overdraw, whatever the balance.

The row lock of the conditional UPDATE is what serializes the holds here (SQLite's
single writer does it in the embedded mode), so this is the test that matters.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.grpc.billing_helpers import MAX_COST, check_ledger, overdraft_round, serve_billing

pytestmark = pytest.mark.integration

ROUNDS = 100
CONCURRENT = 50


async def test_fifty_racing_reserves_admit_exactly_what_the_balance_covers(
    tmp_path: Path, postgres_url: str
) -> None:
    rng = random.Random(4)
    async with serve_billing(tmp_path, database_url=postgres_url) as stub:
        accounts = set()
        for _ in range(ROUNDS):
            account, admitted = await overdraft_round(stub, 10 * MAX_COST, CONCURRENT, rng)
            assert admitted == 10
            accounts.add(account)
        # The holds are real ledger state: every wallet still equals its transfers and holds.
        await check_ledger(stub, accounts)


async def test_a_large_balance_still_holds_every_request(
    tmp_path: Path, postgres_url: str
) -> None:
    async with serve_billing(tmp_path, database_url=postgres_url) as stub:
        account, admitted = await overdraft_round(stub, 10**6 * MAX_COST, CONCURRENT, random.Random(5))
        assert admitted == CONCURRENT
        await check_ledger(stub, {account})
