"""The group commit's SQLite WAL, synced to disk after the commit rather than inside it.

Why: with ``synchronous=FULL`` SQLite fsyncs the WAL inside COMMIT, while it
holds the database's one write lock, and the disk takes 1–3 ms here. Nothing
else can be written meanwhile, and since each MLLP sender waits for its ACK
before sending again, the loop mostly idles through that wait. So the group
commit's writer connection runs with ``synchronous=NORMAL`` (COMMIT writes its
WAL frames, no fsync) and its callers are answered only once :class:`WalSync`
has synced the WAL file, in a worker thread: one sync covers every commit made
before it started, and while it runs the next batch applies and commits (in
this process or, with worker processes, in another).

An answer still means "on disk" exactly as with FULL: what was acknowledged
survives a power loss. A crash between a commit and its sync loses nothing
acknowledged: that message was not answered, its sender sends it again, and the
duplicate check answers it if the commit did survive. Checkpoints under NORMAL
sync the WAL before copying it into the database. Other connections (GraphQL
writes, CLI commands) keep ``synchronous=FULL``.
"""

from __future__ import annotations

import asyncio
import collections
import os
from pathlib import Path


def _sync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # removed by the last connection's close, after its checkpoint synced the database
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class WalSync:
    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self._commits = 0  # commits made on the writer connection so far
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    def committed(self) -> asyncio.Future[None]:
        """After a commit: a future done once that commit is on disk (failed with the ``OSError`` if not)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:  # a store used from a new loop
            self._task, self._waiting = None, collections.deque()
        self._commits += 1
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((self._commits, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="wal-sync")
        return future

    async def _run(self) -> None:
        while self._waiting:
            covered = self._commits  # every commit made before the sync starts is in the file
            error: OSError | None = None
            try:
                await asyncio.to_thread(_sync, self.wal)
            except OSError as exc:
                error = exc
            while self._waiting and self._waiting[0][0] <= covered:
                _, future = self._waiting.popleft()
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def close(self) -> None:
        """Wait for the sync under way (the callers of its commits are answered)."""
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await task
