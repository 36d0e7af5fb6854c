"""The SLA watcher: a background task that escalates overdue consultations.

Every ``interval`` it looks at the consultations whose clock runs (PENDING,
ASSIGNED), and for each that :func:`sla.breach` finds overdue it claims the
escalation in the store. Only the claim that wins (one row per consultation
and clock, whatever the number of instances or restarts) appends the
ESCALATED timeline event and publishes it, so an escalation fires once. It
also refreshes each expert's average response minutes from their history,
which expert matching uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from huizhen.integration.consultations import ConsultationService
from huizhen.integration.events import EventBus
from huizhen.integration.model import Actor, ConsultationStatus, TimelineEvent
from huizhen.integration.sla import SlaTargets, breach
from huizhen.integration.store import Store

log = logging.getLogger(__name__)

ESCALATED = "ESCALATED"
SYSTEM = Actor(id="huizhen-sla", roles=("system",), facility=None, source=None)


class SlaWatcher:
    def __init__(
        self, store: Store, bus: EventBus, consultations: ConsultationService, targets: SlaTargets,
        *, interval_s: float = 30.0, clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.consultations = consultations
        self.targets = targets
        self.interval_s = interval_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> list[str]:
        """One pass; returns the ids this instance escalated."""
        now = self.clock()
        async with self.store.read() as repo:
            running = await repo.escalations.open_clocks([ConsultationStatus.PENDING, ConsultationStatus.ASSIGNED])
        escalated = []
        for c in running:
            b = breach(c, now, self.targets)
            if b is None:
                continue
            minutes = int(b.overdue.total_seconds() // 60)
            async with self.store.write() as repo:
                if not await repo.escalations.claim(c.id, b, now):
                    continue  # escalated before (by us before a restart, or by another instance)
                fresh = await repo.consultations.get(c.id)
                if fresh is None or fresh.status is not c.status:
                    continue  # moved on meanwhile: the claim rolls back with this transaction
                event = TimelineEvent(at=now, type=ESCALATED, actor=SYSTEM.id,
                                      detail=f"{b.phase} overdue by {minutes} min ({c.urgency.value})")
                fresh.timeline.append(event)
                await repo.consultations.save(fresh)
            await self.consultations.publish(fresh, event)
            log.warning("consultation escalated", extra={"consultation": c.number, "phase": b.phase})
            escalated.append(c.id)
        await self._refresh_response_times()
        return escalated

    async def _refresh_response_times(self) -> None:
        """Write the averages that moved; most passes change nothing and take no write lock."""
        async with self.store.read() as repo:
            averages = await repo.escalations.expert_response_minutes()
            stored = {p.id: p.avg_response_minutes for p in await repo.directory.practitioners_by_ids(list(averages))}
        moved = {pid: minutes for pid, minutes in averages.items() if stored.get(pid) != minutes}
        if moved:
            async with self.store.write() as repo:
                await repo.directory.set_response_minutes(moved)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sla-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a failed pass is logged and retried next interval; the task never dies
                log.exception("SLA watcher pass failed")
            await asyncio.sleep(self.interval_s)
