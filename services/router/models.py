"""SQLAlchemy tables of the router database (used only by store.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the router tables."""


class ChannelRow(Base):
    """One channel: the fields routing reads as columns, the provider's options as JSON."""

    __tablename__ = "router_channels"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(Text)
    models: Mapped[list[str]] = mapped_column(JSON)
    model_map: Mapped[dict[str, str]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    tags: Mapped[list[str]] = mapped_column(JSON)
    # The other ChannelEntry fields (preset, timeouts, quirks, api_key_env ...).
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "config" (the file's version wins at start) or "admin" (changed at runtime).
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UpstreamKeyRow(Base):
    """One upstream key of a channel: AES-GCM ciphertext, never the secret."""

    __tablename__ = "router_upstream_keys"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(40), unique=True)
    channel: Mapped[str] = mapped_column(
        String(128), ForeignKey("router_channels.name", ondelete="CASCADE"), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # "...abcd": what listings show, kept so a listing never decrypts.
    hint: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
