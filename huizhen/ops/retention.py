"""Journal retention: ``huizhen messages prune --before DATE`` that gives disk space back.

Rows go in batches (short write transactions, so a running server keeps
journaling between them), then each back end reclaims space its own way:

* SQLite: ``VACUUM`` rewrites the file without the free pages and the WAL is
  truncated — the file shrinks;
* PostgreSQL: ``VACUUM (ANALYZE)`` makes the space reusable by new rows
  without locking the table (the file keeps its size); ``full=True`` runs
  ``VACUUM FULL``, which returns it to the operating system but locks the
  journal while it rewrites it (a maintenance window).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url

from huizhen.integration import tables as t
from huizhen.integration.model import MessageStatus
from huizhen.integration.store import Store

BATCH = 1000


@dataclass
class PruneReport:
    deleted: int
    reclaimed: str  # what was done to give the space back


def _old(before: datetime, keep_errors: bool) -> list[object]:
    c = t.messages.c
    conditions: list[object] = [c.received_at < before]
    if keep_errors:
        conditions.append(c.status != MessageStatus.ERROR.value)
    return conditions


async def count_prunable(store: Store, before: datetime, *, keep_errors: bool = False) -> int:
    async with store.read() as repo:
        q = select(func.count()).select_from(t.messages).where(*_old(before, keep_errors))  # type: ignore[arg-type]
        return int((await repo.conn.execute(q)).scalar_one())


async def prune(
    store: Store, before: datetime, *, keep_errors: bool = False, full: bool = False, batch: int = BATCH,
    progress: Callable[[int], None] = lambda n: None,
) -> PruneReport:
    deleted = 0
    c = t.messages.c
    while True:
        async with store.write() as repo:
            ids = select(c.id).where(*_old(before, keep_errors)).limit(batch).scalar_subquery()  # type: ignore[arg-type]
            n = (await repo.conn.execute(delete(t.messages).where(c.id.in_(ids)))).rowcount
        deleted += n
        progress(n)
        if n < batch:
            break
    if store.dialect == "sqlite":
        database = make_url(store.url).database
        await asyncio.to_thread(_vacuum_sqlite, Path(database or ""))
        reclaimed = "VACUUM (file rewritten without free pages), WAL truncated"
    else:
        await _vacuum_postgres(store, full=full)
        reclaimed = "VACUUM FULL (space returned to the OS)" if full else "VACUUM ANALYZE (space reusable)"
    return PruneReport(deleted, reclaimed)


def _vacuum_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _vacuum_postgres(store: Store, *, full: bool) -> None:
    async with store.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql("VACUUM (FULL, ANALYZE) messages" if full else "VACUUM (ANALYZE) messages")
