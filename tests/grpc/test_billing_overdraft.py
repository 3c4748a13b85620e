"""BL-2 on SQLite through gRPC: concurrent reserves never overdraw, whatever the balance."""

from __future__ import annotations

import random
from pathlib import Path

from tests.grpc.billing_helpers import MAX_COST, check_ledger, overdraft_round, serve_billing

ROUNDS = 100
CONCURRENT = 50


async def test_fifty_racing_reserves_admit_exactly_what_the_balance_covers(
    tmp_path: Path,
) -> None:
    rng = random.Random(2)
    async with serve_billing(tmp_path) as stub:
        accounts = set()
        for _ in range(ROUNDS):
            account, admitted = await overdraft_round(stub, 10 * MAX_COST, CONCURRENT, rng)
            assert admitted == 10
            accounts.add(account)
        # The holds are real ledger state: every wallet still equals its transfers and holds.
        await check_ledger(stub, accounts)


async def test_a_large_balance_still_holds_every_request(tmp_path: Path) -> None:
    # No "trusted large balance" shortcut: every admitted request holds its maximum cost.
    async with serve_billing(tmp_path) as stub:
        account, admitted = await overdraft_round(stub, 10**6 * MAX_COST, CONCURRENT, random.Random(3))
        assert admitted == CONCURRENT
        await check_ledger(stub, {account})
