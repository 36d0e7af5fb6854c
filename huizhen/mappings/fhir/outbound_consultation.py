"""Outbound: a Consultation as FHIR R4.

A consultation reads as three resources sharing its id (ids are per type):

* ServiceRequest — the request: who asks whom about which patient and why;
* Encounter — the consultation session (class AMB), planned → in-progress → finished;
* DiagnosticReport — once COMPLETED: the expert's conclusion (LOINC 11488-4
  "Consult note"), the diagnosis as ``conclusion``, the treatment plan as a
  text/plain ``presentedForm``.
"""

from __future__ import annotations

from dataclasses import dataclass

from huizhen.integration.model import Coding, Consultation, ConsultationStatus
from huizhen.mappings.fhir import render as r
from huizhen.mappings.fhir import systems, vocab
from huizhen.mappings.fhir.render import JSON, compact

_CONSULTATION = {"coding": [r.coding_of(systems.SNOMED, systems.SNOMED_CONSULTATION, "Consultation")], "text": "会诊"}


@dataclass(frozen=True, slots=True)
class ConsultationResources:
    service_request: JSON
    session: JSON  # an Encounter
    report: JSON | None  # a DiagnosticReport, once COMPLETED

    def all(self) -> list[JSON]:
        return [x for x in (self.service_request, self.session, self.report) if x is not None]


def consultation(c: Consultation) -> ConsultationResources:
    return ConsultationResources(service_request(c), session(c), report(c))


def _identifiers(c: Consultation) -> list[JSON]:
    found = [r.identifier(c.source_order, "PLAC")] if c.source_order else []
    if c.number:
        found.append({"system": systems.CONSULTATION_NUMBER, "value": c.number})
    return found


def _disease(c: Consultation) -> JSON | None:
    if not c.disease_code:
        return None
    return r.concept(Coding(c.disease_code, systems.ICD10, c.disease_name))


def _code(c: Consultation) -> JSON:
    """The order's own codes as the HIS sent them, then SNOMED's "consultation" (what Huizhen
    made of them); a request made in Huizhen has only the latter."""
    if not c.order_codes:
        return _CONSULTATION
    sent = [r.coding(x) for x in c.order_codes if x.system is not None or x.code != x.display]
    texts = [x.display for x in c.order_codes if x.system is None and x.code == x.display]
    ours = _CONSULTATION["coding"][0]
    return {"coding": [*sent, *([ours] if ours not in sent else [])], "text": texts[0] if texts else "会诊"}


def service_request(c: Consultation) -> JSON:
    if c.requester_id:
        requester = r.reference("Practitioner", c.requester_id)
    else:
        requester = r.reference("Organization", c.facility_id)
    supporting = [r.reference("Observation", i) for i in c.observation_ids]
    supporting += [r.reference("ImagingStudy", i) for i in c.study_ids]
    supporting += [r.reference("DocumentReference", i) for i in c.document_ids]
    return compact(
        {
            "resourceType": "ServiceRequest",
            "id": c.id,
            "meta": r.meta(None, c.version),
            "identifier": _identifiers(c),
            "status": vocab.REQUEST_STATUS_OUT[c.status],
            "intent": "order",
            "priority": vocab.URGENCY_PRIORITY[c.urgency],
            "code": _code(c),
            "subject": r.reference("Patient", c.patient_id),
            "encounter": r.reference("Encounter", c.id),
            "occurrenceDateTime": r.date_time(c.scheduled_at) if c.scheduled_at else None,
            "authoredOn": r.date_time(c.created_at) if c.created_at else None,
            "requester": requester,
            "performerType": r.text_concept(c.department),
            "performer": [r.reference("Practitioner", c.expert_id or c.preferred_expert_id)]
            if c.expert_id or c.preferred_expert_id
            else None,
            "reasonCode": [x for x in (_disease(c), r.text_concept(c.chief_complaint)) if x],
            "supportingInfo": supporting,
            "note": [{"text": c.question}] if c.question else None,
        }
    )


def session(c: Consultation) -> JSON:
    participants = []
    if c.requester_id:
        role = {"coding": [r.coding_of(systems.V3_PARTICIPATION, "REF", "referrer")]}
        participants.append({"type": [role], "individual": r.reference("Practitioner", c.requester_id)})
    if c.expert_id:
        role = {"coding": [r.coding_of(systems.V3_PARTICIPATION, "CON", "consultant")]}
        participants.append({"type": [role], "individual": r.reference("Practitioner", c.expert_id)})
    period = compact(
        {
            "start": r.date_time(c.started_at) if c.started_at else None,
            "end": r.date_time(c.completed_at) if c.completed_at else None,
        }
    )
    return compact(
        {
            "resourceType": "Encounter",
            "id": c.id,
            "identifier": [{"system": systems.CONSULTATION_NUMBER, "value": c.number}] if c.number else None,
            "status": vocab.SESSION_STATUS_OUT[c.status],
            "class": r.coding_of(systems.V3_ACT_CODE, "AMB", "ambulatory"),
            "serviceType": r.text_concept(c.department),
            "subject": r.reference("Patient", c.patient_id),
            "basedOn": [r.reference("ServiceRequest", c.id)],
            "participant": participants,
            "period": period,
            "reasonCode": [x for x in (_disease(c),) if x],
            "serviceProvider": r.reference("Organization", c.facility_id),
        }
    )


def report(c: Consultation) -> JSON | None:
    if c.status is not ConsultationStatus.COMPLETED:
        return None
    plan = None
    if c.treatment_plan:
        plan = [
            {
                "contentType": "text/plain; charset=utf-8",
                "data": r.base64_text(c.treatment_plan),
                "title": "Treatment plan",
            }
        ]
    expert = [r.reference("Practitioner", c.expert_id)] if c.expert_id else None
    return compact(
        {
            "resourceType": "DiagnosticReport",
            "id": c.id,
            "identifier": [{"system": systems.CONSULTATION_NUMBER, "value": c.number}] if c.number else None,
            "basedOn": [r.reference("ServiceRequest", c.id)],
            "status": "final",
            "code": {"coding": [r.coding_of(systems.LOINC, systems.LOINC_CONSULT_NOTE, "Consult note")]},
            "subject": r.reference("Patient", c.patient_id),
            "encounter": r.reference("Encounter", c.id),
            "effectiveDateTime": r.date_time(c.completed_at) if c.completed_at else None,
            "issued": r.instant(c.completed_at) if c.completed_at else None,
            "performer": expert,
            "resultsInterpreter": expert,
            "result": [r.reference("Observation", i) for i in c.observation_ids],
            "imagingStudy": [r.reference("ImagingStudy", i) for i in c.study_ids],
            "conclusion": c.diagnosis,
            "conclusionCode": [x for x in (_disease(c),) if x],
            "presentedForm": plan,
        }
    )
