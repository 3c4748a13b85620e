"""SQLAlchemy tables of the billing database; used only by `store.py`.

Money columns are BIGINT nano-USD. The schema is created with `metadata.create_all` at
startup (alembic migrations later): create_all adds missing tables, never missing
columns, so a database made before a column was added must be recreated.

The ledger is double-entry and append-only: `transfers` rows are never updated or
deleted; each moves a positive amount from a debit account to a credit account
("wallet:<account id>" or a "system:..." account). `wallets` materialises each wallet
account's balance (= credits - debits of its transfers) and held amount (= the sum of
its open holds); both are updated in the same transaction as the rows they summarise.
`holds` are the pending side (two-phase: reserve, then settle / release / expire).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")
_ID = 200
_ACCOUNT = 220  # "wallet:" + an account id, or a namespaced reference


class Base(DeclarativeBase):
    """Declarative base with a naming convention so constraints get stable names."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class WalletRow(Base):
    """One account's balance, the sum of its open holds, and its credit limit."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("held_nanos >= 0", name="held_not_negative"),
        CheckConstraint("credit_limit_nanos >= 0", name="credit_limit_not_negative"),
    )

    account_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    # May go below zero when a charge exceeds its hold (estimate error), by a negative
    # adjustment, or down to -credit_limit_nanos through holds; never otherwise.
    balance_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    held_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credit_limit_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class HoldRow(Base):
    """A reservation for one request (a pending transfer), with its tariff snapshot."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount_nanos >= 0", name="amount_not_negative"),
        CheckConstraint("charged_nanos >= 0", name="charged_not_negative"),
        CheckConstraint(
            "status IN ('open', 'settled', 'released', 'expired')", name="status_known"
        ),
        Index("ix_holds_account_status", "account_id", "status"),
        # The expiry sweep's scan: open holds by deadline.
        Index("ix_holds_status_expires", "status", "expires_at"),
    )

    request_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    key_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    price_group: Mapped[str] = mapped_column(String(_ID), nullable=False)
    model: Mapped[str] = mapped_column(String(_ID), nullable=False)
    prompt_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cached_prompt_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cache_write_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reasoning_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    request_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    multiplier_bps: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The tariff's non-token unit prices: a JSON object {unit: nano-USD} (unit_json.py).
    unit_prices_json: Mapped[str] = mapped_column(Text, nullable=False)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # open -> settled | released | expired; expired -> settled (a late settlement).
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    charged_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Whether the key had a budget when the hold was placed (its held amount counts there).
    on_key_budget: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TransferRow(Base):
    """One immutable, balanced movement of money between two ledger accounts."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount_nanos > 0", name="amount_positive"),
        CheckConstraint("debit_account <> credit_account", name="accounts_differ"),
        CheckConstraint(
            "kind IN ('topup', 'charge', 'adjustment', 'redemption')", name="kind_known"
        ),
        Index("ix_transfers_debit_account", "debit_account", "id"),
        Index("ix_transfers_credit_account", "credit_account", "id"),
    )

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    debit_account: Mapped[str] = mapped_column(String(_ACCOUNT), nullable=False)
    credit_account: Mapped[str] = mapped_column(String(_ACCOUNT), nullable=False)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # The request a charge settles: unique, so a request is charged at most once.
    request_id: Mapped[str | None] = mapped_column(String(_ID), unique=True)
    # The idempotency key of a top-up, adjustment or redemption, namespaced by kind
    # ("topup:<ref>", "adjustment:<ref>", "redemption:<code hash>"); NULLs never collide.
    reference: Mapped[str | None] = mapped_column(String(_ACCOUNT), unique=True)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class KeyBudgetRow(Base):
    """An API key's spending caps and its spend in the current UTC day and month."""

    __tablename__ = "key_budgets"
    __table_args__ = (
        CheckConstraint(
            "daily_limit_nanos >= 0 AND monthly_limit_nanos >= 0 AND held_nanos >= 0",
            name="amounts_not_negative",
        ),
    )

    key_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    daily_limit_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    monthly_limit_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The period the spent counters belong to: "YYYY-MM-DD" and "YYYY-MM" (UTC); a
    # reserve or settle in a later period starts that counter from 0.
    day: Mapped[str] = mapped_column(String(10), nullable=False)
    day_spent_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    month: Mapped[str] = mapped_column(String(7), nullable=False)
    month_spent_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Open holds of the key's requests placed while it had a budget.
    held_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RedemptionBatchRow(Base):
    """A batch of redemption codes minted together."""

    __tablename__ = "redemption_batches"
    __table_args__ = (
        CheckConstraint("amount_nanos > 0 AND code_count > 0", name="positive"),
    )

    id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    code_count: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    # The batch's idempotency key; NULLs never collide.
    reference: Mapped[str | None] = mapped_column(String(_ID), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RedemptionCodeRow(Base):
    """One code, stored as the SHA-256 of its text (a 128-bit random secret)."""

    __tablename__ = "redemption_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(_ID), nullable=False, index=True)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set once, by the conditional UPDATE that redeems it (WHERE redeemed_by IS NULL).
    redeemed_by: Mapped[str | None] = mapped_column(String(_ID))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsageRecordRow(Base):
    """One request in the usage log: what it used, what it cost, how it went."""

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND cached_prompt_tokens >= 0"
            " AND cache_write_prompt_tokens >= 0 AND reasoning_tokens >= 0"
            " AND cost_nanos >= 0",
            name="counts_not_negative",
        ),
        Index("ix_usage_records_account_created", "account_id", "created_at"),
        Index("ix_usage_records_key_created", "key_id", "created_at"),
        Index("ix_usage_records_created", "created_at"),
        Index("ix_usage_records_day_account_model", "day", "account_id", "model"),
    )

    request_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    key_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    model: Mapped[str] = mapped_column(String(_ID), nullable=False)
    channel: Mapped[str] = mapped_column(String(_ID), nullable=False)
    price_group: Mapped[str] = mapped_column(String(_ID), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cached_prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cache_write_prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Non-token units consumed: a JSON object {unit: quantity} (unit_json.py).
    units_json: Mapped[str] = mapped_column(Text, nullable=False)
    # "upstream", "estimated", or "none" (a failed request released without usage).
    usage_source: Mapped[str] = mapped_column(String(16), nullable=False)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # "ok", "error", "client_closed", "upstream_cut", or "" when not reported.
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    stream: Mapped[bool] = mapped_column(Boolean, nullable=False)
    latency_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_token_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Whether the hold had expired before the settlement (charged anyway).
    late: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # The UTC day of created_at, "YYYY-MM-DD" (the daily aggregates group by it).
    day: Mapped[str] = mapped_column(String(10), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
