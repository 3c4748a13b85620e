"""Core statements compiled once; on SQLite run straight on the driver's cursor.

`Connection.execute` costs 30-50 us of Python per statement even with its compiled cache
(execution context, result objects), several times what sqlite3 itself needs. On the
embedded path a statement here is compiled once, at import, for pysqlite (the SQL that
SQLAlchemy would emit), its bind values go through SQLAlchemy's own bind processors,
and driver errors are wrapped into SQLAlchemy's exception classes as `execute` does.
Any other dialect (PostgreSQL) goes through `Connection.execute` unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import ExecutableReturnsRows

_SQLITE = SQLiteDialect_pysqlite()


class Statement:
    """One Core statement with its SQLite compilation (sql, bind order, bind processors)."""

    __slots__ = ("_names", "_other", "_processors", "_sql")

    def __init__(
        self,
        stmt: ExecutableReturnsRows,
        column_keys: Sequence[str] = (),
        postgresql: UpdateBase | None = None,
    ) -> None:
        """`stmt` for every dialect, unless a PostgreSQL form (ON CONFLICT) is given."""
        compiled = stmt.compile(dialect=_SQLITE, column_keys=list(column_keys) or None)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("Python-side column defaults are not applied on this path")
        for column in stmt.exported_columns:
            if column.type.dialect_impl(_SQLITE).result_processor(_SQLITE, None) is not None:
                raise ValueError(f"column {column.name} needs a result processor")
        self._other = stmt if postgresql is None else postgresql
        self._sql = compiled.string
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        if not all(compiled.binds[name].required for name in self._names):
            raise ValueError("every bound value must be a named parameter of the call")
        self._processors: tuple[Callable[[Any], Any] | None, ...] = tuple(
            compiled.binds[name].type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
            for name in self._names
        )

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Execute and fetch every row (positional)."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self._other, params).all()
        cursor = self._run(conn, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute a statement without RETURNING; the number of rows it changed."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self._other, params).rowcount
        cursor = self._run(conn, params)
        count = cursor.rowcount
        cursor.close()
        return count

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> sqlite3.Cursor:
        args = [
            params[name] if process is None else process(params[name])
            for name, process in zip(self._names, self._processors, strict=True)
        ]
        driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            return driver.execute(self._sql, args)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(self._sql, args, exc, sqlite3.Error) from exc
