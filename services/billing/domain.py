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


def no_units() -> Mapping[str, int]:
    """The empty unit map (a dataclass default: a mappingproxy is not a hashable default)."""
    return NO_UNITS


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
        if any(not unit or quantity < 0 for unit, quantity in self.units.items()):
            raise InvalidBillingRequest("unit quantities need a name and must not be negative")

    @property
    def metered(self) -> Metered:
        """The usage as the charge formula reads it."""
        return Metered(
            self.prompt_tokens, self.completion_tokens, self.cached_prompt_tokens, self.units
        )


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
    usage: Usage
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
