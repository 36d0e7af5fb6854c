"""Row filters in SQL: which consultations and patients a list query may count and return.

The rules themselves are written once, in :mod:`huizhen.rbac.rows` (``Scope``);
``Scope.consultation_rows()``/``Scope.patient_rows()`` translate a viewer's
scope into these plain filters, and the repositories turn them into a WHERE
clause so that pages and ``totalCount`` only ever see visible rows. Values
are bound parameters, never SQL text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, false, or_, select, true

from huizhen.integration import tables as t
from huizhen.integration.model import ConsultationStatus


@dataclass(frozen=True, slots=True)
class ConsultationRows:
    everything: bool = False
    facility_ids: tuple[str, ...] = ()  # consultations of these facilities
    expert_id: str | None = None  # assigned to this expert
    queue_department: str | None = None  # PENDING in this department
    requester_id: str | None = None
    patient_id: str | None = None
    patient_ids: tuple[str, ...] = ()  # break-glass: every consultation of these patients


@dataclass(frozen=True, slots=True)
class PatientRows:
    everything: bool = False
    patient_id: str | None = None
    facility_ids: tuple[str, ...] = ()
    via: ConsultationRows | None = None  # patients of the consultations visible this way
    patient_ids: tuple[str, ...] = ()  # break-glass: these patients


def _value(name: str, value: Any) -> Any:
    return value


def _values(column: Any, name: str, values: Any) -> Any:
    return column.in_(values)


def consultation_condition(
    rows: ConsultationRows, value: Callable[[str, Any], Any] = _value,
    values: Callable[[Any, str, Any], Any] = _values,
) -> Any:
    """The rows' rule as a WHERE clause. ``value(field, v)`` and ``values(column, field, vs)`` make
    the SQL of a field's value and of ``column IN`` a list field's values: by default the values
    themselves; a statement built once for every viewer with the same fields set (the work-list's
    search) passes bound parameters instead, so the rule is written here alone."""
    if rows.everything:
        return true()
    c = t.consultations.c
    terms: list[Any] = []
    if rows.facility_ids:
        terms.append(values(c.facility_id, "facility_ids", rows.facility_ids))
    if rows.expert_id is not None:
        terms.append(c.expert_id == value("expert_id", rows.expert_id))
    if rows.queue_department is not None:
        terms.append(and_(c.status == ConsultationStatus.PENDING.value,
                          c.department == value("queue_department", rows.queue_department)))
    if rows.requester_id is not None:
        terms.append(c.requester_id == value("requester_id", rows.requester_id))
    if rows.patient_id is not None:
        terms.append(c.patient_id == value("patient_id", rows.patient_id))
    if rows.patient_ids:
        terms.append(values(c.patient_id, "patient_ids", rows.patient_ids))
    return or_(*terms) if terms else false()


def visible_patient_ids(rows: PatientRows) -> Any:
    """The ids of the patients ``rows`` lets through, as a subquery for ``patient_id IN (...)``."""
    return select(t.patients.c.id).where(patient_condition(rows))


def patient_condition(rows: PatientRows) -> Any:
    if rows.everything:
        return true()
    p = t.patients.c
    terms: list[Any] = []
    if rows.patient_id is not None:
        terms.append(p.id == rows.patient_id)
    if rows.patient_ids:
        terms.append(p.id.in_(rows.patient_ids))
    if rows.facility_ids:
        terms.append(p.facility_id.in_(rows.facility_ids))
    if rows.via is not None:
        via = consultation_condition(rows.via)
        terms.append(p.id.in_(select(t.consultations.c.patient_id).where(via)))
    return or_(*terms) if terms else false()
