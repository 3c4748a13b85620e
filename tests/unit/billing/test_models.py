"""Money and token columns are 64-bit integers; nothing in the schema is a float."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Numeric

from services.billing.models import Base


def test_money_and_token_columns_are_bigint() -> None:
    columns = [c for t in Base.metadata.tables.values() for c in t.columns]
    counted = [c for c in columns if c.name.endswith(("_nanos", "_tokens", "_bps"))]
    assert len(counted) >= 15
    for column in counted:
        assert isinstance(column.type, BigInteger), column
    for column in columns:
        assert not isinstance(column.type, (Float, Numeric)), column


def test_tables() -> None:
    assert set(Base.metadata.tables) == {"wallets", "holds", "ledger_entries", "usage_records"}
