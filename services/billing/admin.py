"""The admin rules of billing: adjustments, credit limits, key budgets, codes, ledger reads."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.billing.admin_store import AdminStore, RedeemRefusal
from services.billing.admin_types import LedgerPage, LedgerReport, NewBatch, Redemption
from services.billing.budgets import KeyBudget, day_of, month_of
from services.billing.core import Clock, Ledger
from services.billing.domain import INT64_MIN, Movement, TransferKind, Wallet
from services.billing.errors import (
    AmountOutOfRange,
    BatchAlreadyExists,
    CodeNotFound,
    CodeNotRedeemable,
    InvalidBillingRequest,
)
from services.common.charges import INT64_MAX

MAX_CODES_PER_BATCH = 1000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
CODE_PREFIX = "rc-"
_TOKEN_PREFIX = b"t1:"


def code_hash(code: str) -> str:
    """The stored form of a redemption code: SHA-256 hex of its text."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def new_code() -> str:
    """A fresh code: "rc-" and 128 random bits in hex."""
    return CODE_PREFIX + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class CodeBatch:
    """A batch just created and its codes (shown this once)."""

    batch_id: str
    codes: tuple[str, ...]


def _require(value: str, name: str) -> None:
    if not value:
        raise InvalidBillingRequest(f"{name} is required")


def _int64(value: int, name: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise AmountOutOfRange(f"{name} does not fit in int64")


class LedgerAdmin:
    """Admin operations (and code redemption) over the ledger and the admin store."""

    def __init__(self, ledger: Ledger, store: AdminStore, clock: Clock) -> None:
        self._ledger = ledger
        self._store = store
        self._clock = clock

    async def adjust(self, account_id: str, amount_nanos: int, reason: str, reference: str) -> Wallet:
        """Move a balance up or down with a reason; idempotent by a non-empty reference."""
        _require(account_id, "account_id")
        _require(reason.strip(), "reason")
        if amount_nanos == 0:
            raise InvalidBillingRequest("amount_nanos must not be 0")
        movement = Movement(
            account_id, amount_nanos, TransferKind.ADJUSTMENT, reference, reason, self._clock()
        )
        return await self._ledger.move(movement)

    async def set_credit_limit(self, account_id: str, limit_nanos: int) -> Wallet:
        """Let the account's available balance go down to -limit (0: prepaid only)."""
        _require(account_id, "account_id")
        if limit_nanos < 0:
            raise InvalidBillingRequest("credit_limit_nanos must not be negative")
        _int64(limit_nanos, "credit_limit_nanos")
        return await self._store.set_credit_limit(account_id, limit_nanos, self._clock())

    async def set_key_budget(self, key_id: str, daily_nanos: int, monthly_nanos: int) -> KeyBudget:
        """Set a key's caps (0: none; both 0 removes the budget); the budget now."""
        _require(key_id, "key_id")
        if daily_nanos < 0 or monthly_nanos < 0:
            raise InvalidBillingRequest("budget limits must not be negative")
        _int64(max(daily_nanos, monthly_nanos), "budget limit")
        now = self._clock()
        if daily_nanos == 0 and monthly_nanos == 0:
            await self._store.set_key_budget(None, key_id, now)
            return KeyBudget(key_id, day=day_of(now), month=month_of(now))
        wanted = KeyBudget(key_id, daily_nanos, monthly_nanos, day_of(now), 0, month_of(now))
        await self._store.set_key_budget(wanted, key_id, now)
        return await self.key_budget(key_id)

    async def key_budget(self, key_id: str) -> KeyBudget:
        """A key's caps and its use in the current periods (zero caps when it has none)."""
        _require(key_id, "key_id")
        now = self._clock()
        stored = await self._store.get_key_budget(key_id)
        # Rolled for display only: the stored row rolls on its next reserve or settle.
        return (stored or KeyBudget(key_id)).rolled(now)

    async def create_codes(
        self, count: int, amount_nanos: int, expires_at: datetime | None, note: str, reference: str
    ) -> CodeBatch:
        """Mint `count` one-time codes worth `amount_nanos` each; BatchAlreadyExists on replay."""
        if not 1 <= count <= MAX_CODES_PER_BATCH:
            raise InvalidBillingRequest(f"count must be 1 to {MAX_CODES_PER_BATCH}")
        if amount_nanos <= 0:
            raise InvalidBillingRequest("amount_nanos must be positive")
        _int64(amount_nanos, "amount_nanos")
        codes = tuple(new_code() for _ in range(count))
        batch = NewBatch(
            batch_id=str(uuid.uuid4()),
            amount_nanos=amount_nanos,
            code_hashes=tuple(code_hash(code) for code in codes),
            expires_at=expires_at,
            note=note,
            reference=reference,
            at=self._clock(),
        )
        if not await self._store.create_batch(batch):
            raise BatchAlreadyExists(reference)
        return CodeBatch(batch.batch_id, codes)

    async def redeem(self, account_id: str, code: str) -> tuple[int, Wallet]:
        """Credit a code's amount to the account once: (amount, wallet after)."""
        _require(account_id, "account_id")
        _require(code.strip(), "code")
        redemption = Redemption(account_id, code_hash(code.strip()), self._clock())
        outcome = await self._store.redeem(redemption)
        if outcome is RedeemRefusal.UNKNOWN:
            raise CodeNotFound()
        if outcome is RedeemRefusal.TAKEN:
            raise CodeNotRedeemable("this code was redeemed already")
        if outcome is RedeemRefusal.EXPIRED:
            raise CodeNotRedeemable("this code has expired")
        return outcome.amount_nanos, outcome.wallet

    async def ledger_page(self, account_id: str, page_size: int, page_token: str) -> LedgerPage:
        """A page of the account's transfers, newest first."""
        _require(account_id, "account_id")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidBillingRequest(f"page_size must be 0 to {MAX_PAGE_SIZE}")
        before = decode_page_token(page_token) if page_token else None
        return await self._store.list_entries(account_id, before, page_size or DEFAULT_PAGE_SIZE)

    async def check(self) -> LedgerReport:
        """The ledger's invariants."""
        return await self._store.check()


def encode_page_token(before_id: int) -> str:
    """An opaque token for "entries with ids below `before_id`"."""
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + str(before_id).encode()).decode()


def decode_page_token(token: str) -> int:
    """The id a page token continues below; InvalidBillingRequest for a foreign token."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise InvalidBillingRequest("page_token is not valid") from exc
    digits = raw.removeprefix(_TOKEN_PREFIX)
    if digits == raw or not digits.isdigit():
        raise InvalidBillingRequest("page_token is not valid")
    return int(digits)
