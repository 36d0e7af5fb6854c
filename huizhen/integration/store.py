"""The canonical store: one async engine on SQLite (WAL) or PostgreSQL.

``Store.write()`` opens a write transaction and ``Store.read()`` a read-only
one; both hand out a :class:`Repository` bound to that transaction. On SQLite
writes are serialised inside the process (one asyncio lock, ``BEGIN
IMMEDIATE`` against other processes) because SQLite has a single writer; on
PostgreSQL they run concurrently and rely on row locks and unique keys.

``Store.batched(job)`` is the write path of high-rate callers (the inbound
engine): the job joins the jobs of other callers in one transaction with one
commit (:mod:`huizhen.integration.group_commit`), and its result is returned
after that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from huizhen.integration import jsonio
from huizhen.integration.crypto import KeyRing
from huizhen.integration.group_commit import GroupCommit, Job
from huizhen.integration.repo import Repository
from huizhen.integration.repo.prepared import connections
from huizhen.integration.sqlite_inline import InlineConnection, inline_creator
from huizhen.integration.wal_checkpoint import SAFETY_PAGES, Checkpointer
from huizhen.integration.write_lock import FileWriteLock

_WRITE = "huizhen_write"
_PG_WRITERS = 2  # measured: 2 beat 1 by a quarter; 4 let batches deadlock (a 1 s stall each)
T = TypeVar("T")


# reltuples is -1 until a table is first analyzed or vacuumed (PostgreSQL 14 and later)
_NEVER_ANALYZED = text(
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.reltuples < 0"
    " AND pg_relation_size(c.oid) > 0 ORDER BY c.relname"
)


class Store:
    def __init__(self, url: str, keyring: KeyRing, *, echo: bool = False, shared: bool = False) -> None:
        """``shared``: other processes write to the same database (worker processes); on SQLite
        they take turns by a lock file beside it (:mod:`huizhen.integration.write_lock`)."""
        self.url = url
        self.keyring = keyring
        self.dialect = make_url(url).get_backend_name()
        self.engine: AsyncEngine = _create_engine(url, echo=echo)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        database = make_url(url).database if self.dialect == "sqlite" else None
        self._file_lock = (
            FileWriteLock(Path(f"{database}.writer-lock")) if shared and database and database != ":memory:" else None
        )
        # SQLite has one writer and savepoints cost it a library call; on PostgreSQL a
        # savepoint is a round trip, and one batch's round trips can overlap another's work
        sqlite = self.dialect == "sqlite"
        self._group = GroupCommit(self, writers=1 if sqlite else _PG_WRITERS, savepoints=sqlite)
        # checkpoints off the commit path (huizhen.integration.wal_checkpoint)
        self._checkpointer = Checkpointer(database) if database and database != ":memory:" else None

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Repository]:
        # the lock before the connection: writers queued on SQLite do not hold pool slots
        async with self._serialised(), self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE: True})
            async with conn.begin():
                yield Repository(conn, self.keyring, self.dialect)

    async def batched(self, job: Job[T]) -> T:
        """Run ``job`` in a write transaction shared with other callers; its result after the commit.

        ``job`` may run more than once (when its batch fails as a whole), so it
        must keep its effects inside the repository it is handed.
        """
        return await self._group.run(job)

    # -- what the group commit needs (huizhen.integration.group_commit.Transactions): its
    # writer holds a connection while jobs keep coming, and takes the write lock per batch

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE: True})
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, conn: AsyncConnection) -> AsyncIterator[None]:
        async with self._serialised():
            driver, _ = await connections(conn)
            sqlite = driver.sqlite if isinstance(driver, InlineConnection) and not conn.sync_engine.echo else None
            if sqlite is None:
                async with conn.begin():
                    yield
                return
            # SQLite: BEGIN and COMMIT straight on sqlite3, ~0.35 ms less than SQLAlchemy's
            # transaction per batch. A statement run through SQLAlchemy meanwhile makes it
            # join this transaction (_on_begin sends no BEGIN then); it then ends it too.
            sqlite.execute("BEGIN IMMEDIATE").close()
            try:
                yield
            except BaseException:
                if conn.in_transaction():
                    await conn.rollback()
                elif sqlite.in_transaction:
                    sqlite.rollback()
                raise
            if self._file_lock is not None:  # given back by the commit's thread (FileWriteLock.release)
                driver.after_commit = self._file_lock.release
            try:
                if conn.in_transaction():
                    await conn.commit()
                else:
                    await driver.commit()
            except BaseException:
                driver.after_commit = None
                if sqlite.in_transaction:
                    sqlite.rollback()
                raise

    def repository(self, conn: AsyncConnection) -> Repository:
        return Repository(conn, self.keyring, self.dialect)

    async def savepoint(self, conn: AsyncConnection, *statements: str) -> None:
        driver, _ = await connections(conn)
        sqlite = driver.sqlite if isinstance(driver, InlineConnection) else None
        for statement in statements:
            if sqlite is not None:
                # straight to sqlite3: a savepoint is a library call there, and going
                # through SQLAlchemy would cost ten times what SQLite takes
                sqlite.execute(statement).close()
            else:
                await conn.exec_driver_sql(statement)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Repository]:
        async with self.engine.connect() as conn, conn.begin():
            yield Repository(conn, self.keyring, self.dialect)

    @contextlib.asynccontextmanager
    async def _serialised(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            if self._file_lock is None:
                yield
                return
            await self._file_lock.acquire()
            try:
                yield
            finally:
                self._file_lock.release()

    async def gather_statistics(self) -> list[str]:
        """PostgreSQL: ``ANALYZE`` the tables its planner has never had statistics of; their names.

        Autovacuum gathers them in the background, but not when it is off, and not yet after a
        restore or a bulk load: meanwhile the planner guesses, and a work-list page's reads
        became scans of whole tables (measured: 10–20 ms for a page's observations instead of
        under one). Tables analyzed before are left to autovacuum, and so are empty ones: the
        statistics of an empty table would tell the planner "no rows" for as long as autovacuum
        does not come (measured on a fresh database with autovacuum off: HL7 ingest on
        PostgreSQL fell from ~900 to ~400 messages/s as the tables filled); never analyzed, it
        estimates from the table's actual size.
        """
        if self.dialect != "postgresql":
            return []
        async with self.engine.connect() as conn:
            names = list((await conn.execute(_NEVER_ANALYZED)).scalars())
            for name in names:  # names from the catalog, quoted as identifiers
                await conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(name)}")
            await conn.commit()
        return names

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self._group.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        await self.engine.dispose()
        if self._file_lock is not None:
            self._file_lock.close()


def _create_engine(url: str, *, echo: bool) -> AsyncEngine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10,
                                   json_serializer=jsonio.dumps, json_deserializer=jsonio.loads)
    database = make_url(url).database or ":memory:"
    engine = create_async_engine(url, echo=echo, async_creator=inline_creator(database),
                                 json_serializer=jsonio.dumps, json_deserializer=jsonio.loads)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below) so that writers can say IMMEDIATE
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",  # an ACK promises durability: fsync every commit
            "foreign_keys=ON",
            "busy_timeout=2000",  # another process's write (a CLI command); blocks the loop meanwhile
            # the group commit's per-job savepoints keep their undo pages in a sub-journal: once it
            # passed 64 KiB SQLite spilled it to a temporary file (created, written page by page,
            # deleted, every batch); in memory it costs none of those system calls
            "temp_store=MEMORY",
            # a Checkpointer thread copies the WAL back; a commit does only if it fell far behind
            f"wal_autocheckpoint={SAFETY_PAGES}",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.connection.driver_connection.sqlite.in_transaction:  # begun on sqlite3 (Store.transaction)
            return
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        driver = conn.connection.driver_connection
        if not write and isinstance(driver, InlineConnection) and driver.sqlite is not None:
            driver.changes_at_begin = driver.sqlite.total_changes

    return engine
