"""Mapped FHIR resources → the engine's commands, naming everything by identifiers.

Pure: nothing is looked up. A FHIR reference becomes the identifiers that find
its target when the engine applies the command:

* ``Patient/X`` from sender S is ``Identifier(urn:huizhen:fhir:S:Patient, X)``:
  every resource S sends with a logical id X keeps that identifier (see
  :func:`logical_id_system`), so S's later references find it. When X is a
  Huizhen id (S read the resource back from Huizhen), a
  :class:`~huizhen.integration.commands.BindPatientAlias` first gives that
  patient S's name for it; other targets are also tried by Huizhen id.
* ``Patient?identifier=sys|val`` and ``Reference.identifier`` are that identifier.
* a reference to another entry of the same Bundle is how that entry's entity
  is named (``local``), so ``urn:uuid:`` references resolve.
* contained (``#id``) and display-only references name nothing.

A required reference (every clinical resource's ``subject``) that names
nothing is an :class:`~.outcome.InvalidResource` naming the element; an
optional one that names nothing leaves the field empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from huizhen.integration.commands import (
    AddDocument,
    AddImagingStudy,
    AddObservations,
    BindPatientAlias,
    CancelConsultation,
    Command,
    EntityLink,
    Linked,
    MergePatients,
    RequestConsultation,
    UpsertEncounter,
    UpsertFacility,
    UpsertPatient,
    UpsertPractitioner,
)
from huizhen.integration.model import ConsultationStatus, HumanName, Identifier, Observation, Practitioner
from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error, information
from huizhen.mappings.fhir.references import Ref, RefKind
from huizhen.mappings.fhir.result import Mapped

LOGICAL_ID_BASE: Final = "urn:huizhen:fhir"
# on each canonical Observation made from an Observation.component: "<parent's Huizhen id>.<position>"
COMPONENT_OF: Final = f"{LOGICAL_ID_BASE}:component-of"
_HUIZHEN_ID = re.compile(r"[0-9a-f]{32}")


def logical_id_system(sender: str, resource_type: str) -> str:
    """The identifier system under which sender's logical ids of ``resource_type`` are kept."""
    return f"{LOGICAL_ID_BASE}:{sender}:{resource_type}"


def is_huizhen_id(value: str | None) -> bool:
    return bool(value and _HUIZHEN_ID.fullmatch(value))


def component_of(observation: Observation) -> tuple[str, int] | None:
    """(parent id, position) when the observation is a component of another."""
    for ident in observation.identifiers:
        if ident.system == COMPONENT_OF:
            parent, _, position = ident.value.rpartition(".")
            return parent, int(position) if position.isdigit() else 0
    return None


@dataclass(frozen=True, slots=True)
class Origin:
    """Who submits: the sender (whose logical ids these are), its facility code, its time zone.

    A FHIR time without an offset is a date (``2016-03-28``) or a partial one;
    it is taken as the start of that day in ``tz``, because the store keeps
    instants.
    """

    sender: str
    facility: str | None = None
    tz: tzinfo = UTC

    def logical(self, resource_type: str, logical_id: str) -> Identifier:
        return Identifier(logical_id_system(self.sender, resource_type), logical_id)


@dataclass(frozen=True, slots=True)
class Target:
    """How commands name a referenced entity."""

    resource_type: str
    identifiers: tuple[Identifier, ...] = ()
    ids: tuple[str, ...] = ()  # Huizhen ids it may have
    order: Identifier | None = None  # a consultation's source order
    code: str | None = None  # a facility's code


Local = Callable[[Ref], Target | None]


def _nowhere(_: Ref) -> Target | None:
    return None


@dataclass(frozen=True, slots=True)
class Converted:
    commands: tuple[Command, ...]
    issues: tuple[Issue, ...] = ()
    target: Target | None = None  # how later entries of the same Bundle name this one


