"""Pieces every consultation-request message shares: which order code is one,
the diagnosis, the complaint, the requesting doctor, and the command itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from huizhen.integration.commands import UNRESOLVED, PatientRef, RequestConsultation
from huizhen.integration.model import (
    Coding,
    Consultation,
    HumanName,
    Identifier,
    Practitioner,
    Urgency,
)
from huizhen.mappings.codes import ConsultationOrder

from .context import Scope
from .datatypes import coding, codings, person_name
from .errors import ErrorLocation, MappingError
from .parse import Composite, Segment
from .tables import ErrorCode


def consultation_order(candidates: Iterable[Coding], scope: Scope) -> ConsultationOrder | None:
    """The consultation_orders.csv row for the first code (or text) the table knows."""
    orders = scope.tables.consultation_orders
    for candidate in candidates:
        for key in (candidate.code, candidate.display):
            found = orders.get(scope.facility_code, key) if key else None
            if found is not None:
                return found
    return None


def order_codes(segments: Iterable[Segment], field: int) -> list[Coding]:
    return [c for s in segments for rep in s.repetitions(field) for c in codings(rep)]


def diagnosis(diagnoses: Sequence[Segment], reasons: Sequence[Composite]) -> tuple[Coding | None, str | None]:
    """The first DG1-3 (its name from DG1-4 when the code has none), else a reason code."""
    for dg1 in diagnoses:
        found = coding(dg1.first(3))
        if found is not None:
            return found, found.display or dg1.get(4) or None
    for reason in reasons:
        found = coding(reason)
        if found is not None:
            return found, found.display
    return None, None


def complaint(clinical_info: str, notes: Sequence[Segment], fallback: str | None) -> tuple[str, str | None]:
    """Chief complaint and question: the clinical info and the notes, else the notes alone."""
    note_text = "\n".join(t for t in (n.text(3) for n in notes) if t) or None
    if clinical_info:
        return clinical_info, note_text
    return note_text or fallback or "", None


def practitioner(rep: Composite, scope: Scope) -> Practitioner | None:
    """XCN: id (XCN-1, assigning authority XCN-9), then the name from XCN-2 on."""
    name = person_name([rep.shifted(1)])  # XCN-2.. is laid out as an XPN
    if name is None and not rep.get(1):
        return None
    ids = [Identifier(_xcn_system(rep) or scope.default_system(), rep.get(1))] if rep.get(1) else []
    return Practitioner(name=name or HumanName(), identifiers=ids)


def request(
    scope: Scope,
    *,
    patient: PatientRef,
    order: Identifier,
    department: str | None,
    department_location: ErrorLocation,
    urgency: Urgency,
    disease: tuple[Coding | None, str | None],
    complaint_and_question: tuple[str, str | None],
    requester: Practitioner | None,
    order_codes: Sequence[Coding] = (),
) -> RequestConsultation:
    if not department:
        raise MappingError(
            "the consultation's target department is unknown: give the order code a "
            "department in consultation_orders.csv, or send it here",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=department_location,
        )
    chief_complaint, question = complaint_and_question
    if not chief_complaint:
        scope.warn(None, "no chief complaint in OBR-13, NTE or PV2-3", ErrorCode.REQUIRED_FIELD_MISSING)
    code, name = disease
    consultation = Consultation(
        patient_id=UNRESOLVED,
        department=department,
        urgency=urgency,
        chief_complaint=chief_complaint,
        disease_code=code.code if code else None,
        disease_name=name,
        question=question,
        source_order=order,
        order_codes=tuple(order_codes),
    )
    return RequestConsultation(consultation, patient, requester, scope.facility_code)


def _xcn_system(rep: Composite) -> str:
    namespace, universal = rep.get(9, 1), rep.get(9, 2)
    return namespace or (f"urn:oid:{universal}" if universal else "")
