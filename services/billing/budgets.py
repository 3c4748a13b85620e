"""Per-key spending caps: the budget of an API key per UTC day and calendar month.

A budget row counts what the key spent in its current day and month and what its open
holds reserve. The periods roll lazily: the first reserve or settle of a later day or
month starts that counter from 0. These rules run inside the store's transactions,
under the budget row's lock, so concurrent reservations cannot pass a cap together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime


def day_of(at: datetime) -> str:
    """The UTC day of `at`, "YYYY-MM-DD"."""
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def month_of(at: datetime) -> str:
    """The UTC month of `at`, "YYYY-MM"."""
    return at.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """An API key's caps (0: none) and its spend and holds in the named periods."""

    key_id: str
    daily_limit_nanos: int = 0
    monthly_limit_nanos: int = 0
    day: str = ""
    day_spent_nanos: int = 0
    month: str = ""
    month_spent_nanos: int = 0
    held_nanos: int = 0

    def rolled(self, at: datetime) -> KeyBudget:
        """The budget in the periods of `at`: a counter of an earlier period restarts at 0."""
        day, month = day_of(at), month_of(at)
        return replace(
            self,
            day=day,
            day_spent_nanos=self.day_spent_nanos if self.day == day else 0,
            month=month,
            month_spent_nanos=self.month_spent_nanos if self.month == month else 0,
        )

    def admits(self, amount_nanos: int) -> bool:
        """Whether holding `amount_nanos` more keeps every set cap (call on a rolled budget)."""
        committed = self.held_nanos + amount_nanos
        if self.daily_limit_nanos > 0 and self.day_spent_nanos + committed > self.daily_limit_nanos:
            return False
        return not (
            self.monthly_limit_nanos > 0
            and self.month_spent_nanos + committed > self.monthly_limit_nanos
        )

    def with_hold(self, amount_nanos: int) -> KeyBudget:
        """The budget with a new hold counted."""
        return replace(self, held_nanos=self.held_nanos + amount_nanos)

    def with_release(self, amount_nanos: int) -> KeyBudget:
        """The budget without a hold (never below 0: the budget may be newer than the hold)."""
        return replace(self, held_nanos=max(self.held_nanos - amount_nanos, 0))

    def with_charge(self, charged_nanos: int) -> KeyBudget:
        """The budget with a charge spent in both periods (call on a rolled budget)."""
        return replace(
            self,
            day_spent_nanos=self.day_spent_nanos + charged_nanos,
            month_spent_nanos=self.month_spent_nanos + charged_nanos,
        )
