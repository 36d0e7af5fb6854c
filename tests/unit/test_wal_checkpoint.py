"""The background WAL checkpointer copies committed pages into the database file off the
commit path, and stops on close."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from huizhen.integration.wal_checkpoint import Checkpointer


def _wal_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    return conn


def test_pages_reach_the_database_file_without_a_commit_checkpointing(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    conn = _wal_database(db)
    before = os.path.getsize(db)
    for i in range(200):
        conn.execute("INSERT INTO t (id, data) VALUES (?, ?)", (i, os.urandom(1024)))
    assert os.path.getsize(db) == before  # all still in the WAL
    checkpointer = Checkpointer(str(db), pages=10, interval_s=0.01)
    try:
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > 0
        assert os.path.getsize(db) > before + 200 * 1024  # the rows were copied into the file
        conn.execute("INSERT INTO t (id, data) VALUES (?, ?)", (1000, b"after"))  # writers go on
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (201,)
    finally:
        checkpointer.close()
    assert not checkpointer._thread.is_alive()
    conn.close()


def test_a_small_wal_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    conn = _wal_database(db)
    conn.execute("INSERT INTO t (id, data) VALUES (1, x'00')")
    checkpointer = Checkpointer(str(db), pages=1000, interval_s=0.01)
    try:
        time.sleep(0.2)
        assert checkpointer.checkpoints == 0
    finally:
        checkpointer.close()
    conn.close()


def test_no_database_yet_is_waited_for(tmp_path: Path) -> None:
    checkpointer = Checkpointer(str(tmp_path / "absent.db"), pages=1, interval_s=0.01)
    time.sleep(0.1)
    checkpointer.close()
    assert checkpointer.checkpoints == 0 and not (tmp_path / "absent.db").exists()
