"""Group commit against a hand-written fake of its one boundary, ``Transactions``.

The fake keeps a list of committed writes, a transaction's pending writes and
a savepoint stack, so each promise can be checked exactly: answers only after
the commit, one failing job rolled back alone, a failed commit run again job
by job, a lost race run once more, arrival order kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from huizhen.integration.group_commit import GroupCommit


@dataclass
class FakeDatabase:
    committed: list[str] = field(default_factory=list)
    pending: list[str] | None = None
    marks: list[int] = field(default_factory=list)
    commits: int = 0
    fail_commits: int = 0  # the next N commits fail (a full disk, a lost connection)
    savepoint_calls: int = 0
    sessions: int = 0  # connections taken


@dataclass
class FakeRepo:
    db: FakeDatabase

    def write(self, value: str) -> None:
        assert self.db.pending is not None, "a write outside a transaction"
        self.db.pending.append(value)


class FakeTransactions:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        self.db.sessions += 1
        yield "connection"

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Any) -> AsyncIterator[None]:
        self.db.pending, self.db.marks = [], []
        try:
            yield
            await asyncio.sleep(0)  # a commit waits for the disk: others may run meanwhile
            if self.db.fail_commits:
                self.db.fail_commits -= 1
                raise OSError("disk I/O error")
            self.db.committed += self.db.pending
            self.db.commits += 1
        finally:
            self.db.pending = None

    def repository(self, conn: Any) -> Any:
        return FakeRepo(self.db)

    async def savepoint(self, conn: Any, *statements: str) -> None:
        assert self.db.pending is not None
        for statement in statements:
            self.db.savepoint_calls += 1
            if statement.startswith("SAVEPOINT"):
                self.db.marks.append(len(self.db.pending))
            elif statement.startswith("RELEASE"):
                self.db.marks.pop()
            else:  # ROLLBACK TO: back to the mark, which stays
                del self.db.pending[self.db.marks[-1]:]


def writing(value: str, *, fail: Exception | None = None, log: list[str] | None = None) -> Any:
    async def job(repo: FakeRepo) -> str:
        if log is not None:
            log.append(value)
        repo.write(value)
        if fail is not None:
            raise fail
        return value

    return job


@pytest.fixture(params=[True, False], ids=["savepoints", "run-again"])
def group(request: pytest.FixtureRequest) -> tuple[GroupCommit, FakeDatabase]:
    db = FakeDatabase()
    return GroupCommit(FakeTransactions(db), savepoints=request.param), db  # type: ignore[arg-type]


async def test_answers_come_after_the_commit_in_arrival_order(group: tuple[GroupCommit, FakeDatabase]) -> None:
    gc, db = group

    async def caller(n: int) -> None:
        assert await gc.run(writing(f"m{n}")) == f"m{n}"
        assert f"m{n}" in db.committed  # answered only once durable

    await asyncio.gather(*(caller(n) for n in range(10)))
    assert db.committed == [f"m{n}" for n in range(10)]
    assert db.commits < 10 and gc.jobs == 10  # queued together, committed together
    await gc.close()


async def test_one_failing_job_does_not_take_the_batch_down(group: tuple[GroupCommit, FakeDatabase]) -> None:
    gc, db = group
    results = await asyncio.gather(
        gc.run(writing("a")), gc.run(writing("bad", fail=ValueError("no such order"))), gc.run(writing("c")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert db.committed == ["a", "c"]  # nothing of the failed job, everything of the others
    await gc.close()


async def test_savepoints_isolate_jobs_without_running_them_again() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db), savepoints=True)  # type: ignore[arg-type]
    runs: list[str] = []
    await asyncio.gather(
        gc.run(writing("a", log=runs)), gc.run(writing("bad", fail=ValueError(), log=runs)),
        gc.run(writing("c", log=runs)), return_exceptions=True,
    )
    assert runs == ["a", "bad", "c"] and db.commits == 1
    await gc.close()


async def test_without_savepoints_the_others_run_again_without_the_failed_one() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db), savepoints=False)  # type: ignore[arg-type]
    runs: list[str] = []
    await asyncio.gather(
        gc.run(writing("a", log=runs)), gc.run(writing("bad", fail=ValueError(), log=runs)),
        gc.run(writing("c", log=runs)), return_exceptions=True,
    )
    assert runs == ["a", "bad", "a", "c"] and db.savepoint_calls == 0
    assert db.committed == ["a", "c"]
    await gc.close()


async def test_a_failed_commit_runs_each_job_again_alone(group: tuple[GroupCommit, FakeDatabase]) -> None:
    gc, db = group
    db.fail_commits = 1
    results = await asyncio.gather(*(gc.run(writing(f"m{n}")) for n in range(4)))
    assert results == ["m0", "m1", "m2", "m3"]
    assert db.committed == ["m0", "m1", "m2", "m3"]  # each once: the failed transaction left nothing
    await gc.close()


async def test_a_commit_that_fails_alone_answers_its_error(group: tuple[GroupCommit, FakeDatabase]) -> None:
    gc, db = group
    db.fail_commits = 1
    with pytest.raises(OSError, match="disk"):
        await gc.run(writing("m"))
    assert db.committed == []
    assert await gc.run(writing("n")) == "n"  # the writer serves on
    await gc.close()


async def test_a_lost_race_runs_once_more(group: tuple[GroupCommit, FakeDatabase]) -> None:
    gc, db = group
    attempts: list[int] = []

    async def racing(repo: FakeRepo) -> str:
        attempts.append(1)
        repo.write("r")
        if len(attempts) == 1:  # another transaction took the key first
            raise IntegrityError("INSERT …", {}, Exception("unique violation"))
        return "won"

    results = await asyncio.gather(gc.run(writing("a")), gc.run(racing), gc.run(writing("c")))
    assert results == ["a", "won", "c"] and len(attempts) == 2
    assert sorted(db.committed) == ["a", "c", "r"]
    await gc.close()


async def test_a_race_lost_twice_is_answered() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await gc.run(writing("x", fail=IntegrityError("INSERT …", {}, Exception("unique violation"))))
    assert db.committed == []
    await gc.close()


async def test_a_cancelled_caller_before_its_batch_is_skipped() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db))  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(gc.run(writing("gone")))
    kept = asyncio.ensure_future(gc.run(writing("kept")))
    waiting.cancel()
    assert await kept == "kept"
    assert db.committed == ["kept"]
    await gc.close()


async def test_close_finishes_what_is_queued_and_refuses_more() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db), writers=2)  # type: ignore[arg-type]
    queued = [asyncio.ensure_future(gc.run(writing(f"m{n}"))) for n in range(5)]
    await asyncio.sleep(0)
    await gc.close()
    assert [q.result() for q in queued] == [f"m{n}" for n in range(5)]
    with pytest.raises(RuntimeError):
        await gc.run(writing("late"))


async def test_a_job_run_alone_after_a_failed_commit_may_still_lose_a_race_once() -> None:
    db = FakeDatabase(fail_commits=1)
    gc = GroupCommit(FakeTransactions(db))  # type: ignore[arg-type]
    runs: list[int] = []

    async def racing(repo: FakeRepo) -> str:
        runs.append(1)
        repo.write("r")
        if len(runs) == 2:  # its first run alone, after the batch failed
            raise IntegrityError("INSERT …", {}, Exception("unique violation"))
        return "won"

    results = await asyncio.gather(gc.run(writing("a")), gc.run(racing), gc.run(writing("c")))
    assert results == ["a", "won", "c"] and len(runs) == 3
    assert sorted(db.committed) == ["a", "c", "r"]
    await gc.close()


async def test_writers_keep_their_connections_while_jobs_keep_coming() -> None:
    db = FakeDatabase()
    gc = GroupCommit(FakeTransactions(db), writers=2)  # type: ignore[arg-type]
    for n in range(20):  # one caller, one job at a time: each wakes both writers, one takes it
        assert await gc.run(writing(f"m{n}")) == f"m{n}"
    assert db.commits == 20 and db.sessions <= 2
    await gc.close()


class NoConnection(FakeTransactions):
    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        raise ConnectionRefusedError("database down")
        yield  # pragma: no cover


async def test_without_a_connection_every_caller_learns_why() -> None:
    gc = GroupCommit(NoConnection(FakeDatabase()))  # type: ignore[arg-type]
    results = await asyncio.gather(gc.run(writing("a")), gc.run(writing("b")), return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    await gc.close()
