"""Response-time targets and platform figures, over consultations with known clocks."""

from datetime import UTC, datetime, timedelta

import pytest

from huizhen.integration.model import Consultation, ConsultationStatus, Urgency
from huizhen.integration.sla import SlaTargets, breach, platform_stats, within_sla

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
TARGETS = SlaTargets.minutes(assign={"CRITICAL": 5, "URGENT": 15, "ROUTINE": 1440},
                             start={"CRITICAL": 10, "URGENT": 60, "ROUTINE": 2880})
S = ConsultationStatus


def _c(status: S, urgency: Urgency = Urgency.CRITICAL, assign: float | None = None, start: float | None = None,
       complete: float | None = None, department: str = "心血管内科", facility: str = "fac-a") -> Consultation:
    at = lambda m: T0 + timedelta(minutes=m) if m is not None else None  # noqa: E731
    return Consultation(patient_id="p", department=department, urgency=urgency, chief_complaint="胸痛",
                        status=status, submitted_at=T0, assigned_at=at(assign), started_at=at(start),
                        completed_at=at(complete), facility_id=facility)


def test_pending_breaches_after_its_assignment_target() -> None:
    c = _c(S.PENDING)
    assert breach(c, T0 + timedelta(minutes=5), TARGETS) is None
    b = breach(c, T0 + timedelta(minutes=7), TARGETS)
    assert b is not None and b.phase == "assignment" and b.overdue == timedelta(minutes=2)
    assert breach(_c(S.PENDING, Urgency.ROUTINE), T0 + timedelta(hours=23), TARGETS) is None


def test_assigned_breaches_after_its_start_target() -> None:
    c = _c(S.ASSIGNED, assign=3)
    assert breach(c, T0 + timedelta(minutes=12), TARGETS) is None
    b = breach(c, T0 + timedelta(minutes=14), TARGETS)
    assert b is not None and b.phase == "start" and b.due_at == T0 + timedelta(minutes=13)


def test_no_breach_once_started_or_ended() -> None:
    for status in (S.IN_PROGRESS, S.COMPLETED, S.CANCELLED, S.DRAFT):
        assert breach(_c(status, assign=1, start=2), T0 + timedelta(days=9), TARGETS) is None


def test_within_sla() -> None:
    assert within_sla(_c(S.PENDING), TARGETS) is None
    assert within_sla(_c(S.COMPLETED, assign=4, start=10, complete=30), TARGETS) is True
    assert within_sla(_c(S.COMPLETED, assign=6, start=10, complete=30), TARGETS) is False
    assert within_sla(_c(S.IN_PROGRESS, assign=1, start=20), TARGETS) is False


def test_platform_stats_overall_and_grouped() -> None:
    rows = [
        _c(S.COMPLETED, assign=2, start=5, complete=60),
        _c(S.COMPLETED, assign=4, start=8, complete=120, department="神经内科"),
        _c(S.COMPLETED, assign=10, start=12, complete=90, facility="fac-b"),
        _c(S.CANCELLED),
        _c(S.PENDING),
        _c(S.DRAFT),  # never asked of anyone: not counted
    ]
    stats = platform_stats(rows, TARGETS, facility_name={"fac-a": "石桥镇卫生院", "fac-b": "东城区"}.get)
    o = stats.overall
    assert o.total == 5
    assert o.by_status == {"PENDING": 1, "ASSIGNED": 0, "IN_PROGRESS": 0, "COMPLETED": 3, "CANCELLED": 1}
    assert o.median_minutes_to_assign == 4 and o.p90_minutes_to_assign == 10
    assert o.median_minutes_to_complete == 90 and o.p90_minutes_to_complete == 120
    assert o.completion_rate == 0.75
    assert o.within_sla_share == pytest.approx(2 / 3, abs=1e-4)
    assert [f.key for f in stats.by_department] == ["心血管内科", "神经内科"]
    assert [(f.key, f.total) for f in stats.by_facility] == [("东城区", 1), ("石桥镇卫生院", 4)]


def test_empty_stats_have_no_figures() -> None:
    o = platform_stats([], TARGETS).overall
    assert o.total == 0 and o.median_minutes_to_assign is None and o.completion_rate is None
