"""Operations fields for the dashboard: messages per minute, the consultation board, a message's raw content.

Casbin permissions guard each field (``channel read``, ``message read``,
``consultation read``; the board's rows are filtered by :class:`Scope`); raw
content needs ``message raw`` and every view of it, allowed or not, is audited.
"""

from __future__ import annotations

import strawberry

from huizhen.graphql.guard import can
from huizhen.graphql.journal import Message
from huizhen.graphql.types import Info, Urgency, iso
from huizhen.integration import model as m
from huizhen.integration.errors import BadInput
from huizhen.ops.figures import consultation_board, messages_per_minute, since_minutes

MAX_MINUTES = 24 * 60


@strawberry.type
class MessageRatePoint:
    minute: str = strawberry.field(description="Start of the minute (ISO 8601).")
    channel: str
    received: int
    errors: int


@strawberry.type
class BoardCell:
    department: str
    urgency: Urgency
    pending: int
    assigned: int
    in_progress: int
    oldest_waiting_since: str | None = strawberry.field(
        description="Submission time of the oldest PENDING consultation in this cell."
    )
    overdue: int = strawberry.field(
        default=0, description="Consultations escalated by the SLA watcher and still waiting (see `overdue`)."
    )


@strawberry.type
class OperationsQuery:
    @strawberry.field(description="Journal arrivals per channel and minute (empty minutes left out), oldest first.",
                      permission_classes=can("channel", "read"))
    async def message_rate(self, info: Info, minutes: int = 60, channel: str | None = None) -> list[MessageRatePoint]:
        if not 1 <= minutes <= MAX_MINUTES:
            raise BadInput(f"minutes must be between 1 and {MAX_MINUTES}")
        async with info.context.services.store.read() as repo:
            counts = await messages_per_minute(repo, since_minutes(minutes), channel)
        return [MessageRatePoint(minute=iso(c.minute, info) or "", channel=c.channel, received=c.received,
                                 errors=c.errors) for c in counts]

    @strawberry.field(description="One journaled message by id.", permission_classes=can("message", "read"))
    async def message(self, info: Info, id: strawberry.ID) -> Message | None:
        async with info.context.services.store.read() as repo:
            found = await repo.journal.get(str(id))
        return Message(_m=found) if found else None

    @strawberry.field(description="Open consultations the viewer may see, by department and urgency.",
                      permission_classes=can("consultation", "read"))
    async def consultation_board(self, info: Info) -> list[BoardCell]:
        scope = await info.context.scope()
        async with info.context.services.store.read() as repo:
            cells = await consultation_board(repo, scope)
        S = m.ConsultationStatus
        return [
            BoardCell(
                department=c.department, urgency=Urgency(c.urgency.value), pending=c.counts[S.PENDING],
                assigned=c.counts[S.ASSIGNED], in_progress=c.counts[S.IN_PROGRESS],
                oldest_waiting_since=iso(c.oldest_waiting, info), overdue=c.overdue,
            )
            for c in cells
        ]
