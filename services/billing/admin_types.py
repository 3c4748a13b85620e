"""The vocabulary of the admin side of billing: redemption codes, ledger pages, checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.billing.domain import Wallet


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch of redemption codes to store: only the codes' SHA-256 hashes are kept."""

    batch_id: str
    amount_nanos: int
    code_hashes: tuple[str, ...]
    expires_at: datetime | None
    note: str
    # The batch's idempotency key ("" for none).
    reference: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Redemption:
    """An account redeeming the code with this hash."""

    account_id: str
    code_hash: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionOutcome:
    """The amount credited and the wallet after it (also on a replay by the same account)."""

    amount_nanos: int
    wallet: Wallet


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One transfer seen from a wallet: + in, - out."""

    id: int
    kind: str
    amount_nanos: int
    counterparty: str
    request_id: str
    reference: str
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries newest first; `before_id` continues the listing (None on the last page)."""

    entries: tuple[LedgerEntry, ...]
    before_id: int | None


@dataclass(frozen=True, slots=True)
class LedgerMismatch:
    """A wallet whose stored amounts disagree with its transfers or its open holds."""

    account_id: str
    balance_nanos: int
    transfers_nanos: int
    held_nanos: int
    open_holds_nanos: int


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """What CheckLedger found."""

    wallets: int
    transfers: int
    mismatches: tuple[LedgerMismatch, ...]
    holds_resolved_twice: tuple[str, ...]
    net_nanos: int
