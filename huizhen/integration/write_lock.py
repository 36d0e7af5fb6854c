"""A write lock shared by the processes that serve one SQLite database.

Why: SQLite has one writer. Within a process the store serialises its writers
with an asyncio lock; with several processes (``mllp_workers``, ``http_workers``) each would
otherwise meet the others in ``BEGIN IMMEDIATE``, whose busy handler sleeps
*on the event loop thread* (and in growing steps), so a process waiting to
write could not even parse its next message. Here the wait happens in a
worker thread on an advisory lock file (``flock``), the loop keeps serving,
and ``BEGIN IMMEDIATE`` then finds the database free. Processes that do not
take this lock (a CLI command) still meet the busy timeout, as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path


class FileWriteLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    async def acquire(self) -> None:
        try:  # uncontended: no thread hand-off
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, self._fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # the thread goes on waiting: whatever it takes must be given back, or no process writes again
            waiting.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self.release())
            raise

    def release(self) -> None:
        """Give the lock back; may run on another thread (the commit's), and again (a no-op then)."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
