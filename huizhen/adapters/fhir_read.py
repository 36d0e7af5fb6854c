"""Read canonical entities from the store and render them as FHIR R4 resources.

Ids in URLs are Huizhen's ids. A sender may also read a Patient or a
Practitioner by the logical id it sent it with (``GET Patient/f001`` after it
PUT ``Patient/f001``): the id is looked up among its logical-id identifiers.
A consultation reads as ServiceRequest, Encounter (the session) and, once
COMPLETED, DiagnosticReport, all under the consultation's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from huizhen.integration.model import Consultation, Document, EntityRef, Observation
from huizhen.integration.repo import Repository
from huizhen.integration.repo.records import records_of
from huizhen.mappings.fhir import outbound
from huizhen.mappings.fhir import outbound_consultation as consult
from huizhen.mappings.fhir.commands import COMPONENT_OF, component_of, logical_id_system
from huizhen.mappings.fhir.outbound_report import diagnostic_report
from huizhen.mappings.fhir.render import JSON

READABLE: Final = frozenset(
    {
        "Patient", "Practitioner", "PractitionerRole", "Organization", "Encounter", "Observation",
        "ServiceRequest", "DiagnosticReport", "DocumentReference", "ImagingStudy",
    }
)
# the canonical entity each FHIR type is stored as (Condition: a coded Observation)
STORED_AS: Final = {
    "Patient": "Patient", "Practitioner": "Practitioner", "PractitionerRole": "Practitioner",
    "Organization": "Facility", "Encounter": "Encounter", "Observation": "Observation", "Condition": "Observation",
    "DiagnosticReport": "Document", "DocumentReference": "Document", "ImagingStudy": "ImagingStudy",
    "ServiceRequest": "Consultation",
}
# the FHIR type a stored entity is read back as, when it came as ``resource_type``
READ_AS: Final = {"Condition": "Observation"}


async def read(repo: Repository, resource_type: str, entity_id: str, sender: str | None = None) -> JSON | None:
    """The resource, or None when nothing has that id."""
    if resource_type == "Patient":
        patient = await repo.patients.get(entity_id)
        if patient is None and sender:
            patient = await repo.patients.by_identifier(
                logical_id_system(sender, "Patient"), entity_id, follow_merge=False
            )
        return outbound.patient(patient) if patient else None
    if resource_type in ("Practitioner", "PractitionerRole"):
        practitioner = await repo.directory.practitioner(entity_id)
        if practitioner is None and sender:
            practitioner = await repo.directory.practitioner_by_identifier(
                logical_id_system(sender, resource_type), entity_id
            )
        if practitioner is None:
            return None
        return (outbound.practitioner if resource_type == "Practitioner" else outbound.practitioner_role)(practitioner)
    if resource_type == "Organization":
        facility = await repo.directory.facility(entity_id)
        return outbound.organization(facility) if facility else None
    if resource_type in ("ServiceRequest", "Encounter", "DiagnosticReport"):
        consultation = await repo.consultations.get(entity_id)
        if consultation is not None:
            return _consultation_as(consultation, resource_type)
    return await _clinical(repo, resource_type, entity_id)


async def _clinical(repo: Repository, resource_type: str, entity_id: str) -> JSON | None:
    records = records_of(repo)
    if resource_type == "Encounter":
        encounter = await records.encounter(entity_id)
        return outbound.encounter(encounter) if encounter else None
    if resource_type in ("DiagnosticReport", "DocumentReference"):
        document = await records.document(entity_id)
        if document is None:
            return None
        return diagnostic_report(document) if resource_type == "DiagnosticReport" else outbound.document(document)
    if resource_type == "Observation":
        found = await repo.clinical.observations_by_ids([entity_id])
        return (await observations(repo, found))[0] if found else None
    if resource_type == "ImagingStudy":
        studies = await repo.clinical.studies_by_ids([entity_id])
        return outbound.imaging_study(studies[0]) if studies else None
    return None


def _consultation_as(c: Consultation, resource_type: str) -> JSON | None:
    rendered = consult.consultation(c)
    return {"ServiceRequest": rendered.service_request, "Encounter": rendered.session}.get(
        resource_type, rendered.report
    )


def consultation_resources(c: Consultation) -> list[JSON]:
    return consult.consultation(c).all()


async def observations(repo: Repository, found: Sequence[Observation]) -> list[JSON]:
    """Observations with their components put back inside (a component read alone stays alone)."""
    parents = [o for o in found if component_of(o) is None]
    parts: dict[str, list[tuple[int, Observation]]] = {}
    if parents:
        for part in await records_of(repo).observations_marked(sorted({o.patient_id for o in parents}), COMPONENT_OF):
            key = component_of(part)
            if key is not None:
                parts.setdefault(key[0], []).append((key[1], part))
    rendered = []
    for o in found:
        mine = [p for _, p in sorted(parts.get(o.id, []), key=lambda x: x[0])]
        rendered.append(outbound.observation(o, mine))
    return rendered


async def read_effect(repo: Repository, resource_type: str, effect: EntityRef) -> tuple[str, JSON | None]:
    """What a write made, as the FHIR type it is read back as: (``Type/id``, the resource)."""
    shown = READ_AS.get(resource_type, resource_type)
    return f"{shown}/{effect.id}", await read(repo, shown, effect.id)


def documents_as(resource_type: str, documents: Sequence[Document]) -> list[JSON]:
    render: Any = diagnostic_report if resource_type == "DiagnosticReport" else outbound.document
    return [render(d) for d in documents]
