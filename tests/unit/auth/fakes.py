"""An in-memory AuthStore and a fixed clock for the auth unit tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from services.auth.core import Account, AccountStatus, ApiKey, KeyMatch, KeyStatus
from services.auth.errors import AccountNameTaken


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


class InMemoryAuthStore:
    """AuthStore in dicts; counts reads so tests can assert that none happened."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}
        self.hashes: dict[str, str] = {}  # key_id -> secret hash
        self.reads = 0

    async def insert_account(self, account: Account) -> None:
        if any(a.name == account.name for a in self.accounts.values()):
            raise AccountNameTaken(f"account {account.name!r} already exists")
        self.accounts[account.account_id] = account

    async def get_account(self, account_id: str) -> Account | None:
        self.reads += 1
        return self.accounts.get(account_id)

    async def get_account_by_name(self, name: str) -> Account | None:
        self.reads += 1
        return next((a for a in self.accounts.values() if a.name == name), None)

    async def list_accounts(self) -> list[Account]:
        self.reads += 1
        return list(self.accounts.values())

    async def set_account_status(self, account_id: str, status: AccountStatus) -> bool:
        if account_id not in self.accounts:
            return False
        self.accounts[account_id] = dataclasses.replace(self.accounts[account_id], status=status)
        return True

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        self.keys[key.key_id] = key
        self.hashes[key.key_id] = secret_hash

    async def get_key(self, key_id: str) -> ApiKey | None:
        self.reads += 1
        return self.keys.get(key_id)

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        self.reads += 1
        return [k for k in self.keys.values() if k.account_id == account_id]

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        key = self.keys.get(key_id)
        if key is not None and key.status is KeyStatus.ACTIVE:
            key = dataclasses.replace(key, status=KeyStatus.REVOKED, revoked_at=at)
            self.keys[key_id] = key
        return key

    async def find_key_by_hash(self, secret_hash: str) -> KeyMatch | None:
        self.reads += 1
        for key_id, stored in self.hashes.items():
            if stored == secret_hash:
                key = self.keys[key_id]
                return KeyMatch(key, self.accounts[key.account_id], stored)
        return None
