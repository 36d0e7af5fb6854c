"""ORU^R01 → observations, per order group, with the placer order as consultation link."""

from __future__ import annotations

from dataclasses import dataclass, field

from huizhen.integration.commands import (
    UNRESOLVED,
    AddObservations,
    Command,
    PatientRef,
    UpsertPatient,
)
from huizhen.integration.model import Coding, Identifier, Observation
from huizhen.mappings.codes import LabCodes

from .context import MappingContext, MappingResult, Scope
from .datatypes import LOINC, codings, datetime_at, ei_identifier
from .delimiters import Delimiters
from .errors import ErrorLocation, MappingError
from .parse import Hl7Message, Segment
from .patient import map_patient
from .tables import ErrorCode
from .values import TEXT_TYPES, observation_value, reference_range

# HL7 table 0085 (OBX-11) → FHIR observation-status.
RESULT_STATUS = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}


@dataclass(slots=True)
class _OrderGroup:
    patient: PatientRef
    order: Identifier | None
    obr: Segment | None
    results: list[Segment] = field(default_factory=list)


def map_results(message: Hl7Message, context: MappingContext) -> MappingResult:
    """Each PID upserts its patient; each OBR's OBX segments become one AddObservations."""
    scope = Scope(message, context)
    plan: list[Command | _OrderGroup] = []
    patient: PatientRef | None = None
    orc: Segment | None = None
    group: _OrderGroup | None = None
    for segment in message:
        if segment.name == "PID":
            upsert = UpsertPatient(map_patient(segment, scope), scope.facility_code)
            patient, group = tuple(upsert.patient.identifiers), None
            plan.append(upsert)
        elif segment.name == "ORC":
            orc = segment
        elif segment.name == "OBR" and patient is not None:
            group = _OrderGroup(patient, _placer_order(orc, segment, scope), segment)
            plan.append(group)
            orc = None
        elif segment.name == "OBX" and patient is not None:
            if group is None:
                group = _OrderGroup(patient, None, None)
                plan.append(group)
            group.results.append(segment)
    if patient is None:
        raise MappingError(
            "ORU^R01 has no PID segment",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
            location=ErrorLocation("PID"),
        )
    commands = [item if not isinstance(item, _OrderGroup) else _observations(item, scope) for item in plan]
    return scope.result([c for c in commands if c is not None])


def _placer_order(orc: Segment | None, obr: Segment, scope: Scope) -> Identifier | None:
    if orc is not None:
        found = ei_identifier(orc.first(2), scope.default_system)
        if found is not None:
            return found
    return ei_identifier(obr.first(2), scope.default_system)


def _observations(group: _OrderGroup, scope: Scope) -> AddObservations | None:
    if not group.results:
        return None
    observations = tuple(_observation(obx, group.obr, *_code(obx, scope), scope) for obx in group.results)
    return AddObservations(group.patient, observations, group.order)


def _observation(
    obx: Segment, obr: Segment | None, code: Coding, alternates: tuple[Coding, ...], scope: Scope
) -> Observation:
    value_type = obx.get(2).upper()
    quantity, text, coded = observation_value(obx, value_type, scope.timezone)
    if value_type not in TEXT_TYPES and len(obx.repetitions(5)) > 1:
        scope.warn(
            obx.location(5), f"OBX-5 repeats for type {value_type}: the first value is kept", ErrorCode.DATA_TYPE_ERROR
        )
    effective = datetime_at(obx, 14, scope.timezone)
    if effective is None and obr is not None:
        effective = datetime_at(obr, 7, scope.timezone)
    instance = ei_identifier(obx.first(21), scope.default_system)
    return Observation(
        patient_id=UNRESOLVED,
        code=code,
        status=_status(obx, scope),
        value_type=value_type or None,
        value_quantity=quantity,
        value_string=text,
        value_coding=coded[0] if coded else None,
        value_alternates=coded[1:],
        unit=obx.get(6, 1) or obx.get(6, 2) or None,
        reference_range=reference_range(obx.first(7)),
        interpretation=obx.get(8) or None,
        effective_at=effective,
        identifiers=[instance] if instance else [],
        alternate_codes=alternates,
    )


def _code(obx: Segment, scope: Scope) -> tuple[Coding, tuple[Coding, ...]]:
    """OBX-3 as LOINC where it is (or translates to) LOINC; the other codings it carried (the local
    code a table translated, the alternate triplet) kept as alternates.

    A lab sends the same few hundred codes all day, ten or more per ORU^R01: each OBX-3 text is
    read once per facility and code table (Codings are immutable, so the answer is shared)."""
    plain = obx.plain(3)
    if not plain:  # escaped (or empty: the error below)
        return _read_code(obx, scope)
    lab_codes, facility = scope.tables.lab_codes, scope.facility_code
    key = (plain, facility, obx.delimiters, lab_codes)
    found = _CODES.get(key)
    if found is None:
        if len(_CODES) >= _MAX_CODES:
            _CODES.clear()
        found = _CODES[key] = _read_code(obx, scope)
    return found


_CODES: dict[tuple[str, str | None, Delimiters, LabCodes], tuple[Coding, tuple[Coding, ...]]] = {}
_MAX_CODES = 4096  # a reloaded code table's entries go with the next clearing


def _read_code(obx: Segment, scope: Scope) -> tuple[Coding, tuple[Coding, ...]]:
    found = codings(obx.first(3))
    if not found:
        raise MappingError(
            "OBX-3 (observation identifier) is empty",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=obx.location(3),
        )
    loinc = next((c for c in found if c.system == LOINC), None)
    if loinc is None:
        for local in found:
            translated = scope.tables.lab_codes.get(scope.facility_code, local.system, local.code)
            if translated is not None:
                return Coding(translated.code, LOINC, translated.display or local.display), tuple(found)
        loinc = found[0]
    return loinc, tuple(c for c in found if c is not loinc)


def _status(obx: Segment, scope: Scope) -> str:
    value = obx.get(11).upper()
    status = RESULT_STATUS.get(value)
    if status is None:
        scope.warn(obx.location(11), f"result status {value!r} is not in HL7 table 0085")
        return "unknown"
    return status
