"""The consultation state machine and its timeline.

    DRAFT → PENDING → ASSIGNED → IN_PROGRESS → COMPLETED
    ASSIGNED → PENDING            (the expert declines)
    any non-terminal → CANCELLED  (with a reason)

Every transition appends a :class:`TimelineEvent`; a forbidden one raises
:class:`InvalidTransition` naming the current state and the transition. These
are pure functions on the model: the service layer persists and publishes.
"""

from __future__ import annotations

import enum
from datetime import datetime

from huizhen.integration.errors import BadInput, InvalidTransition
from huizhen.integration.model import Consultation, ConsultationStatus, TimelineEvent

S = ConsultationStatus


class Transition(enum.StrEnum):
    SUBMIT = "submit"
    ASSIGN = "assign"
    DECLINE = "decline"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"


class TimelineType(enum.StrEnum):
    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    ASSIGNED = "ASSIGNED"
    DECLINED = "DECLINED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    # not transitions: the video call and its pre-call network check (huizhen/adapters/signaling.py)
    CALL_JOINED = "CALL_JOINED"
    CALL_LEFT = "CALL_LEFT"
    NETWORK_CHECK = "NETWORK_CHECK"


# transition -> (states it may start from, state it leads to, timeline type)
_TABLE: dict[Transition, tuple[frozenset[S], S, TimelineType]] = {
    Transition.SUBMIT: (frozenset({S.DRAFT}), S.PENDING, TimelineType.SUBMITTED),
    Transition.ASSIGN: (frozenset({S.PENDING}), S.ASSIGNED, TimelineType.ASSIGNED),
    Transition.DECLINE: (frozenset({S.ASSIGNED}), S.PENDING, TimelineType.DECLINED),
    Transition.START: (frozenset({S.ASSIGNED}), S.IN_PROGRESS, TimelineType.STARTED),
    Transition.COMPLETE: (frozenset({S.IN_PROGRESS}), S.COMPLETED, TimelineType.COMPLETED),
    Transition.CANCEL: (
        frozenset({S.DRAFT, S.PENDING, S.ASSIGNED, S.IN_PROGRESS}),
        S.CANCELLED,
        TimelineType.CANCELLED,
    ),
}


def allowed_transitions(status: S) -> list[Transition]:
    return [t for t, (sources, _, _) in _TABLE.items() if status in sources]


def created(c: Consultation, *, at: datetime, actor: str | None) -> TimelineEvent:
    c.created_at = at
    event = TimelineEvent(at=at, type=TimelineType.CREATED, actor=actor, detail=c.number or None)
    c.timeline.append(event)
    return event


def apply(
    c: Consultation,
    transition: Transition,
    *,
    at: datetime,
    actor: str | None,
    detail: str | None = None,
    expert_id: str | None = None,
    diagnosis: str | None = None,
    treatment_plan: str | None = None,
) -> TimelineEvent:
    """Move ``c`` through ``transition`` in place and return the timeline event."""
    sources, target, event_type = _TABLE[transition]
    if c.status not in sources:
        raise InvalidTransition(c.status, transition)
    match transition:
        case Transition.SUBMIT:
            c.submitted_at = at
        case Transition.ASSIGN:
            if not expert_id:
                raise BadInput("assign needs an expert")
            c.expert_id = expert_id
            c.assigned_at = at
            detail = detail or expert_id
        case Transition.DECLINE:
            _require(detail, "a reason for declining")
            c.expert_id = None
            c.assigned_at = None
        case Transition.START:
            c.started_at = at
        case Transition.COMPLETE:
            c.diagnosis = _require(diagnosis, "a diagnosis")
            c.treatment_plan = _require(treatment_plan, "a treatment plan")
            c.completed_at = at
        case Transition.CANCEL:
            c.cancel_reason = _require(detail, "a reason for cancelling")
            c.cancelled_at = at
    c.status = target
    event = TimelineEvent(at=at, type=event_type, actor=actor, detail=detail)
    c.timeline.append(event)
    return event


def _require(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise BadInput(f"{what} is required")
    return value.strip()
