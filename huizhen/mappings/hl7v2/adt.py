"""ADT → patients and visits: register/admit/update, discharge, merge."""

from __future__ import annotations

from huizhen.integration.commands import (
    Command,
    DischargeEncounter,
    MergePatients,
    UpsertEncounter,
    UpsertPatient,
)

from .context import MappingContext, MappingResult, Scope
from .datatypes import cx_identifiers, datetime_at
from .errors import ErrorLocation, MappingError
from .parse import Hl7Message, Segment
from .patient import map_encounter, map_patient, patient_identifiers, required_segment
from .tables import ErrorCode

# Trigger → the FHIR status of the visit it reports (A08 is read from PV1 instead).
VISIT_EVENTS = {"A01": "in-progress", "A04": "in-progress", "A05": "planned", "A08": None}
PERSON_EVENTS = frozenset({"A28", "A31"})


def map_admit_visit(message: Hl7Message, context: MappingContext) -> MappingResult:
    """A01/A04/A05/A08: the patient, and the visit PV1 describes."""
    scope = Scope(message, context)
    pid = required_segment(message, "PID")
    patient = map_patient(pid, scope)
    commands: list[Command] = [UpsertPatient(patient, scope.facility_code)]
    pv1 = message.first("PV1")
    if pv1 is not None:
        status = VISIT_EVENTS.get(message.header.trigger_event) or _status_from_pv1(pv1)
        encounter = map_encounter(pv1, scope, status)
        if encounter is not None:
            commands.append(UpsertEncounter(encounter, tuple(patient.identifiers), scope.facility_code))
    return scope.result(commands)


def map_person(message: Hl7Message, context: MappingContext) -> MappingResult:
    """A28/A31: person information only; any PV1 is a placeholder and is ignored."""
    scope = Scope(message, context)
    patient = map_patient(required_segment(message, "PID"), scope)
    return scope.result([UpsertPatient(patient, scope.facility_code)])


def map_discharge(message: Hl7Message, context: MappingContext) -> MappingResult:
    """A03: the visit ends at PV1-45, else EVN-6 (event occurred), else EVN-2."""
    scope = Scope(message, context)
    patient = map_patient(required_segment(message, "PID"), scope)
    pv1 = required_segment(message, "PV1")
    visit = cx_identifiers(pv1.repetitions(19), scope.default_system)
    if not visit:
        raise MappingError(
            "A03 names no visit to discharge: PV1-19 is empty",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=pv1.location(19),
        )
    end = datetime_at(pv1, 45, scope.timezone)
    evn = message.first("EVN")
    if end is None and evn is not None:
        end = datetime_at(evn, 6, scope.timezone) or datetime_at(evn, 2, scope.timezone)
    return scope.result(
        [
            UpsertPatient(patient, scope.facility_code),
            DischargeEncounter(tuple(patient.identifiers), tuple(visit), end),
        ]
    )


def map_merge(message: Hl7Message, context: MappingContext) -> MappingResult:
    """A40: each PID (the survivor) with the MRG that follows it (the merged record)."""
    scope = Scope(message, context)
    commands: list[Command] = []
    survivor: Segment | None = None
    for segment in message:
        if segment.name == "PID":
            survivor = segment
        elif segment.name == "MRG" and survivor is not None:
            commands.append(_merge(survivor, segment, scope))
            survivor = None
    if not commands:
        raise MappingError(
            "A40 has no PID followed by an MRG segment",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location=ErrorLocation("MRG"),
        )
    return scope.result(commands)


def _merge(pid: Segment, mrg: Segment, scope: Scope) -> MergePatients:
    merged = cx_identifiers(mrg.repetitions(1), scope.default_system)
    if not merged:
        raise MappingError(
            "MRG-1 holds no prior patient identifier",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=mrg.location(1),
        )
    return MergePatients(patient_identifiers(pid, scope), tuple(merged))


def _status_from_pv1(pv1: Segment) -> str:
    if pv1.get(45):
        return "finished"
    return "in-progress" if pv1.get(44) else "planned"
