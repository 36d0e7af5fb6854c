"""A completed consultation rendered for the HIS: no Huizhen id left but the Encounter both resources share."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    HumanName,
    Identifier,
    Patient,
    Urgency,
)
from huizhen.mappings.fhir.outbound_push import for_his
from huizhen.mappings.fhir.validate import validate_resource

MRN = "http://his.example.cn/mrn"


def test_references_the_his_cannot_resolve_are_rewritten_or_left_out() -> None:
    patient = Patient(name=HumanName.of("郭", ("靖",)), identifiers=[Identifier("urn:other", "X1"),
                                                                     Identifier(MRN, "M-GJ")])
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    c = Consultation(patient_id=patient.id, department="神经内科", urgency=Urgency.ROUTINE, chief_complaint="头痛",
                     number="HZ-20261130-0001", status=ConsultationStatus.COMPLETED, requester_id="doc",
                     expert_id="exp", facility_id="fac", diagnosis="偏头痛", treatment_plan="休息",
                     started_at=at, completed_at=at, observation_ids=["o1"], study_ids=["s1"])
    names = {"Practitioner/exp": "洪医生", "Organization/fac": "石桥镇卫生院"}
    encounter, report = for_his(c, patient, names, MRN)
    for resource in (encounter, report):
        validate_resource(json.loads(json.dumps(resource)))
        assert resource["subject"] == {"type": "Patient", "identifier": {"system": MRN, "value": "M-GJ"},
                                       "display": "郭靖"}
    text = json.dumps([encounter, report], ensure_ascii=False)
    for internal in ("Patient/", "Practitioner/", "Organization/", "ServiceRequest/", "Observation/", "ImagingStudy/"):
        assert internal not in text
    assert report["encounter"] == {"reference": f"Encounter/{c.id}"} and encounter["id"] == report["id"] == c.id
    assert [p["individual"] for p in encounter["participant"] if "individual" in p] == [{"display": "洪医生"}]
    assert encounter["serviceProvider"] == {"display": "石桥镇卫生院"}
    assert report["performer"] == [{"display": "洪医生"}]
