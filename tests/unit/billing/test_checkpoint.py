"""The WAL checkpointer moves committed pages into the database file, off the writer."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from services.billing.checkpoint import WalCheckpointer


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    return conn


def test_checkpoints_move_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    writer = _writer(path)
    for i in range(200):
        writer.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 500 + str(i),))
    size_before = path.stat().st_size
    checkpointer = WalCheckpointer(str(path), interval=timedelta(milliseconds=20))
    checkpointer.start()
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.stop()
    assert checkpointer.checkpoints >= 1
    assert path.stat().st_size > size_before + 50_000  # the rows now live in the file
    writer.execute("INSERT INTO t (payload) VALUES ('after')")  # the writer was never blocked
    writer.close()


def test_without_checkpoints_the_rows_stay_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    writer = _writer(path)
    for i in range(200):
        writer.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 500 + str(i),))
    assert path.stat().st_size < 50_000
    writer.close()
