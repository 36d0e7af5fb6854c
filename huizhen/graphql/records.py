"""Patient, Consultation and Viewer: the types that hold patient data."""

from __future__ import annotations

from datetime import datetime

import strawberry

from huizhen.graphql.context import DISPLAY_TZ, ready, ready_many, then
from huizhen.graphql.guard import can, read, sees_consultation, sees_patient
from huizhen.graphql.types import (
    ConsultationStatus,
    Document,
    Escalation,
    Facility,
    HumanName,
    Identifier,
    ImagingStudy,
    Info,
    Observation,
    Practitioner,
    SourceMessage,
    Symptom,
    TimelineEvent,
    Urgency,
    _facility,
    _practitioner,
    iso,
    local_iso,
    sources_of,
)
from huizhen.integration import model as m
from huizhen.integration.errors import BadInput
from huizhen.integration.paging import MAX_PAGE
from huizhen.integration.sla import overdue


@strawberry.type
class Patient:
    _m: strawberry.Private[m.Patient]
    id: strawberry.ID
    identifiers: list[Identifier]
    name: HumanName
    gender: str | None
    birth_date: str | None
    age: int | None = strawberry.field(description="Age in whole years today (in the server's time zone).")

    def __init__(self, _m: m.Patient) -> None:
        self._m = _m
        self.id = strawberry.ID(_m.id)
        self.identifiers = [Identifier(system=i.system, value=i.value) for i in _m.identifiers]
        self.name, self.gender = HumanName.of(_m.name), _m.gender.value if _m.gender else None
        born = _m.birth_date
        self.birth_date = local_iso(born)
        if born is None:
            self.age = None
        else:
            today = datetime.now(DISPLAY_TZ.get()).date()
            self.age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    @strawberry.field
    def facility(self, info: Info) -> Facility | None:
        return _facility(self._m.facility_id, info)  # type: ignore[no-any-return]

    @strawberry.field(permission_classes=can("observation", "read"))
    def observations(self, info: Info, first: int | None = 20) -> list[Observation]:
        if first is not None and not 0 <= first <= MAX_PAGE:
            raise BadInput(f"first must be between 0 and {MAX_PAGE}")

        def shown(found: list[m.Observation]) -> list[Observation]:
            read(info, "Observation", f"patient:{self._m.id}")
            return [Observation(_m=o) for o in found]

        found = ready(info.context.loaders.patient_observations, (self._m.id, first))
        return then(found, shown)  # type: ignore[return-value]

    @strawberry.field(permission_classes=can("study", "read"))
    def imaging_studies(self, info: Info) -> list[ImagingStudy]:
        def shown(found: list[m.ImagingStudy]) -> list[ImagingStudy]:
            read(info, "ImagingStudy", f"patient:{self._m.id}")
            return [ImagingStudy(_m=s) for s in found]

        return then(ready(info.context.loaders.patient_studies, self._m.id), shown)  # type: ignore[return-value]

    @strawberry.field(permission_classes=can("consultation", "read"))
    async def consultations(self, info: Info) -> list[Consultation]:
        found = await info.context.loaders.patient_consultations.load(self._m.id)
        return [Consultation(_m=c) for c in found if await sees_consultation(info, c)]

    @strawberry.field(description="The journaled messages that created or changed this patient.")
    async def sources(self, info: Info) -> list[SourceMessage]:
        return await sources_of(self._m.id, info)


# Consultation's fields that read its clinical record: a work-list selecting none of them has the
# page read without decrypting it (Consultations.search(clinical=False))
CLINICAL_FIELDS = frozenset({"chiefComplaint", "question", "diagnosis", "treatmentPlan", "cancelReason", "symptoms"})


