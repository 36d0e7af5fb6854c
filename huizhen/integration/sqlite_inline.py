"""aiosqlite's connection interface, executed on the calling (event-loop) thread.

Why not plain aiosqlite: it runs each connection in a worker thread and hands
every driver call across (cursor, execute, fetch, close: four hand-offs per
statement). An HL7 message costs some twenty statements, so the hand-offs —
not SQLite — set the pace: measured here, ~22 ms per message against ~3 ms
when the same calls run inline. SQLite calls are microseconds (the fsync of a
commit, well under a millisecond), so running them on the loop thread is the
cheaper trade. Writers are serialised by the store's lock anyway; readers in
WAL mode never wait for a writer; the busy timeout only matters when another
process (a CLI command) holds the write lock, and is kept short for that reason.

The one exception is COMMIT: with ``synchronous=FULL`` it waits for the
disk (an fsync of the WAL, measured at 0.5–2.5 ms here, more when the WAL
grows or a checkpoint runs). That wait goes to a worker thread, where sqlite3
releases the GIL, so the loop goes on parsing and mapping the next messages
meanwhile; nothing else uses the connection until the commit returns, because
its one user is awaiting it.

SQLAlchemy's ``sqlite+aiosqlite`` dialect is used unchanged through its
``async_creator`` hook; only the thread hand-off is removed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite


class _InlineQueue:
    """Stands in for aiosqlite's work queue: runs each item at once, on this thread.

    SQLAlchemy's aiosqlite adapter queues some calls directly (its isolation
    level setter), so the queue itself must execute what it is given.
    """

    def put_nowait(self, item: tuple[Any, Any]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller, as the worker thread would
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Any, iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _InlineQueue()  # type: ignore[assignment]
        # run on the commit's thread once it succeeded: the store gives back the processes' write
        # lock there, rather than when this loop next gets to it (a page's work later, or more)
        self.after_commit: Callable[[], None] | None = None
        # sqlite3's total_changes when a read transaction began (the store's begin hook): a
        # transaction that changed no row has nothing to fsync, so its COMMIT stays on the loop
        self.changes_at_begin: int | None = None

    def __await__(self) -> Any:  # no worker thread to start
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    @property
    def sqlite(self) -> sqlite3.Connection | None:
        """The sqlite3 connection itself (``None`` once closed), for statements run without SQLAlchemy."""
        return self._connection if self._running else None

    async def commit(self) -> None:
        then, self.after_commit = self.after_commit, None
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        connection = self._connection
        begun, self.changes_at_begin = self.changes_at_begin, None
        if then is None and begun is not None and connection.total_changes == begun:
            connection.commit()  # a read: it only ends the snapshot, no thread hop (nor a turn of the loop)
            return

        def commit() -> None:
            connection.commit()
            if then is not None:
                then()

        await asyncio.to_thread(commit)

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_creator(path: str) -> Any:
    """An ``async_creator`` for ``create_async_engine`` opening ``path`` inline."""

    async def create() -> InlineConnection:
        connector = partial(sqlite3.connect, path, isolation_level=None, check_same_thread=False)
        return await InlineConnection(connector, iter_chunk_size=64)

    return create
