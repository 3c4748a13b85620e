"""The billing schema: integer money, JSON unit columns, and refusing an outdated database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Float, Numeric

from services.billing.database import SchemaOutdated, create_schema, open_database
from services.billing.models import Base
from services.billing.unit_json import dump_units, load_units


def test_money_and_token_columns_are_bigint() -> None:
    columns = [c for t in Base.metadata.tables.values() for c in t.columns]
    counted = [c for c in columns if c.name.endswith(("_nanos", "_tokens", "_bps"))]
    assert len(counted) >= 15
    for column in counted:
        assert isinstance(column.type, BigInteger), column
    for column in columns:
        assert not isinstance(column.type, (Float, Numeric)), column


def test_tables() -> None:
    assert set(Base.metadata.tables) == {
        "wallets",
        "holds",
        "transfers",
        "key_budgets",
        "redemption_batches",
        "redemption_codes",
        "usage_records",
    }


async def test_a_database_from_before_a_column_was_added_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    database = open_database(url)
    try:
        await create_schema(database)  # a fresh database has every column
        await database.write(lambda conn: conn.exec_driver_sql(
            "ALTER TABLE usage_records DROP COLUMN units_json"))
        with pytest.raises(SchemaOutdated, match="'usage_records' lacks columns units_json"):
            await create_schema(database)
    finally:
        await database.close()


def test_unit_columns_hold_sorted_compact_json() -> None:
    units = {"image/1024x1024/hd": 2, "character": 10}
    assert dump_units(units) == '{"character":10,"image/1024x1024/hd":2}'
    assert dump_units({}) == "{}"
    assert load_units(dump_units(units)) == units
    assert list(load_units('{"b":1,"a":2}')) == ["a", "b"]
    assert load_units("{}") == {}
    for text in ("[1]", '{"a":1.5}', '{"a":true}'):
        with pytest.raises(ValueError, match="JSON object of integers"):
            load_units(text)
