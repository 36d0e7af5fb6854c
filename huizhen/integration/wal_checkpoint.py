"""SQLite WAL checkpoints in the background, not in the commit that happens to cross the limit.

With SQLite's default (``wal_autocheckpoint=1000`` pages) the commit that grows the WAL past
about 4 MB runs the checkpoint itself: it copies every page the WAL holds into the database
file and fsyncs it, while the messages of that batch wait for their ACK. As the database grows
the pages a batch touches scatter (blind-index keys are random by design), so each checkpoint
copies more pages per message. Measured with ``bench/hl7_ingest.py`` (SQLite, a database that
already holds the first level's messages, 4 senders): 772 messages/s at 1.25 ms CPU per message
with checkpoints in the commit, 926 at 1.07 ms without.

So the server's connections get a high ``wal_autocheckpoint`` (:data:`SAFETY_PAGES`: the commit
path checkpoints only if this thread fell far behind), and a :class:`Checkpointer` thread, on a
connection of its own, runs ``PRAGMA wal_checkpoint(PASSIVE)`` whenever the WAL has grown past
:data:`PAGES` since it last looked. A passive checkpoint takes no writer's lock: commits go on
appending to the WAL while it copies, and the next writer after a complete one starts the WAL
over. sqlite3 releases the GIL while it works, so on a machine with a second core the copy and
its fsync run beside the event loop. Durability is unchanged: a commit is durable when its WAL
frames are fsynced (``synchronous=FULL``), whenever they are copied later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger(__name__)

PAGES = 1000  # SQLite's own default threshold, now watched by the thread
SAFETY_PAGES = 20_000  # ~80 MB of WAL: the commit path checkpoints itself beyond this
INTERVAL_S = 0.25


class Checkpointer:
    """A daemon thread checkpointing one SQLite database's WAL; :meth:`close` stops it."""

    def __init__(self, database: str, *, pages: int = PAGES, interval_s: float = INTERVAL_S) -> None:
        self.database = database
        self.wal = f"{database}-wal"
        self.pages = pages
        self.interval_s = interval_s
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="huizhen-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        threshold = 0
        try:
            while not self._stop.wait(self.interval_s):
                if not os.path.exists(self.wal):  # not in WAL mode yet, or gone
                    continue
                if conn is None:
                    conn = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA busy_timeout=100")
                    threshold = self.pages * conn.execute("PRAGMA page_size").fetchone()[0]
                try:
                    if os.path.getsize(self.wal) < threshold:
                        continue
                except OSError:
                    continue
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
                if busy or copied < frames:
                    log.debug("WAL checkpoint incomplete", extra={"frames": frames, "copied": copied})
        except sqlite3.Error:  # the commit path still checkpoints past SAFETY_PAGES
            log.exception("WAL checkpointer stopped", extra={"database": self.database})
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
