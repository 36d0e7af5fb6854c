"""Outbound rendering: canonical entities → FHIR R4 JSON that our own validator accepts."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from huizhen.integration.model import (
    Coding,
    Consultation,
    ConsultationStatus,
    Document,
    Encounter,
    Facility,
    FacilityLevel,
    Gender,
    HumanName,
    Identifier,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
    PractitionerTitle,
    ReferenceRange,
    Urgency,
)
from huizhen.mappings.fhir import outbound, systems
from huizhen.mappings.fhir.jsonio import dumps, load_json
from huizhen.mappings.fhir.outbound_consultation import consultation
from huizhen.mappings.fhir.validate import parse_resource, validate_resource

CST = timezone(timedelta(hours=8))


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """Validated through bytes, exactly as a client would receive it."""
    return parse_resource(dumps(resource)).data


def hl7_patient() -> Patient:
    """Shaped as the HL7 v2 ADT mapping leaves it: assigning authorities as systems, naive times."""
    return Patient(
        name=HumanName.of("王", ("小明",)),
        identifiers=[Identifier("XZWSY", "000123"), Identifier("urn:oid:2.16.156.10011.1.20", "330106199001011234")],
        gender=Gender.FEMALE,
        birth_date=date(1958, 7, 1),
        phone="13900000000",
        address="浙江省杭州市余杭区",
        facility_id="fac1",
        updated_at=datetime(2024, 3, 1, 9, 0),
    )


def test_patient_from_hl7_reads_as_valid_fhir() -> None:
    out = valid(outbound.patient(hl7_patient()))
    assert out["name"] == [{"use": "official", "text": "王小明", "family": "王", "given": ["小明"]}]
    assert out["identifier"][0] == {"system": "XZWSY", "value": "000123"}
    assert (out["birthDate"], out["gender"], out["active"]) == ("1958-07-01", "female", True)
    assert out["meta"]["lastUpdated"] == "2024-03-01T09:00:00+08:00"
    assert out["managingOrganization"] == {"reference": "Organization/fac1"}


def test_merged_patient() -> None:
    p = hl7_patient()
    p.merged_into = "survivor"
    out = valid(outbound.patient(p))
    assert out["active"] is False and out["link"] == [
        {"other": {"reference": "Patient/survivor"}, "type": "replaced-by"}
    ]


def test_patient_without_a_name_is_still_valid() -> None:
    out = valid(outbound.patient(Patient(name=HumanName())))
    assert "name" not in out


def test_observation_from_oru_reads_as_valid_fhir() -> None:
    o = Observation(
        patient_id="p1",
        code=Coding("6690-2", systems.LOINC, "WBC"),
        status="F",  # OBX-11 as sent
        value_type="NM",
        value_quantity=Decimal("11.20"),
        unit="10*9/L",
        reference_range=ReferenceRange(Decimal("3.5"), Decimal("9.5"), "3.5-9.5"),
        interpretation="H",
        effective_at=datetime(2024, 3, 1, 10, 30),
        identifiers=[Identifier("LIS", "R-1^1")],
    )
    out = valid(outbound.observation(o))
    assert out["status"] == "final"
    assert out["valueQuantity"] == {
        "value": Decimal("11.20"),
        "unit": "10*9/L",
        "system": systems.UCUM,
        "code": "10*9/L",
    }
    assert out["effectiveDateTime"] == "2024-03-01T10:30:00+08:00"
    assert out["referenceRange"][0]["low"]["value"] == Decimal("3.5")
    assert out["interpretation"][0]["coding"][0] == {"system": systems.V3_INTERPRETATION, "code": "H"}
    assert b'"value":11.20' in dumps(out)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        (
            {"value_type": "CWE", "value_coding": Coding("260385009", systems.SNOMED, "Negative")},
            "valueCodeableConcept",
        ),
        ({"value_type": "TX", "value_string": "未见异常"}, "valueString"),
        ({"value_type": "DTM", "value_string": "2024-01-02T03:04:05+08:00"}, "valueDateTime"),
        ({"value_type": "SN", "value_string": "<0.5", "unit": "mg/L"}, "valueQuantity"),
        ({"value_type": "SN", "value_string": "1:40"}, "valueString"),
        ({}, None),
    ],
)
def test_observation_values(fields: dict[str, Any], key: str | None) -> None:
    o = Observation(patient_id="p1", code=Coding("x-1", "urn:local", "本地项目"), **fields)
    out = valid(outbound.observation(o))
    assert (key in out) if key else not any(k.startswith("value") for k in out)


@pytest.mark.parametrize(
    ("value_type", "value", "rendered"),
    [
        ("DT", "2027-03-15", "2027-03-15"),  # HL7 OBX-2 DT, stored as ISO 8601
        ("DT", "2027-03", "2027-03"),
        ("TS", "2026-06-08T09:30:00+08:00", "2026-06-08T09:30:00+08:00"),
    ],
)
def test_hl7_time_values_read_as_date_times(value_type: str, value: str, rendered: str) -> None:
    o = Observation(patient_id="p1", code=Coding("11778-8", systems.LOINC), value_type=value_type, value_string=value)
    assert valid(outbound.observation(o))["valueDateTime"] == rendered


def test_text_only_code() -> None:
    o = Observation(patient_id="p1", code=Coding("血压", None, "血压"), value_string="正常")
    assert valid(outbound.observation(o))["code"] == {"text": "血压"}


def test_practitioner_role_organization_encounter() -> None:
    doc = Practitioner(
        name=HumanName.of("李", ("四",)),
        identifiers=[Identifier("urn:cn:license", "110")],
        facility_id="h1",
        department="心血管内科",
        title=PractitionerTitle.CHIEF,
        specialties=["冠心病", "心血管内科"],
    )
    out = valid(outbound.practitioner(doc))
    assert out["qualification"][0]["code"]["text"] == "主任医师"
    role = valid(outbound.practitioner_role(doc))
    assert [s["text"] for s in role["specialty"]] == ["心血管内科", "冠心病"]
    org = valid(
        outbound.organization(
            Facility("H-330100-01", "浙江大学医学院附属第一医院", FacilityLevel.TERTIARY, "浙江省杭州市")
        )
    )
    assert org["type"][0]["coding"][0]["code"] == "TERTIARY"
    enc = valid(
        outbound.encounter(Encounter(patient_id="p1", status="finished", start=datetime(2024, 1, 1, 8, tzinfo=CST)))
    )
    assert enc["class"]["code"] == "UNK"  # class is 1..1 in R4
    odd = valid(
        outbound.encounter(Encounter(patient_id="p1", status="discharged", class_code="IMP", attending_id="d1"))
    )
    assert odd["status"] == "unknown" and odd["participant"][0]["individual"] == {"reference": "Practitioner/d1"}


def test_imaging_study_and_document() -> None:
    study = ImagingStudy(
        patient_id="p1",
        study_instance_uid="1.2.3.4",
        accession_number="ACC001",
        started_at=datetime(2024, 3, 1, 9, 0, tzinfo=CST),
        consultation_id="c1",
        series=[
            ImagingSeries(
                "1.2.3.4.1", "CT", 1, instances=[ImagingInstance("1.2.3.4.1.1", "1.2.840.10008.5.1.4.1.1.2", 1)]
            ),
            ImagingSeries("1.2.3.4.2", None, 2, instances=[ImagingInstance("1.2.3.4.2.1")]),
        ],
    )
    out = valid(outbound.imaging_study(study))
    assert out["identifier"][0] == {"system": systems.DICOM_UID, "value": "urn:oid:1.2.3.4"}
    assert out["identifier"][1]["value"] == "ACC001" and out["numberOfInstances"] == 2
    assert out["series"][1]["modality"]["code"] == "OT" and "instance" not in out["series"][1]
    doc = valid(
        outbound.document(Document(patient_id="p1", title="转诊单", text="胸痛3天", created_at=datetime(2024, 3, 1)))
    )
    attachment = doc["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]).decode() == "胸痛3天"
    assert doc["date"] == "2024-03-01T00:00:00+08:00"  # an instant needs the time


def make_consultation(status: ConsultationStatus) -> Consultation:
    return Consultation(
        patient_id="p1",
        department="心血管内科",
        urgency=Urgency.URGENT,
        chief_complaint="胸痛3天",
        number="HZ-20240301-0001",
        status=status,
        requester_id="dr1",
        facility_id="thc1",
        disease_code="I20.0",
        disease_name="不稳定性心绞痛",
        question="是否需要介入治疗？",
        expert_id="ex1" if status is not ConsultationStatus.PENDING else None,
        diagnosis="不稳定性心绞痛" if status is ConsultationStatus.COMPLETED else None,
        treatment_plan="冠脉造影，双抗治疗" if status is ConsultationStatus.COMPLETED else None,
        source_order=Identifier("urn:his:placer", "ORD-1"),
        created_at=datetime(2024, 3, 1, 8, tzinfo=CST),
        started_at=datetime(2024, 3, 1, 14, tzinfo=CST),
        completed_at=datetime(2024, 3, 1, 15, tzinfo=CST) if status is ConsultationStatus.COMPLETED else None,
        observation_ids=["o1"],
        study_ids=["s1"],
        version=3,
    )


@pytest.mark.parametrize("status", list(ConsultationStatus))
def test_consultation_renders_valid_resources_in_every_state(status: ConsultationStatus) -> None:
    rendered = consultation(make_consultation(status))
    for resource in rendered.all():
        valid(resource)
    assert rendered.session["class"]["code"] == "AMB"
    assert (rendered.report is not None) is (status is ConsultationStatus.COMPLETED)


def test_completed_consultation() -> None:
    c = make_consultation(ConsultationStatus.COMPLETED)
    rendered = consultation(c)
    request, session, report = rendered.service_request, rendered.session, rendered.report
    assert report is not None
    assert (request["status"], request["priority"], session["status"]) == ("completed", "urgent", "finished")
    assert request["identifier"][0]["value"] == "ORD-1" and request["meta"]["versionId"] == "3"
    assert report["conclusion"] == "不稳定性心绞痛"
    assert report["conclusionCode"][0]["coding"][0] == {
        "system": systems.ICD10,
        "code": "I20.0",
        "display": "不稳定性心绞痛",
    }
    assert base64.b64decode(report["presentedForm"][0]["data"]).decode() == "冠脉造影，双抗治疗"
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{c.id}"}]
    assert report["issued"] == "2024-03-01T15:00:00+08:00"


def test_dumps_is_json() -> None:
    resource = outbound.observation(
        Observation(patient_id="p", code=Coding("1", "urn:x"), value_quantity=Decimal("1E+2"), unit="mg")
    )
    assert json.loads(dumps(resource))["valueQuantity"]["value"] == 100
    assert load_json(dumps(resource, indent=2)) == load_json(dumps(resource))
    validate_resource(load_json(dumps(resource)))
