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
its one user is awaiting it. The worker is one thread of this module's own
(:class:`_Committer`), not ``asyncio.to_thread``: the default executor's hand-off
(a concurrent future wrapped in an asyncio one, its locks and idle-thread
semaphore) measured ~72 µs of CPU per commit on this machine against ~39 µs for
a queue and a callback on the loop, and a group commit pays it once per batch.

SQLAlchemy's ``sqlite+aiosqlite`` dialect is used unchanged through its
``async_creator`` hook; only the thread hand-off is removed.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
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

        await _COMMITTER.run(commit)

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


_Item = tuple[Callable[[], None], asyncio.AbstractEventLoop, "asyncio.Future[None]"]  # what to run, answered where


class _Committer:
    """One thread running the commits handed to it in turn, each answered on its caller's loop.

    One thread is enough: a process has one SQLite writer at a time (the store serialises
    them). As with ``asyncio.to_thread``, a caller that is cancelled meanwhile does not stop
    its commit, and a commit cut short by the process ending is rolled back by SQLite on
    the next open, its answer never sent. Started on first use, and again in a forked
    child (threads do not survive a fork).
    """

    def __init__(self) -> None:
        self.forked()

    def forked(self) -> None:
        """A fresh start; also in a forked child, where its parent's thread is not, nor may the
        queue and the lock it copied be usable."""
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """``fn`` run on the commit thread; the future is done once it returned (or raised)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None:
            self._start()
        self._queue.put((fn, loop, future))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._work, args=(self._queue,), name="huizhen-sqlite-commit",
                                          daemon=True)
                thread.start()
                self._thread = thread

    @staticmethod
    def _work(items: queue.SimpleQueue[_Item]) -> None:
        while True:
            fn, loop, future = items.get()
            error: BaseException | None = None
            try:
                fn()
            except BaseException as exc:  # handed to the awaiting caller, as to_thread would
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:  # its loop is closed: no one is waiting any more
                pass
            del fn, loop, future, error  # nothing of a commit kept alive until the next one


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


_COMMITTER = _Committer()
os.register_at_fork(after_in_child=_COMMITTER.forked)


def inline_creator(path: str) -> Any:
    """An ``async_creator`` for ``create_async_engine`` opening ``path`` inline."""

    async def create() -> InlineConnection:
        connector = partial(sqlite3.connect, path, isolation_level=None, check_same_thread=False)
        return await InlineConnection(connector, iter_chunk_size=64)

    return create
