"""Patient, Consultation and Viewer: the types that hold patient data."""

from __future__ import annotations

import strawberry

from huizhen.graphql.guard import can, read, sees_consultation, sees_patient
from huizhen.graphql.types import (
    ConsultationStatus,
    Facility,
    HumanName,
    Identifier,
    ImagingStudy,
    Info,
    Observation,
    Practitioner,
    TimelineEvent,
    Urgency,
    _facility,
    _practitioner,
    iso,
)
from huizhen.integration import model as m


@strawberry.type
class Patient:
    _m: strawberry.Private[m.Patient]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def identifiers(self) -> list[Identifier]:
        return [Identifier(system=i.system, value=i.value) for i in self._m.identifiers]

    @strawberry.field
    def name(self) -> HumanName:
        return HumanName.of(self._m.name)

    @strawberry.field
    def gender(self) -> str | None:
        return self._m.gender.value if self._m.gender else None

    @strawberry.field
    def birth_date(self, info: Info) -> str | None:
        return iso(self._m.birth_date, info)

    @strawberry.field
    async def facility(self, info: Info) -> Facility | None:
        return await _facility(self._m.facility_id, info)

    @strawberry.field(permission_classes=can("observation", "read"))
    async def observations(self, info: Info, first: int | None = 20) -> list[Observation]:
        async with info.context.services.store.read() as repo:
            found = await repo.clinical.observations_for_patients([self._m.id], latest=first)
        read(info, "Observation", f"patient:{self._m.id}")
        return [Observation(_m=o) for o in found[self._m.id]]

    @strawberry.field(permission_classes=can("study", "read"))
    async def imaging_studies(self, info: Info) -> list[ImagingStudy]:
        async with info.context.services.store.read() as repo:
            found = await repo.clinical.studies_for_patients([self._m.id])
        read(info, "ImagingStudy", f"patient:{self._m.id}")
        return [ImagingStudy(_m=s) for s in found[self._m.id]]

    @strawberry.field(permission_classes=can("consultation", "read"))
    async def consultations(self, info: Info) -> list[Consultation]:
        async with info.context.services.store.read() as repo:
            found = await repo.consultations.for_patients([self._m.id])
        return [Consultation(_m=c) for c in found if await sees_consultation(info, c)]


@strawberry.type
class Consultation:
    _m: strawberry.Private[m.Consultation]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def number(self) -> str:
        return self._m.number

    @strawberry.field
    def status(self) -> ConsultationStatus:
        return ConsultationStatus(self._m.status.value)

    @strawberry.field
    def urgency(self) -> Urgency:
        return Urgency(self._m.urgency.value)

    @strawberry.field
    def department(self) -> str:
        return self._m.department

    @strawberry.field
    def disease_code(self) -> str | None:
        return self._m.disease_code

    @strawberry.field
    def disease_name(self) -> str | None:
        return self._m.disease_name

    @strawberry.field
    def chief_complaint(self) -> str | None:
        return self._m.chief_complaint

    @strawberry.field
    def question(self) -> str | None:
        return self._m.question

    @strawberry.field(permission_classes=can("patient", "read"))
    async def patient(self, info: Info) -> Patient:
        p = await info.context.loaders.patient.load(self._m.patient_id)
        if p is None:  # a foreign key guarantees it; a miss is a broken store
            raise RuntimeError(f"consultation {self._m.number} has no patient row")
        read(info, "Patient", p.id)  # whoever sees a consultation sees its patient (huizhen.rbac.rows)
        return Patient(_m=p)

    @strawberry.field
    async def requester(self, info: Info) -> Practitioner | None:
        return await _practitioner(self._m.requester_id, info)

    @strawberry.field
    async def facility(self, info: Info) -> Facility | None:
        return await _facility(self._m.facility_id, info)

    @strawberry.field
    async def expert(self, info: Info) -> Practitioner | None:
        return await _practitioner(self._m.expert_id, info)

    @strawberry.field
    def timeline(self, info: Info) -> list[TimelineEvent]:
        return [
            TimelineEvent(at=iso(e.at, info) or "", type=e.type, actor=e.actor, detail=e.detail)
            for e in self._m.timeline
        ]

    @strawberry.field
    def diagnosis(self) -> str | None:
        return self._m.diagnosis

    @strawberry.field
    def treatment_plan(self) -> str | None:
        return self._m.treatment_plan

    @strawberry.field
    def cancel_reason(self) -> str | None:
        return self._m.cancel_reason

    @strawberry.field(permission_classes=can("observation", "read"))
    async def observations(self, info: Info) -> list[Observation]:
        if not self._m.observation_ids:
            return []
        async with info.context.services.store.read() as repo:
            return [Observation(_m=o) for o in await repo.clinical.observations_by_ids(self._m.observation_ids)]

    @strawberry.field(permission_classes=can("study", "read"))
    async def imaging_studies(self, info: Info) -> list[ImagingStudy]:
        if not self._m.study_ids:
            return []
        async with info.context.services.store.read() as repo:
            return [ImagingStudy(_m=s) for s in await repo.clinical.studies_by_ids(self._m.study_ids)]

    @strawberry.field
    def created_at(self, info: Info) -> str | None:
        return iso(self._m.created_at, info)

    @strawberry.field
    def submitted_at(self, info: Info) -> str | None:
        return iso(self._m.submitted_at, info)

    @strawberry.field
    def assigned_at(self, info: Info) -> str | None:
        return iso(self._m.assigned_at, info)

    @strawberry.field
    def started_at(self, info: Info) -> str | None:
        return iso(self._m.started_at, info)

    @strawberry.field
    def completed_at(self, info: Info) -> str | None:
        return iso(self._m.completed_at, info)


@strawberry.type
class Viewer:
    id: strawberry.ID
    roles: list[str]
    facility: str | None

    @strawberry.field
    async def practitioner(self, info: Info) -> Practitioner | None:
        return await _practitioner(str(self.id), info)

    @strawberry.field
    async def patient(self, info: Info) -> Patient | None:
        if not info.context.allowed("patient", "read"):  # the viewer's own record: null rather than an error
            return None
        p = await info.context.loaders.patient.load(str(self.id))
        return Patient(_m=p) if p and await sees_patient(info, p) else None
