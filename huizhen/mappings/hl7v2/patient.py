"""PID → Patient, PV1 → Encounter: shared by the ADT, ORU and order mappings."""

from __future__ import annotations

from datetime import date

from huizhen.integration.commands import UNRESOLVED, PatientRef
from huizhen.integration.model import Encounter, Gender, HumanName, Patient

from .context import Scope
from .datatypes import (
    address_text,
    cx_identifiers,
    datetime_at,
    parse_date,
    person_name,
    phone_text,
)
from .errors import ErrorLocation, MappingError
from .parse import Hl7Message, Segment
from .tables import ErrorCode


def required_segment(message: Hl7Message, name: str) -> Segment:
    segment = message.first(name)
    if segment is None:
        raise MappingError(
            f"{message.header.message_code} has no {name} segment",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location=ErrorLocation(name),
        )
    return segment


def patient_identifiers(pid: Segment, scope: Scope) -> PatientRef:
    """PID-3 (PID-2 when PID-3 is empty), each with its assigning authority."""
    found = cx_identifiers(pid.repetitions(3), scope.default_system)
    found = found or cx_identifiers(pid.repetitions(2), scope.default_system)
    if not found:
        raise MappingError(
            "PID-3 holds no patient identifier",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=pid.location(3),
        )
    return tuple(found)


def map_patient(pid: Segment, scope: Scope) -> Patient:
    name = person_name(pid.repetitions(5))
    if name is None:
        scope.warn(pid.location(5), "PID-5 holds no name", ErrorCode.REQUIRED_FIELD_MISSING)
    phones = [phone_text(rep) for rep in pid.repetitions(13) + pid.repetitions(40)]
    addresses = [address_text(rep) for rep in pid.repetitions(11)]
    return Patient(
        name=name or HumanName(),
        identifiers=list(patient_identifiers(pid, scope)),
        gender=_gender(pid, scope),
        birth_date=_birth_date(pid, scope),
        phone=next((p for p in phones if p), None),
        address=next((a for a in addresses if a), None),
    )


def _gender(pid: Segment, scope: Scope) -> Gender | None:
    value = pid.get(8)
    if not value:
        return None
    gender = scope.tables.genders.get(scope.facility_code, value)
    if gender is None:
        scope.warn(pid.location(8), f"sex {value!r} is not in genders.csv")
    return gender


def _birth_date(pid: Segment, scope: Scope) -> date | None:
    """PID-7; an unreadable date (00000000, 01/10/1948) is left out with a warning."""
    value = pid.get(7)
    if not value:
        return None
    try:
        born, partial = parse_date(value)
    except ValueError:
        scope.warn(pid.location(7), f"PID-7 {value!r} is not an HL7 date: left out", ErrorCode.DATA_TYPE_ERROR)
        return None
    if partial:
        scope.warn(
            pid.location(7),
            f"PID-7 {value!r} is a partial date, stored as {born.isoformat()}",
            ErrorCode.DATA_TYPE_ERROR,
        )
    return born


def map_encounter(pv1: Segment, scope: Scope, status: str) -> Encounter | None:
    """PV1 → Encounter, keyed by the visit number (PV1-19); ``None`` without one."""
    visit = cx_identifiers(pv1.repetitions(19), scope.default_system)
    if not visit:
        scope.warn(
            pv1.location(19),
            "PV1-19 has no visit number: no encounter recorded",
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
        return None
    return Encounter(
        patient_id=UNRESOLVED,
        identifiers=visit,
        status=status,
        class_code=_encounter_class(pv1, scope),
        department=scope.department(pv1.get(10), pv1.location(10)),
        location="/".join(p for p in (pv1.get(3, 1), pv1.get(3, 2), pv1.get(3, 3)) if p) or None,
        start=datetime_at(pv1, 44, scope.timezone),
        end=datetime_at(pv1, 45, scope.timezone),
    )


def _encounter_class(pv1: Segment, scope: Scope) -> str | None:
    value = pv1.get(2)
    if not value:
        return None
    found = scope.tables.patient_classes.get(scope.facility_code, value)
    if found is None:
        scope.warn(pv1.location(2), f"patient class {value!r} is not in patient_classes.csv")
    return found or value