class _Scope:
    """One resource's conversion: its origin, logical id and how its references resolve."""

    def __init__(self, mapped: Mapped[Any], origin: Origin, logical_id: str | None, local: Local) -> None:
        self.mapped, self.origin, self.logical_id, self.local = mapped, origin, logical_id, local
        self.type = mapped.resource_type
        self.issues: list[Issue] = list(mapped.warnings)

    def alias(self, resource_type: str | None = None) -> list[Identifier]:
        return [self.origin.logical(resource_type or self.type, self.logical_id)] if self.logical_id else []

    def target(self, ref: Ref | None) -> Target | None:
        if ref is None:
            return None
        if (found := self.local(ref)) is not None:
            return found
        if ref.kind in (RefKind.RELATIVE, RefKind.ABSOLUTE) and ref.type and ref.id:
            ids = (ref.id,) if is_huizhen_id(ref.id) else ()
            return Target(ref.type, (self.origin.logical(ref.type, ref.id),), ids,
                          order=self.origin.logical(ref.type, ref.id) if ref.type == "ServiceRequest" else None)
        if ref.identifier is not None:
            ident = ref.identifier
            return Target(ref.type or "", (ident,), order=ident if ref.type in (None, "ServiceRequest") else None)
        return None

    def patient(self) -> tuple[tuple[Identifier, ...], list[Command]]:
        """The subject: required, and a Patient."""
        at = f"{self.type}.subject"
        ref = self.mapped.ref("patient_id")
        if ref is None:
            raise InvalidResource([error(IssueType.REQUIRED, "a subject (a Patient) is required", at)])
        found = self.target(ref)
        if found is None or found.resource_type not in ("Patient", "") or not found.identifiers:
            why = "a contained resource" if ref.kind is RefKind.CONTAINED else (str(ref) or ref.kind.value)
            raise InvalidResource(
                [error(IssueType.NOT_SUPPORTED, f"the subject must be a Patient Huizhen can find, not {why}", at)]
            )
        return found.identifiers, [BindPatientAlias(found.identifiers[0], i) for i in found.ids]

    def link(self, slot: str, field: str, target_type: str) -> EntityLink | None:
        found = self.target(self.mapped.ref(slot))
        if found is None:
            return None
        idents = found.identifiers + ((Identifier("", found.code),) if found.code else ())
        return EntityLink(field, target_type, idents, found.ids)

    def order(self, *slots: str) -> Identifier | None:
        for slot in slots:
            for ref in self.mapped.refs(slot):
                found = self.target(ref)
                if found is not None and found.order is not None:
                    return found.order
        return None

    def note(self, diagnostics: str, *paths: str) -> None:
        self.issues.append(information(IssueType.INFORMATIONAL, diagnostics, *paths))


def convert(
    mapped: Mapped[Any], origin: Origin, *, logical_id: str | None = None, local: Local = _nowhere
) -> Converted:
    """The commands for one mapped resource; raise :class:`InvalidResource` when it names no subject."""
    scope = _Scope(mapped, origin, logical_id, local)
    for entity in (mapped.entity, *mapped.parts):
        _localise(entity, origin.tz)
    commands, target = _CONVERTERS[mapped.resource_type](scope)
    return Converted(tuple(commands), tuple(scope.issues), target)


def _localise(entity: object, tz: tzinfo) -> None:
    """Naive datetimes of an entity (dates, partial dates) as instants in ``tz``."""
    if not is_dataclass(entity):
        return
    for f in fields(entity):
        value = getattr(entity, f.name)
        if isinstance(value, datetime) and value.tzinfo is None:
            setattr(entity, f.name, value.replace(tzinfo=tz))


def _linked(command: Command, *links: EntityLink | None) -> Command:
    found = tuple(link for link in links if link is not None)
    return Linked(command, found) if found else command


_Result = tuple[list[Command], Target | None]


def _patient(s: _Scope) -> _Result:
    p = s.mapped.entity
    p.identifiers = list(dict.fromkeys([*p.identifiers, *s.alias()]))
    commands: list[Command] = []
    if s.logical_id and is_huizhen_id(s.logical_id):  # PUT Patient/<Huizhen id>: the patient read back
        commands.append(BindPatientAlias(s.alias()[0], s.logical_id))
    commands.append(_linked(UpsertPatient(p, s.origin.facility), s.link("facility_id", "facility_id", "Organization")))
    survivor = s.target(s.mapped.ref("merged_into"))
    if survivor is not None and survivor.identifiers and p.identifiers:
        commands += [BindPatientAlias(survivor.identifiers[0], i) for i in survivor.ids]
        commands.append(MergePatients(survivor=survivor.identifiers, merged=tuple(p.identifiers)))
    return commands, Target("Patient", tuple(p.identifiers))


def _practitioner(s: _Scope) -> _Result:
    p = s.mapped.entity
    if s.logical_id and is_huizhen_id(s.logical_id):
        p.id = s.logical_id
    p.identifiers = list(dict.fromkeys([*p.identifiers, *s.alias()]))
    target = Target("Practitioner", tuple(p.identifiers), (p.id,) if is_huizhen_id(s.logical_id) else ())
    return [UpsertPractitioner(p, s.origin.facility)], target


