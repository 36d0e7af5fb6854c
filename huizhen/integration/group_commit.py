"""Group commit: the write jobs queued by many callers, one transaction, one commit.

Why: a durable answer costs a commit, and a commit costs an fsync (SQLite
``synchronous=FULL``) or a WAL flush and a round trip (PostgreSQL). When
several connections each wait for their own commit, that cost is paid once
per message and, on SQLite, behind one write lock. Here a writer task takes
every job waiting in the queue, runs them one after the other in a single
transaction and commits once; each caller is answered only after that commit,
so "answered" still means "durable". SQLite has one writer task; PostgreSQL
may have a few, each committing its own batches.

One job must not take the others down. Where savepoints are cheap (SQLite:
a library call) each job of a batch runs inside its own SAVEPOINT, and a job
that raises is rolled back to it alone: its caller gets the exception, the
other jobs go on. Where each savepoint is a round trip (PostgreSQL), the batch
runs without them and, should a job raise, the transaction is rolled back and
the batch runs again without that job. Should the transaction fail as a whole
(the commit itself, a lost connection, a deadlock), nothing of it is durable,
and each job of the batch runs again alone in its own transaction. So a job
may run more than once and must keep all of its effects inside the
transaction it is handed.

Callers queue in arrival order and the batch runs in that order, so one
caller's consecutive jobs (one MLLP connection's messages) apply in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from huizhen.integration.repo import Repository

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[Repository], Awaitable[T]]

# Enough to absorb a burst from every connection at once, small enough that
# the first caller of a batch does not wait long behind the last one.
MAX_BATCH = 64
# A writer keeps its connection this long between jobs: taking one from the pool
# costs a pool round and, on PostgreSQL, the pre-ping's round trip.
_IDLE_S = 1.0


class Transactions(Protocol):
    """What the writer needs from the store."""

    def session(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection for writing, held across the batches of one busy spell."""

    def transaction(self, conn: AsyncConnection) -> contextlib.AbstractAsyncContextManager[None]:
        """One write transaction on ``conn``: committed on a clean exit, rolled back otherwise."""

    def repository(self, conn: AsyncConnection) -> Repository:
        """A fresh repository on ``conn``: no state carried from one job to the next."""

    async def savepoint(self, conn: AsyncConnection, *statements: str) -> None:
        """Run ``SAVEPOINT``/``RELEASE``/``ROLLBACK TO`` statements in order."""


@dataclass(eq=False)
class _Pending(Generic[T]):
    job: Job[T]
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None
    retried: bool = False


_MARK = "SAVEPOINT hz_job"
_RELEASE = "RELEASE SAVEPOINT hz_job"
_UNDO = "ROLLBACK TO SAVEPOINT hz_job"  # the savepoint stays, still marking the state before the job

# A job that lost a race with another transaction (a unique key taken meanwhile, a
# deadlock, a busy database) runs once more, alone, once that transaction is over.
_RACES = (IntegrityError, OperationalError)


