"""SQLAlchemy tables of the auth database (used only by store.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the auth tables."""


class AccountRow(Base):
    """One account; `seq` gives the creation order ("oldest first")."""

    __tablename__ = "auth_accounts"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    group_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """One API key: its keyed hash (never the secret), limits and state."""

    __tablename__ = "auth_api_keys"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("auth_accounts.account_id"), index=True
    )
    # HMAC-SHA256 hex; the unique index is what AuthenticateKey reads through.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    allowed_models: Mapped[list[str]] = mapped_column(JSON)
    rpm: Mapped[int] = mapped_column(BigInteger)
    tpm: Mapped[int] = mapped_column(BigInteger)
    concurrency: Mapped[int] = mapped_column(BigInteger)
    # Added after the first release: the server default fills rows of older databases.
    rpd: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