@strawberry.type
class Consultation:
    _m: strawberry.Private[m.Consultation]
    id: strawberry.ID
    number: str
    status: ConsultationStatus
    urgency: Urgency
    department: str
    disease_code: str | None
    disease_name: str | None
    chief_complaint: str | None
    question: str | None
    diagnosis: str | None
    treatment_plan: str | None
    cancel_reason: str | None
    scheduled_at: str | None
    cancelled_at: str | None
    created_at: str | None
    submitted_at: str | None
    assigned_at: str | None
    started_at: str | None
    completed_at: str | None

    def __init__(self, _m: m.Consultation) -> None:
        self._m = _m
        self.id, self.number = strawberry.ID(_m.id), _m.number
        self.status, self.urgency = ConsultationStatus(_m.status.value), Urgency(_m.urgency.value)
        self.department, self.disease_code, self.disease_name = _m.department, _m.disease_code, _m.disease_name
        self.chief_complaint, self.question = _m.chief_complaint, _m.question
        self.diagnosis, self.treatment_plan, self.cancel_reason = _m.diagnosis, _m.treatment_plan, _m.cancel_reason
        self.scheduled_at, self.cancelled_at = local_iso(_m.scheduled_at), local_iso(_m.cancelled_at)
        self.created_at, self.submitted_at = local_iso(_m.created_at), local_iso(_m.submitted_at)
        self.assigned_at, self.started_at = local_iso(_m.assigned_at), local_iso(_m.started_at)
        self.completed_at = local_iso(_m.completed_at)

    @strawberry.field(permission_classes=can("patient", "read"))
    def patient(self, info: Info) -> Patient:
        def shown(p: m.Patient | None) -> Patient:
            if p is None:  # a foreign key guarantees it; a miss is a broken store
                raise RuntimeError(f"consultation {self._m.number} has no patient row")
            read(info, "Patient", p.id)  # whoever sees a consultation sees its patient (huizhen.rbac.rows)
            return Patient(_m=p)

        return then(ready(info.context.loaders.patient, self._m.patient_id), shown)  # type: ignore[return-value]

    @strawberry.field
    def requester(self, info: Info) -> Practitioner | None:
        return _practitioner(self._m.requester_id, info)  # type: ignore[no-any-return]

    @strawberry.field
    def facility(self, info: Info) -> Facility | None:
        return _facility(self._m.facility_id, info)  # type: ignore[no-any-return]

    @strawberry.field
    def expert(self, info: Info) -> Practitioner | None:
        return _practitioner(self._m.expert_id, info)  # type: ignore[no-any-return]

    @strawberry.field
    def timeline(self, info: Info) -> list[TimelineEvent]:
        return [
            TimelineEvent(at=iso(e.at, info) or "", type=e.type, actor=e.actor, detail=e.detail)
            for e in self._m.timeline
        ]

    @strawberry.field(description="The response-time targets it missed, oldest first.")
    async def escalations(self, info: Info) -> list[Escalation]:
        found = await info.context.loaders.escalations.load(self._m.id)
        return [Escalation(phase=phase, escalated_at=iso(at, info) or "") for phase, at in found]

    @strawberry.field(description="Escalated and still waiting in the phase it missed (unassigned, or not started).")
    async def overdue(self, info: Info) -> bool:
        return overdue(self._m.status, [p for p, _ in await info.context.loaders.escalations.load(self._m.id)])

    @strawberry.field
    def symptoms(self) -> list[Symptom]:
        return [Symptom.of(d) for d in self._m.symptoms]

    @strawberry.field(
        description="Observations attached to the consultation.", permission_classes=can("observation", "read")
    )
    def observations(self, info: Info) -> list[Observation]:
        return then(  # type: ignore[return-value]
            ready_many(info.context.loaders.observation, self._m.observation_ids),
            lambda found: [Observation(_m=o) for o in found if o is not None],
        )

    @strawberry.field(permission_classes=can("study", "read"))
    def imaging_studies(self, info: Info) -> list[ImagingStudy]:
        return then(  # type: ignore[return-value]
            ready_many(info.context.loaders.study, self._m.study_ids),
            lambda found: [ImagingStudy(_m=s) for s in found if s is not None],
        )

    @strawberry.field
    async def documents(self, info: Info) -> list[Document]:
        found = await info.context.loaders.document.load_many(self._m.document_ids)
        return [Document(_m=d) for d in found if d is not None]

    @strawberry.field(description="The journaled messages (HL7 orders, FHIR ServiceRequests…) behind it.")
    async def sources(self, info: Info) -> list[SourceMessage]:
        return await sources_of(self._m.id, info)


@strawberry.type
class Viewer:
    id: strawberry.ID
    roles: list[str]
    facility: str | None

    @strawberry.field
    def practitioner(self, info: Info) -> Practitioner | None:
        return _practitioner(str(self.id), info)  # type: ignore[no-any-return]

    @strawberry.field
    async def patient(self, info: Info) -> Patient | None:
        if not info.context.allowed("patient", "read"):  # the viewer's own record: null rather than an error
            return None
        p = await info.context.loaders.patient.load(str(self.id))
        return Patient(_m=p) if p and await sees_patient(info, p) else None