class GroupCommit:
    def __init__(
        self, transactions: Transactions, *, writers: int = 1, savepoints: bool = True, max_batch: int = MAX_BATCH
    ) -> None:
        """``writers``: batches committed at once (1 where the database has a single writer);
        ``savepoints``: isolate the jobs of a batch by savepoints rather than by running it again."""
        self._tx = transactions
        self._count = writers
        self._savepoints = savepoints
        self._max_batch = max_batch
        self._queue: collections.deque[_Pending[Any]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._closed = False
        self.batches = 0  # totals, for tests and the metrics layer
        self.jobs = 0

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in a write transaction; return its result once that is committed."""
        if self._closed:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        self._start_writers(loop)
        pending: _Pending[T] = _Pending(job, loop.create_future())
        self._queue.append(pending)
        self._wakeup.set()
        # A caller that gives up (cancelled) leaves its job to run or be skipped;
        # either way it is never answered, so it made no promise.
        return await pending.future

    def _start_writers(self, loop: asyncio.AbstractEventLoop) -> None:
        if any(w.get_loop() is not loop for w in self._writers):
            # a store used from a new event loop (tests, CLI runs): what the old one queued is gone with it
            self._writers, self._wakeup = [], asyncio.Event()
            self._queue.clear()
        self._writers = [w for w in self._writers if not w.done()]
        while len(self._writers) < self._count:
            self._writers.append(loop.create_task(self._write_loop(), name="group-commit"))

    async def close(self) -> None:
        """Finish what is queued, then stop the writers."""
        self._closed = True
        writers, self._writers = self._writers, []
        loop = asyncio.get_running_loop()
        self._wakeup.set()
        await asyncio.gather(*(w for w in writers if not w.done() and w.get_loop() is loop))

    async def _write_loop(self) -> None:
        while await self._work():
            batch = await self._next_batch()
            again = await self._spell(batch) if batch else []
            while again:  # each alone, on a fresh connection (a lost race may send it back once)
                again += await self._spell([again.pop(0)], follow=False)

    async def _work(self, idle_s: float | None = None) -> bool:
        """Wait for queued jobs; False once the store closes, or after ``idle_s`` seconds without."""
        while not self._queue:
            if self._closed:
                return False
            self._wakeup.clear()
            try:
                async with asyncio.timeout(idle_s):
                    await self._wakeup.wait()
            except TimeoutError:
                return False
        return True

    async def _next_batch(self) -> list[_Pending[Any]]:
        # Callers that are runnable already get to queue their job before the batch is cut.
        await asyncio.sleep(0)
        batch: list[_Pending[Any]] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if not pending.future.done():  # its caller was cancelled before it ran
                batch.append(pending)
        return batch

    async def _spell(self, batch: list[_Pending[Any]], *, follow: bool = True) -> list[_Pending[Any]]:
        """Commit ``batch`` and, with ``follow``, the batches queued meanwhile, on one connection.

        Returns the jobs to run again alone: all of a batch that failed as a
        whole, and those that lost a race with another transaction.
        """
        again: list[_Pending[Any]] = []
        try:
            async with self._tx.session() as conn:
                while batch:
                    self.batches += 1
                    self.jobs += len(batch)
                    try:
                        async with self._tx.transaction(conn):
                            await self._run(conn, batch)
                    except _JobFailed as failed:  # rolled back: the others run again without it
                        pending = failed.pending
                        if not _retry(pending, failed.error):
                            _answer(pending, error=failed.error)
                        else:
                            again.append(pending)
                        batch = [p for p in batch if p is not pending]
                        continue
                    except Exception as exc:
                        if len(batch) > 1:
                            log.warning("a group commit of %d jobs failed (%s); running each alone",
                                        len(batch), type(exc).__name__)
                            return again + batch
                        _fail(batch[0], exc)
                        # the connection may be the cause: take a fresh one for what follows
                        return again + [p for p in batch if not p.future.done()]
                    for pending in batch:
                        if pending.error is not None and _retry(pending, pending.error):
                            again.append(pending)
                        else:
                            _answer(pending, result=pending.result, error=pending.error)
                    # jobs waiting for their second run go before newer batches
                    if not follow or again:
                        break
                    batch = await self._following()
                return again
        except Exception as exc:  # no connection to be had (or to give back): those not answered get why
            for pending in [*batch, *again]:
                _answer(pending, error=exc)
        return []

    async def _following(self) -> list[_Pending[Any]]:
        """The next batch for a writer holding a connection; none once no job came for ``_IDLE_S``.

        Where there are several writers, another may take the jobs that woke this one: this one
        then waits on with its connection rather than give it back, so that the next batch does
        not pay for taking one (a pool round and, on PostgreSQL, a pre-ping: three round trips).
        """
        while await self._work(_IDLE_S):
            batch = await self._next_batch()
            if batch:
                return batch
        return []

    async def _run(self, conn: AsyncConnection, batch: list[_Pending[Any]]) -> None:
        if len(batch) == 1:
            # Alone in its transaction: a failure rolls back the transaction itself, no savepoint needed
            batch[0].result = await batch[0].job(self._tx.repository(conn))
            return
        if not self._savepoints:
            for pending in batch:
                try:
                    pending.result = await pending.job(self._tx.repository(conn))
                except Exception as exc:
                    raise _JobFailed(pending, exc) from exc
            return
        await self._tx.savepoint(conn, _MARK)
        last = len(batch) - 1
        for n, pending in enumerate(batch):
            try:
                pending.result = await pending.job(self._tx.repository(conn))
            except Exception as exc:
                pending.error = exc
                await self._tx.savepoint(conn, _UNDO)
                continue
            if n < last:  # move the mark past this job; the commit releases the last one
                await self._tx.savepoint(conn, _RELEASE, _MARK)


class _JobFailed(Exception):
    """One job of a batch run without savepoints raised: the transaction must roll back."""

    def __init__(self, pending: _Pending[Any], error: Exception) -> None:
        super().__init__(f"a job of the batch failed: {type(error).__name__}")
        self.pending = pending
        self.error = error


def _retry(pending: _Pending[Any], error: BaseException) -> bool:
    """Whether a failed job gets its one more run (alone, later)."""
    if pending.retried or not isinstance(error, _RACES):
        return False
    log.info("a write job lost a race with another transaction (%s); running it again", type(error).__name__)
    pending.retried, pending.error = True, None
    return True


def _fail(pending: _Pending[Any], error: BaseException) -> None:
    """A job that failed alone in its transaction: answered, unless it gets its one more run."""
    if not _retry(pending, error):
        _answer(pending, error=error)


def _answer(pending: _Pending[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if pending.future.done():
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(result)

