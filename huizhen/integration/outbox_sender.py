"""The loop every outbound channel shares: claim due outbox rows by lease, attempt each, repeat.

A subclass says which outbox channels it serves and how one message is sent
(:meth:`OutboxSender.attempt`); the lease keeps two instances from sending one
row twice, and a failed round is logged and retried, so the rows wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from huizhen.integration.model import OutboundMessage
from huizhen.integration.store import Store

log = logging.getLogger(__name__)


class OutboxSender:
    name = "outbox"  # the task's name and the log's word for this sender

    def __init__(
        self, store: Store, channels: list[str], *, poll_s: float, lease: timedelta,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.poll_s = poll_s
        self.lease = lease
        self.clock = clock or (lambda: datetime.now(UTC))
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Look for due messages now (after a completion), rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:  # the loop must outlive a database hiccup; the rows wait
                log.exception("%s: a round failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def send_due(self) -> int:
        """Send every due message once; returns how many were attempted."""
        if not self.channels:
            return 0
        async with self.store.write() as repo:
            due = await repo.outbox.claim_due(self.clock(), lease=self.lease, channels=self.channels)
        for message in due:
            await self.attempt(message)
        return len(due)

    async def attempt(self, m: OutboundMessage) -> None:
        raise NotImplementedError