def _practitioner_role(s: _Scope) -> _Result:
    info = s.mapped.entity
    named = s.target(s.mapped.ref("practitioner"))
    if named is None or not (named.identifiers or named.ids):
        raise InvalidResource(
            [error(IssueType.REQUIRED, "a Practitioner Huizhen can find is required", "PractitionerRole.practitioner")]
        )
    # the role's own logical id names the practitioner too (ServiceRequest.requester = PractitionerRole/X)
    idents = list(dict.fromkeys([*named.identifiers, *s.alias()]))
    p = Practitioner(HumanName(), identifiers=idents, department=info.department, specialties=list(info.specialties))
    if named.ids:
        p.id = named.ids[0]
    command = UpsertPractitioner(p, create=False)
    target = Target("Practitioner", tuple(idents), named.ids)
    return [_linked(command, s.link("facility_id", "facility_id", "Organization"))], target


def _organization(s: _Scope) -> _Result:
    f = s.mapped.entity
    return [UpsertFacility(f)], Target("Organization", (Identifier("", f.code),), code=f.code)


def _encounter(s: _Scope) -> _Result:
    enc = s.mapped.entity
    # the first identifier is the one the store indexes (a visit number): the sender's own come first
    enc.identifiers = list(dict.fromkeys([*enc.identifiers, *s.alias()]))
    patient, commands = s.patient()
    command = UpsertEncounter(enc, patient, s.origin.facility)
    commands.append(
        _linked(
            command,
            s.link("facility_id", "facility_id", "Organization"),
            s.link("attending_id", "attending_id", "Practitioner"),
        )
    )
    return commands, Target("Encounter", tuple(enc.identifiers))


def _observation(s: _Scope) -> _Result:
    parent = s.mapped.entity
    parent.identifiers = list(dict.fromkeys([*parent.identifiers, *s.alias()]))
    parts = [
        replace(p, identifiers=[*p.identifiers, Identifier(COMPONENT_OF, f"{parent.id}.{n}")])
        for n, p in enumerate(s.mapped.parts)
    ]
    patient, commands = s.patient()
    command = AddObservations(patient, (parent, *parts), order=s.order("based_on"))
    commands.append(_linked(command, s.link("encounter_id", "encounter_id", "Encounter")))
    return commands, Target(s.type, ids=(parent.id,))


def _document(s: _Scope) -> _Result:
    doc = s.mapped.entity
    doc.identifiers = list(dict.fromkeys([*doc.identifiers, *s.alias()]))
    if s.mapped.content:
        element = "presentedForm" if s.type == "DiagnosticReport" else "content"
        s.note(f"{len(s.mapped.content)} attachment(s) other than text are not stored", f"{s.type}.{element}")
    patient, commands = s.patient()
    commands.append(AddDocument(doc, patient, order=s.order("based_on", "related")))
    return commands, Target(s.type, tuple(doc.identifiers))


def _imaging_study(s: _Scope) -> _Result:
    study = s.mapped.entity
    patient, commands = s.patient()
    commands.append(AddImagingStudy(study, patient, order=s.order("based_on"), facility_code=s.origin.facility))
    return commands, Target("ImagingStudy", ids=(study.id,))


def _consultation(s: _Scope) -> _Result:
    c = s.mapped.entity
    if c.source_order is None and s.logical_id:
        c.source_order = s.alias()[0]  # the sender's logical id makes the request idempotent
        s.issues = [i for i in s.issues if "ServiceRequest.identifier" not in i.expression]
    patient, commands = s.patient()
    requester = s.target(s.mapped.ref("facility_id"))
    facility = requester.code if requester is not None and requester.code else s.origin.facility
    command = RequestConsultation(c, patient, facility_code=facility)
    commands.append(
        _linked(
            command,
            s.link("requester_id", "requester_id", "Practitioner"),
            s.link("preferred_expert_id", "preferred_expert_id", "Practitioner"),
        )
    )
    if c.status is ConsultationStatus.CANCELLED and c.source_order is not None:
        commands.append(CancelConsultation(c.source_order, c.cancel_reason or "ServiceRequest revoked"))
    return commands, Target("ServiceRequest", order=c.source_order)


_CONVERTERS: Final[dict[str, Callable[[_Scope], _Result]]] = {
    "Patient": _patient,
    "Practitioner": _practitioner,
    "PractitionerRole": _practitioner_role,
    "Organization": _organization,
    "Encounter": _encounter,
    "Observation": _observation,
    "Condition": _observation,
    "DiagnosticReport": _document,
    "DocumentReference": _document,
    "ImagingStudy": _imaging_study,
    "ServiceRequest": _consultation,
}
