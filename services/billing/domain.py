"""The billing vocabulary: wallets, tariffs, usage, holds and their outcomes.

Plain frozen dataclasses shared by the core, the store and the servicer. Every amount is
an int of nano-USD (1e-9 USD); nothing here is ever a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.billing.errors import InvalidBillingRequest

INT64_MAX = 2**63 - 1


class HoldStatus(StrEnum):
    """Where a hold is in its life: open, then settled or released, never both."""

    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"


class UsageSource(StrEnum):
    """Who counted the usage of a settled request."""

    UPSTREAM = "upstream"
    ESTIMATED = "estimated"


class LedgerKind(StrEnum):
    """What a ledger entry records."""

    TOPUP = "topup"
    CHARGE = "charge"


@dataclass(frozen=True, slots=True)
class Wallet:
    """An account's money; an account without a wallet row has the zero wallet."""

    account_id: str
    balance_nanos: int = 0
    held_nanos: int = 0

    @property
    def available_nanos(self) -> int:
        """What new requests may still reserve."""
        return self.balance_nanos - self.held_nanos


@dataclass(frozen=True, slots=True)
class Tariff:
    """The unit prices and group multiplier one request is billed with."""

    prompt_nanos: int
    completion_nanos: int
    cached_prompt_nanos: int
    multiplier_bps: int


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one request; cached and reasoning tokens are subsets."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.reasoning_tokens,
        )
        if any(n < 0 for n in counts):
            raise InvalidBillingRequest("token counts must not be negative")
        if self.cached_prompt_tokens > self.prompt_tokens:
            raise InvalidBillingRequest("cached_prompt_tokens exceeds prompt_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise InvalidBillingRequest("reasoning_tokens exceeds completion_tokens")


@dataclass(frozen=True, slots=True)
class NewHold:
    """A hold to place: the request, who pays, the tariff snapshot and the amount."""

    request_id: str
    account_id: str
    key_id: str
    group: str
    model: str
    tariff: Tariff
    amount_nanos: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Hold:
    """A stored hold and, once settled, what it charged."""

    request_id: str
    account_id: str
    key_id: str
    group: str
    model: str
    tariff: Tariff
    amount_nanos: int
    status: HoldStatus
    charged_nanos: int = 0


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    """What placing a hold did: `hold` is None when the available balance was short."""

    hold: Hold | None
    wallet: Wallet
    created: bool


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The real usage of a held request, to settle it with."""

    request_id: str
    usage: TokenUsage
    usage_source: UsageSource
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    """The hold after a settle attempt, its wallet, and whether this attempt settled it."""

    hold: Hold
    wallet: Wallet
    settled_now: bool


@dataclass(frozen=True, slots=True)
class TopUp:
    """Funds to add; `reference` (may be empty) is the idempotency key."""

    account_id: str
    amount_nanos: int
    reference: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TopUpOutcome:
    """The top-up recorded under the reference (new or earlier) and that account's wallet."""

    account_id: str
    amount_nanos: int
    wallet: Wallet
    created: bool
