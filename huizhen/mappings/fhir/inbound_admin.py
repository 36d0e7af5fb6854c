"""Inbound: the people and places (Patient, Practitioner, PractitionerRole, Organization)."""

from __future__ import annotations

from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.practitioner import Practitioner as FhirPractitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

from huizhen.integration.model import (
    Facility,
    FacilityLevel,
    Gender,
    HumanName,
    Patient,
    Practitioner,
)
from huizhen.mappings.fhir import datatypes as dt
from huizhen.mappings.fhir import systems, vocab
from huizhen.mappings.fhir.outcome import IssueType, warning
from huizhen.mappings.fhir.references import ref_of
from huizhen.mappings.fhir.result import Link, Mapped, PractitionerRoleInfo

_NO_NAME = HumanName()


def patient(res: FhirPatient) -> Mapped[Patient]:
    warnings = []
    birth = dt.day(res.birthDate)
    if res.birthDate is not None and birth is None:
        warnings.append(warning(IssueType.VALUE, "a partial birthDate is not kept", "Patient.birthDate"))
    entity = Patient(
        name=dt.human_name(res.name) or _NO_NAME,
        identifiers=dt.identifiers(res.identifier),
        gender=Gender(res.gender) if res.gender else None,
        birth_date=birth,
        phone=dt.phone(res.telecom),
        address=dt.address(res.address),
    )
    links = [Link("facility_id", r) for r in [ref_of(res.managingOrganization)] if r]
    links += [
        Link("merged_into", r) for link in res.link or () if link.type == "replaced-by" and (r := ref_of(link.other))
    ]
    return Mapped(entity, "Patient", res.id, tuple(links), warnings=tuple(warnings))


def practitioner(res: FhirPractitioner) -> Mapped[Practitioner]:
    title = None
    for q in res.qualification or ():
        names = [q.code.text, *(c.display for c in q.code.coding or ())]
        codes = [c.code for c in q.code.coding or () if c.system == systems.PRACTITIONER_TITLE]
        title = title or vocab.title_of(*codes, *names)
    entity = Practitioner(
        name=dt.human_name(res.name) or _NO_NAME,
        identifiers=dt.identifiers(res.identifier),
        title=title,
    )
    return Mapped(entity, "Practitioner", res.id)


def practitioner_role(res: PractitionerRole) -> Mapped[PractitionerRoleInfo]:
    """Department and specialties for the Practitioner it names (merged by the engine).

    The department is the first specialty (科室 such as 心内科 are sent as
    specialties by the HIS we know); all specialties are kept.
    """
    specialties = tuple(t for s in res.specialty or () if (t := dt.text(s)))
    info = PractitionerRoleInfo(
        department=specialties[0] if specialties else None,
        specialties=specialties,
        identifiers=tuple(dt.identifiers(res.identifier)),
    )
    links = [
        Link(slot, r)
        for slot, ref in (("practitioner", res.practitioner), ("facility_id", res.organization))
        if (r := ref_of(ref))
    ]
    return Mapped(info, "PractitionerRole", res.id, tuple(links))


def facility(res: Organization) -> Mapped[Facility]:
    """An Organization as a Facility: its first identifier is the facility code."""
    idents = dt.identifiers(res.identifier)
    code = idents[0].value if idents else (res.id or res.name or "")
    warnings = []
    if not idents:
        warnings.append(
            warning(IssueType.REQUIRED, "no identifier: the facility code is its id", "Organization.identifier")
        )
    entity = Facility(
        code=code,
        name=res.name or code,
        level=_level(res) or FacilityLevel.PRIMARY,
        region=dt.region(res.address),
    )
    links = [Link("part_of", r) for r in [ref_of(res.partOf)] if r]
    return Mapped(entity, "Organization", res.id, tuple(links), warnings=tuple(warnings))


def _level(res: Organization) -> FacilityLevel | None:
    for ext in res.extension or ():
        if ext.url == systems.EXT_FACILITY_LEVEL:
            words = [ext.valueCode, ext.valueString]
            if ext.valueCoding is not None:
                words += [ext.valueCoding.code, ext.valueCoding.display]
            if ext.valueCodeableConcept is not None:
                words += [ext.valueCodeableConcept.text]
                words += [c.code for c in ext.valueCodeableConcept.coding or ()]
            if level := vocab.level_of(*words):
                return level
    for concept in res.type or ():
        words = [c.code for c in concept.coding or () if c.system == systems.FACILITY_LEVEL]
        if level := vocab.level_of(*words, concept.text, *(c.display for c in concept.coding or ())):
            return level
    return None
