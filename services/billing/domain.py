"""The billing vocabulary: wallets, tariffs, usage, holds and their outcomes.

Plain frozen dataclasses shared by the core, the store and the servicer. Every amount is
an int of nano-USD (1e-9 USD); nothing here is ever a float. The tariff and the charge
formula are the shared ones of `services.common.charges`, so billing and the edge agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from services.billing.errors import InvalidBillingRequest
from services.common.charges import Metered, Tariff

NO_UNITS: Mapping[str, int] = MappingProxyType({})
# The lowest int64: a balance may go below zero (charges over a hold, adjustments).
INT64_MIN = -(2**63)

# The system accounts of the double-entry ledger; a wallet's account is wallet_account().
FUNDING = "system:funding"
REVENUE = "system:revenue"
ADJUSTMENTS = "system:adjustments"
REDEMPTIONS = "system:redemptions"
WALLET_PREFIX = "wallet:"


def wallet_account(account_id: str) -> str:
    """The ledger account of a wallet."""
    return WALLET_PREFIX + account_id


def no_units() -> Mapping[str, int]:
    """The empty unit map (a dataclass default: a mappingproxy is not a hashable default)."""
    return NO_UNITS


class HoldStatus(StrEnum):
    """Where a hold is in its life: open, then settled, released or expired, once.

    An expired hold may still be settled (a late settlement); nothing else leaves it.
    """

    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"


class UsageSource(StrEnum):
    """Who counted the usage of a recorded request."""

    UPSTREAM = "upstream"
    ESTIMATED = "estimated"
    # A request released without usage (it failed before any was counted).
    NONE = "none"


class TransferKind(StrEnum):
    """What a transfer records."""

    TOPUP = "topup"
    CHARGE = "charge"
    ADJUSTMENT = "adjustment"
    REDEMPTION = "redemption"


class RequestStatus(StrEnum):
    """How a request ended, as the usage log stores it ("" when not reported)."""

    UNSPECIFIED = ""
    OK = "ok"
    ERROR = "error"
    CLIENT_CLOSED = "client_closed"
    UPSTREAM_CUT = "upstream_cut"


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """How a request ran, for the usage log."""

    status: RequestStatus = RequestStatus.UNSPECIFIED
    error_code: str = ""
    stream: bool = False
    latency_ms: int = 0
    first_token_ms: int = 0


NO_OUTCOME = RequestOutcome()


@dataclass(frozen=True, slots=True)
class Wallet:
    """An account's money; an account without a wallet row has the zero wallet."""

    account_id: str
    balance_nanos: int = 0
    held_nanos: int = 0
    credit_limit_nanos: int = 0

    @property
    def available_nanos(self) -> int:
        """What new requests may still reserve: balance + credit limit - held."""
        return self.balance_nanos + self.credit_limit_nanos - self.held_nanos


def unit_quantities(pairs: Iterable[tuple[str, int]]) -> Mapping[str, int]:
    """A unit -> quantity map, sorted by unit; InvalidBillingRequest on a bad or repeated unit."""
    quantities: dict[str, int] = {}
    for unit, quantity in pairs:
        if not unit:
            raise InvalidBillingRequest("a unit needs a name")
        if unit in quantities:
            raise InvalidBillingRequest(f"unit {unit!r} is listed twice")
        if quantity < 0:
            raise InvalidBillingRequest(f"the quantity of unit {unit!r} must not be negative")
        quantities[unit] = quantity
    return MappingProxyType(dict(sorted(quantities.items()))) if quantities else NO_UNITS


@dataclass(frozen=True, slots=True)
class Usage:
    """What one request consumed: tokens (cached and reasoning are subsets) and units."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    # Usually built by unit_quantities (sorted, repeated units refused).
    units: Mapping[str, int] = field(default_factory=no_units)
    # Prompt tokens written to the provider's cache (disjoint from cached ones).
    cache_write_prompt_tokens: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.reasoning_tokens,
            self.cache_write_prompt_tokens,
        )
        if any(n < 0 for n in counts):
            raise InvalidBillingRequest("token counts must not be negative")
        if self.cached_prompt_tokens + self.cache_write_prompt_tokens > self.prompt_tokens:
            raise InvalidBillingRequest(
                "cached_prompt_tokens + cache_write_prompt_tokens exceeds prompt_tokens"
            )
        if self.reasoning_tokens > self.completion_tokens:
            raise InvalidBillingRequest("reasoning_tokens exceeds completion_tokens")
        if any(not unit or quantity < 0 for unit, quantity in self.units.items()):
            raise InvalidBillingRequest("unit quantities need a name and must not be negative")

    @property
    def metered(self) -> Metered:
        """The usage as the charge formula reads it."""
        return Metered(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.units,
            self.cache_write_prompt_tokens,
            self.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class NewHold:
    """A hold to place: the request, who pays, the tariff snapshot, the amount, its TTL."""

    request_id: str
    account_id: str
    key_id: str
    group: str
    model: str
    tariff: Tariff
    amount_nanos: int
    at: datetime
    expires_at: datetime


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
    # Whether its amount counts in the key budget's held amount.
    on_key_budget: bool = False


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    """What placing a hold did: `hold` is None when refused (balance, or key budget)."""

    hold: Hold | None
    wallet: Wallet
    created: bool
    budget_exceeded: bool = False


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The real usage of a held request, to settle it with."""

    request_id: str
    usage: Usage
    usage_source: UsageSource
    channel: str
    at: datetime
    outcome: RequestOutcome = NO_OUTCOME


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    """The hold after a settle attempt, its wallet, whether this attempt settled it, late."""

    hold: Hold
    wallet: Wallet
    settled_now: bool
    # The hold had expired before it was settled (charged anyway).
    late: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseReport:
    """A hold to drop; `outcome` (None: the request never ran) goes to the usage log."""

    request_id: str
    at: datetime
    outcome: RequestOutcome | None = None
    channel: str = ""


@dataclass(frozen=True, slots=True)
class Movement:
    """A top-up or an adjustment: a signed amount for a wallet, idempotent by reference."""

    account_id: str
    amount_nanos: int
    kind: TransferKind
    # The caller's idempotency key ("" for none); stored as "<kind>:<reference>".
    reference: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MovementOutcome:
    """The movement recorded under the reference (new or earlier) and that wallet."""

    account_id: str
    amount_nanos: int
    wallet: Wallet
    created: bool
