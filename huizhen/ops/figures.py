"""Figures for the operations dashboard: messages per minute from the journal, the consultation board.

Both read through a :class:`Repository`; the board keeps only the consultations
the viewer's :class:`Scope` may see (the row-level rules of ``rbac/rows.py``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from huizhen.integration import tables as t
from huizhen.integration.model import Consultation, ConsultationStatus, MessageStatus, Urgency
from huizhen.integration.repo import Repository
from huizhen.integration.sla import overdue
from huizhen.rbac.rows import Scope

OPEN = (ConsultationStatus.PENDING, ConsultationStatus.ASSIGNED, ConsultationStatus.IN_PROGRESS)
_BOARD_LIMIT = 2000  # open consultations read for the board; a platform with more needs a report, not a board


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # start of the minute, UTC
    channel: str
    received: int
    errors: int


async def messages_per_minute(repo: Repository, since: datetime, channel: str | None = None) -> list[MinuteCount]:
    """Journal arrivals per channel and minute from ``since`` on, oldest first; empty minutes left out."""
    c = t.messages.c
    minute: Any
    if repo.dialect == "sqlite":
        minute = func.strftime("%Y-%m-%dT%H:%M", c.received_at)
    else:
        minute = func.to_char(func.date_trunc("minute", func.timezone("UTC", c.received_at)), "YYYY-MM-DD\"T\"HH24:MI")
    errors = func.sum(case((c.status == MessageStatus.ERROR.value, 1), else_=0))
    q = select(minute.label("m"), c.channel, func.count(), errors).where(c.received_at >= since)
    if channel is not None:
        q = q.where(c.channel == channel)
    rows = await repo.conn.execute(q.group_by(minute, c.channel).order_by(minute))
    return [
        MinuteCount(datetime.fromisoformat(r[0]).replace(tzinfo=UTC), r[1], int(r[2]), int(r[3] or 0)) for r in rows
    ]


@dataclass
class BoardCell:
    department: str
    urgency: Urgency
    counts: dict[ConsultationStatus, int] = field(default_factory=lambda: defaultdict(int))
    oldest_waiting: datetime | None = None  # submission time of the oldest PENDING one
    overdue: int = 0  # escalated by the SLA watcher and still waiting in the phase it missed


async def consultation_board(repo: Repository, scope: Scope) -> list[BoardCell]:
    """Open consultations the viewer may see, by department and urgency (most urgent first)."""
    cells: dict[tuple[str, Urgency], BoardCell] = {}
    after: str | None = None
    seen = 0
    while seen < _BOARD_LIMIT:
        page = await repo.consultations.search(statuses=list(OPEN), first=100, after=after)
        visible = [c for c, _cursor in page.items if scope.sees_consultation(c)]
        escalations = await repo.escalations.for_consultations([c.id for c in visible])
        for c in visible:
            _count(cells, c, overdue(c.status, (phase for phase, _ in escalations[c.id])))
        seen += len(page.items)
        if not page.has_next or not page.items:
            break
        after = page.items[-1][1]
    order = {Urgency.CRITICAL: 0, Urgency.URGENT: 1, Urgency.ROUTINE: 2}
    return sorted(cells.values(), key=lambda cell: (order[cell.urgency], cell.department))


def _count(cells: dict[tuple[str, Urgency], BoardCell], c: Consultation, late: bool) -> None:
    cell = cells.setdefault((c.department, c.urgency), BoardCell(c.department, c.urgency))
    cell.counts[c.status] += 1
    cell.overdue += late
    waiting = c.submitted_at or c.created_at
    if c.status is ConsultationStatus.PENDING and waiting is not None and (
        cell.oldest_waiting is None or waiting < cell.oldest_waiting
    ):
        cell.oldest_waiting = waiting


def since_minutes(minutes: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(minutes=minutes)
