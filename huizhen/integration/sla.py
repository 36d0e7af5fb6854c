"""Response-time targets of consultations, and the platform's figures built on them.

Two clocks run per consultation, each with a target per urgency (settings):
*assignment* from submission to an expert being assigned, and *start* from
assignment to the consultation starting. :func:`breach` tells whether a
consultation is overdue now (what the escalation task acts on);
:func:`within_sla` whether it met its targets (what the platform reports).
:func:`platform_stats` is the provincial report: counts by status, median and
p90 times to assignment and to completion, completion rate and share within
SLA, overall and per department and per facility. All pure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from huizhen.integration.model import Consultation, ConsultationStatus, Urgency

S = ConsultationStatus


@dataclass(frozen=True, slots=True)
class SlaTargets:
    assign: Mapping[Urgency, timedelta]
    start: Mapping[Urgency, timedelta]

    @classmethod
    def minutes(cls, assign: Mapping[str, float], start: Mapping[str, float]) -> SlaTargets:
        return cls(
            assign={Urgency(k): timedelta(minutes=v) for k, v in assign.items()},
            start={Urgency(k): timedelta(minutes=v) for k, v in start.items()},
        )


@dataclass(frozen=True, slots=True)
class Breach:
    phase: str  # "assignment" | "start"
    due_at: datetime
    overdue: timedelta


def breach(c: Consultation, now: datetime, targets: SlaTargets) -> Breach | None:
    """The clock that has run out for ``c`` at ``now``, if any."""
    if c.status is S.PENDING and c.submitted_at and c.urgency in targets.assign:
        due = c.submitted_at + targets.assign[c.urgency]
        return Breach("assignment", due, now - due) if now > due else None
    if c.status is S.ASSIGNED and c.assigned_at and c.urgency in targets.start:
        due = c.assigned_at + targets.start[c.urgency]
        return Breach("start", due, now - due) if now > due else None
    return None


PHASE_OF = {S.PENDING: "assignment", S.ASSIGNED: "start"}  # the clock that runs in each state


def overdue(status: S, escalated_phases: Iterable[str]) -> bool:
    """Escalated for the clock that is still running: unassigned past its target, or not started."""
    phase = PHASE_OF.get(status)
    return phase is not None and phase in set(escalated_phases)


def within_sla(c: Consultation, targets: SlaTargets) -> bool | None:
    """Whether the clocks that have stopped stopped in time; None when none has stopped yet."""
    verdicts = []
    if c.submitted_at and c.assigned_at and c.urgency in targets.assign:
        verdicts.append(c.assigned_at - c.submitted_at <= targets.assign[c.urgency])
    if c.assigned_at and c.started_at and c.urgency in targets.start:
        verdicts.append(c.started_at - c.assigned_at <= targets.start[c.urgency])
    return all(verdicts) if verdicts else None


@dataclass(frozen=True, slots=True)
class Figures:
    key: str | None  # the department or facility these figures are for; None overall
    total: int
    by_status: dict[str, int]
    median_minutes_to_assign: float | None
    p90_minutes_to_assign: float | None
    median_minutes_to_complete: float | None
    p90_minutes_to_complete: float | None
    completion_rate: float | None  # completed / (completed + cancelled)
    within_sla_share: float | None  # among those with a stopped clock


@dataclass(frozen=True, slots=True)
class PlatformStats:
    overall: Figures
    by_department: tuple[Figures, ...]
    by_facility: tuple[Figures, ...]


def platform_stats(
    consultations: Iterable[Consultation], targets: SlaTargets,
    facility_name: Callable[[str | None], str | None] = lambda f: f,
) -> PlatformStats:
    rows = [c for c in consultations if c.status is not S.DRAFT]  # a draft was never asked of anyone
    return PlatformStats(
        overall=_figures(None, rows, targets),
        by_department=_grouped(rows, targets, lambda c: c.department),
        by_facility=_grouped(rows, targets, lambda c: facility_name(c.facility_id)),
    )


def _grouped(
    rows: list[Consultation], targets: SlaTargets, key: Callable[[Consultation], str | None]
) -> tuple[Figures, ...]:
    groups: dict[str, list[Consultation]] = {}
    for c in rows:
        groups.setdefault(key(c) or "unknown", []).append(c)
    return tuple(_figures(k, groups[k], targets) for k in sorted(groups))


def _figures(key: str | None, rows: list[Consultation], targets: SlaTargets) -> Figures:
    by_status = {s.value: 0 for s in S if s is not S.DRAFT}
    for c in rows:
        by_status[c.status.value] += 1
    to_assign = [_minutes(c.assigned_at - c.submitted_at) for c in rows if c.assigned_at and c.submitted_at]
    to_complete = [_minutes(c.completed_at - c.submitted_at) for c in rows if c.completed_at and c.submitted_at]
    ended = by_status[S.COMPLETED.value] + by_status[S.CANCELLED.value]
    verdicts = [v for v in (within_sla(c, targets) for c in rows) if v is not None]
    return Figures(
        key=key, total=len(rows), by_status=by_status,
        median_minutes_to_assign=_median(to_assign), p90_minutes_to_assign=_p90(to_assign),
        median_minutes_to_complete=_median(to_complete), p90_minutes_to_complete=_p90(to_complete),
        completion_rate=round(by_status[S.COMPLETED.value] / ended, 4) if ended else None,
        within_sla_share=round(sum(verdicts) / len(verdicts), 4) if verdicts else None,
    )


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _p90(values: list[float]) -> float | None:
    """Nearest-rank p90: a value that occurred, as reports quote it."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, -(-9 * len(ordered) // 10) - 1)], 2)
