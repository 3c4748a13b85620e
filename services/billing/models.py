"""SQLAlchemy tables of the billing database; used only by `store.py`.

Money columns are BIGINT nano-USD. The schema is created with `metadata.create_all` at
startup (alembic migrations later): create_all adds missing tables, never missing
columns, so a database made before a column was added must be recreated.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
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
    """One account's balance and the sum of its open holds."""

    __tablename__ = "wallets"
    __table_args__ = (CheckConstraint("held_nanos >= 0", name="held_not_negative"),)

    account_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    # May go below zero when a charge exceeds its hold (estimate error); never via holds.
    balance_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    held_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class HoldRow(Base):
    """A reservation for one request, with the tariff it will be settled at."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount_nanos >= 0", name="amount_not_negative"),
        CheckConstraint("charged_nanos >= 0", name="charged_not_negative"),
        CheckConstraint("status IN ('open', 'settled', 'released')", name="status_known"),
        Index("ix_holds_account_status", "account_id", "status"),
    )

    request_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    key_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    price_group: Mapped[str] = mapped_column(String(_ID), nullable=False)
    model: Mapped[str] = mapped_column(String(_ID), nullable=False)
    prompt_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cached_prompt_price_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    multiplier_bps: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The tariff's non-token unit prices: a JSON object {unit: nano-USD} (unit_json.py).
    unit_prices_json: Mapped[str] = mapped_column(Text, nullable=False)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    charged_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerEntryRow(Base):
    """An immutable movement of a wallet's balance: + for top-ups, - for charges."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'topup' AND amount_nanos > 0) OR (kind = 'charge' AND amount_nanos <= 0)",
            name="sign_matches_kind",
        ),
        Index("ix_ledger_entries_account", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    amount_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    balance_after_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(_ID), unique=True)
    # The top-up idempotency key; NULLs do not collide in a unique index.
    reference: Mapped[str | None] = mapped_column(String(_ID), unique=True)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class UsageRecordRow(Base):
    """What a settled request used and cost."""

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND cached_prompt_tokens >= 0"
            " AND reasoning_tokens >= 0 AND cost_nanos >= 0",
            name="counts_not_negative",
        ),
        Index("ix_usage_records_account_created", "account_id", "created_at"),
    )

    request_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    key_id: Mapped[str] = mapped_column(String(_ID), nullable=False)
    model: Mapped[str] = mapped_column(String(_ID), nullable=False)
    channel: Mapped[str] = mapped_column(String(_ID), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cached_prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Non-token units consumed: a JSON object {unit: quantity} (unit_json.py).
    units_json: Mapped[str] = mapped_column(Text, nullable=False)
    usage_source: Mapped[str] = mapped_column(String(16), nullable=False)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
