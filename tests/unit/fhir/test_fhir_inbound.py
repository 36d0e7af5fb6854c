"""Inbound mapping: FHIR R4 resources → canonical entities plus unresolved references."""

from __future__ import annotations

import base64
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    Document,
    Encounter,
    Facility,
    FacilityLevel,
    Gender,
    Identifier,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
    PractitionerTitle,
    Urgency,
)
from huizhen.mappings.fhir import systems
from huizhen.mappings.fhir.inbound import map_resource
from huizhen.mappings.fhir.outcome import InvalidResource
from huizhen.mappings.fhir.references import RefKind
from huizhen.mappings.fhir.result import Mapped, PractitionerRoleInfo, Unmapped, UnmappedReason
from huizhen.mappings.fhir.validate import parse_resource, validate_resource

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", "/work/shared/corpus"))
CST = timezone(timedelta(hours=8))
CONSULT = {("http://his.example.cn/order-code", "HZCONSULT"), ("*", "会诊")}


def mapped(resource: dict[str, Any], **kwargs: Any) -> Mapped[Any]:
    result = map_resource(validate_resource(resource), **kwargs)
    assert isinstance(result, Mapped), result
    return result


def corpus(name: str) -> dict[str, Any]:
    path = next(CORPUS.glob(f"fhir/*/{name}"), None)
    if path is None:
        pytest.skip("test corpus not present")
    return parse_resource(path.read_bytes()).data


CHINESE_PATIENT = {
    "resourceType": "Patient",
    "id": "p-zhang",
    "identifier": [
        {"system": "http://his.xiangzhen.example.cn/mrn", "value": "MRN0001"},
        {"system": "urn:oid:2.16.156.10011.1.20", "value": "330106199001011234"},
        {"value": "no-system"},
    ],
    "name": [
        {"use": "usual", "family": "Zhang", "given": ["San"]},
        {"use": "official", "family": "张", "given": ["三"]},
    ],
    "gender": "male",
    "birthDate": "1990-01-01",
    "telecom": [
        {"system": "email", "value": "z@example.cn"},
        {"system": "phone", "value": "0571-1234", "use": "home"},
        {"system": "phone", "value": "13800000000", "use": "mobile"},
    ],
    "address": [{"state": "浙江省", "city": "杭州市", "district": "西湖区", "line": ["文三路1号"]}],
    "managingOrganization": {"reference": "Organization/thc-01"},
}


def test_chinese_patient() -> None:
    result = mapped(CHINESE_PATIENT)
    p: Patient = result.entity
    assert p.name.text == "张三" and p.name.family == "张" and p.name.given == ("三",)
    assert p.identifiers == [
        Identifier("http://his.xiangzhen.example.cn/mrn", "MRN0001"),
        Identifier("urn:oid:2.16.156.10011.1.20", "330106199001011234"),
        Identifier("", "no-system"),
    ]
    assert (p.gender, p.birth_date, p.phone) == (Gender.MALE, date(1990, 1, 1), "13800000000")
    assert p.address == "浙江省杭州市西湖区文三路1号"
    assert result.fhir_id == "p-zhang"
    facility = result.ref("facility_id")
    assert facility is not None and (facility.kind, facility.type, facility.id) == (
        RefKind.RELATIVE,
        "Organization",
        "thc-01",
    )


def test_name_text_wins_and_latin_names_keep_spaces() -> None:
    p = mapped({"resourceType": "Patient", "name": [{"text": "欧阳 娜娜", "family": "欧阳", "given": ["娜娜"]}]}).entity
    assert p.name.text == "欧阳 娜娜"
    p = mapped({"resourceType": "Patient", "name": [{"family": "欧阳", "given": ["娜娜"]}]}).entity
    assert p.name.text == "欧阳娜娜"
    p = mapped(corpus("Normative_Patient-f001.json")).entity
    assert p.name.text == "Pieter van de Heuvel"


def test_partial_birth_date_is_a_warning_not_a_guess() -> None:
    result = mapped({"resourceType": "Patient", "birthDate": "1990"})
    assert result.entity.birth_date is None
    assert result.warnings[0].expression == ("Patient.birthDate",)


def test_merged_patient_links_to_survivor() -> None:
    result = mapped(
        {"resourceType": "Patient", "link": [{"other": {"reference": "Patient/p2"}, "type": "replaced-by"}]}
    )
    assert result.ref("merged_into") is not None


def test_practitioner_title_and_role() -> None:
    doc = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:cn:physician-license", "value": "110330000012345"}],
        "name": [{"family": "李", "given": ["四"]}],
        "qualification": [{"code": {"text": "副主任医师"}}],
    }
    p: Practitioner = mapped(doc).entity
    assert (p.name.text, p.title) == ("李四", PractitionerTitle.ASSOCIATE_CHIEF)
    coded = {**doc, "qualification": [{"code": {"coding": [{"system": systems.PRACTITIONER_TITLE, "code": "CHIEF"}]}}]}
    assert mapped(coded).entity.title is PractitionerTitle.CHIEF
    assert mapped(corpus("R4_practitioner-example.json")).entity.title is None  # "MD"-style degrees are not titles
    role = mapped(
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": "Practitioner/li4"},
            "organization": {"reference": "Organization/h1"},
            "specialty": [{"text": "心血管内科"}, {"coding": [{"code": "394579002", "display": "Cardiology"}]}],
        }
    )
    info: PractitionerRoleInfo = role.entity
    assert info.department == "心血管内科" and info.specialties == ("心血管内科", "Cardiology")
    assert role.ref("practitioner") is not None and role.ref("facility_id") is not None


def test_organization_as_facility() -> None:
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:cn:org", "value": "THC-01"}],
        "name": "西湖区转塘街道社区卫生服务中心",
        "address": [{"state": "浙江省", "city": "杭州市", "district": "西湖区"}],
    }
    f: Facility = mapped(org).entity
    assert (f.code, f.level, f.region) == ("THC-01", FacilityLevel.PRIMARY, "浙江省杭州市西湖区")
    by_ext = {**org, "extension": [{"url": systems.EXT_FACILITY_LEVEL, "valueCode": "TERTIARY"}]}
    assert mapped(by_ext).entity.level is FacilityLevel.TERTIARY
    by_type = {**org, "type": [{"text": "三级甲等医院"}]}
    assert mapped(by_type).entity.level is FacilityLevel.TERTIARY
    no_id = mapped(corpus("R4_Organization.json"))
    assert no_id.entity.code == no_id.fhir_id == "msft"


def test_encounter() -> None:
    result = mapped(corpus("R4_encounter-example.json"))
    e: Encounter = result.entity
    assert (e.status, e.class_code) == ("in-progress", "IMP")
    assert result.ref("patient_id") is not None and e.patient_id == ""
    full = mapped(
        {
            "resourceType": "Encounter",
            "identifier": [{"system": "urn:his:visit", "value": "V001"}],
            "status": "finished",
            "class": {"system": systems.V3_ACT_CODE, "code": "AMB"},
            "serviceType": {"text": "全科门诊"},
            "subject": {"reference": "urn:uuid:4f1c7e2a-0000-4000-8000-000000000001"},
            "participant": [
                {"individual": {"reference": "Practitioner/nurse"}},
                {
                    "type": [{"coding": [{"system": systems.V3_PARTICIPATION, "code": "ATND"}]}],
                    "individual": {"reference": "Practitioner/doc"},
                },
            ],
            "period": {"start": "2024-03-01T08:30:00+08:00", "end": "2024-03-01T09:00:00+08:00"},
            "location": [{"location": {"display": "2号诊室"}}],
        }
    )
    assert full.entity.department == "全科门诊" and full.entity.location == "2号诊室"
    assert full.entity.start == datetime(2024, 3, 1, 8, 30, tzinfo=CST)
    assert full.ref("attending_id").id == "doc"  # type: ignore[union-attr]
    assert full.ref("patient_id").kind is RefKind.URN  # type: ignore[union-attr]


def test_observation_quantity_range_interpretation() -> None:
    result = mapped(corpus("Normative_BloodGlucose.json"))
    o: Observation = result.entity
    assert (o.code.system, o.code.code) == (systems.LOINC, "15074-8")
    assert (o.value_type, o.value_quantity, o.unit) == ("NM", Decimal("6.3"), "mmol/L")
    assert o.interpretation == "H"
    assert o.reference_range is not None and (o.reference_range.low, o.reference_range.high) == (
        Decimal("3.1"),
        Decimal("6.2"),
    )
    assert o.effective_at == datetime(2013, 4, 2, 9, 30, 10, tzinfo=timezone(timedelta(hours=1)))


def test_observation_components_become_parts() -> None:
    result = mapped(corpus("Normative_BloodPressure.json"))
    assert result.entity.code.code == "85354-9" and result.entity.value_type is None
    parts = {p.code.code: p for p in result.parts}
    assert set(parts) == {"8480-6", "8462-4"}
    assert (parts["8480-6"].value_quantity, parts["8480-6"].unit) == (Decimal(107), "mm[Hg]")
    assert parts["8462-4"].interpretation == "L"
    assert all(p.effective_at == result.entity.effective_at for p in result.parts)
    apgar = mapped(corpus("Normative_ObservationWith1MinuteApgarScore.json"))
    assert apgar.entity.value_quantity is not None and len(apgar.parts) == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"valueString": "阴性"}, ("ST", None, "阴性", None)),
        ({"valueBoolean": True}, ("CWE", None, None, "Y")),
        ({"valueInteger": 3}, ("NM", Decimal(3), None, None)),
        ({"valueQuantity": {"value": 0.5, "comparator": "<", "unit": "mg/L"}}, ("SN", None, "<0.5", None)),
        (
            {"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}},
            ("CWE", None, None, "260385009"),
        ),
        ({"valueDateTime": "2024-01-02T03:04:05+08:00"}, ("DTM", None, "2024-01-02T03:04:05+08:00", None)),
    ],
)
def test_observation_value_types(value: dict[str, Any], expected: tuple[Any, ...]) -> None:
    o = mapped({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **value}).entity
    assert (o.value_type, o.value_quantity, o.value_string, o.value_coding.code if o.value_coding else None) == expected


def test_condition_is_a_coded_diagnosis() -> None:
    result = mapped(
        {
            "resourceType": "Condition",
            "verificationStatus": {"coding": [{"system": systems.CONDITION_VERIFICATION, "code": "provisional"}]},
            "code": {"coding": [{"system": systems.ICD10, "code": "I20.0", "display": "不稳定性心绞痛"}]},
            "subject": {"reference": "Patient/p1"},
            "onsetDateTime": "2024-02-01",
        }
    )
    o: Observation = result.entity
    assert (o.code.code, o.status, o.value_type) == (systems.LOINC_DIAGNOSIS, "preliminary", "CWE")
    assert o.value_coding is not None and (o.value_coding.code, o.value_coding.display) == ("I20.0", "不稳定性心绞痛")
    assert o.effective_at == datetime(2024, 2, 1)
    assert mapped(corpus("R4_condition-example2.json")).entity.value_string or True


def test_diagnostic_report_as_document() -> None:
    plan = base64.b64encode("建议冠脉造影".encode()).decode()
    result = mapped(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "会诊报告"},
            "subject": {"reference": "Patient/p1"},
            "issued": "2024-03-01T10:00:00+08:00",
            "result": [{"reference": "Observation/o1"}, {"reference": "Observation/o2"}],
            "conclusion": "不稳定性心绞痛",
            "presentedForm": [
                {"contentType": "text/plain; charset=utf-8", "data": plan},
                {"contentType": "application/pdf", "url": "http://pacs.example.cn/r.pdf"},
            ],
        }
    )
    d: Document = result.entity
    assert (d.title, d.text) == ("会诊报告", "不稳定性心绞痛\n建议冠脉造影")
    assert len(result.refs("result")) == 2 and result.content[0].url == "http://pacs.example.cn/r.pdf"


def test_imaging_study() -> None:
    result = mapped(corpus("R4_imagingstudy-example.json"))
    s: ImagingStudy = result.entity
    assert s.study_instance_uid == "2.16.124.113543.6003.1154777499.30246.19789.3503430045"
    assert s.modalities == ["CT"] and (s.series_count, s.instance_count) == (1, 1)
    instance = s.series[0].instances[0]
    assert (instance.sop_instance_uid, instance.sop_class_uid) == (
        "2.16.124.113543.6003.189642796.63084.16748.2599092903",
        "1.2.840.10008.5.1.4.1.1.2",
    )
    no_uid = {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": "Patient/p"}}
    with pytest.raises(InvalidResource) as caught:
        map_resource(validate_resource(no_uid))
    assert caught.value.issues[0].expression == ("ImagingStudy.identifier",)


def test_document_reference_with_text_and_binary() -> None:
    bundle = corpus("hl7v2-expected_MDM-T01-01-expected.json")
    resource = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    result = mapped(resource)
    assert (result.entity.title, result.entity.identifiers) == (
        "DI",
        [Identifier("", "1.2.840.317.5947431.51.20080131160038")],
    )
    assert result.entity.created_at == datetime(2008, 1, 31, 19, 15, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "description": "转诊单",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=gbk",
                    "data": base64.b64encode("胸痛".encode("gbk")).decode(),
                }
            },
            {"attachment": {"contentType": "image/jpeg", "data": base64.b64encode(b"\xff\xd8\xff").decode()}},
        ],
    }
    doc = mapped(note)
    assert (doc.entity.title, doc.entity.text, doc.entity.content_type) == ("转诊单", "胸痛", "image/jpeg")
    assert doc.content[0].data == b"\xff\xd8\xff"


CONSULT_REQUEST = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "identifier": [
        {"system": "urn:his:filler", "value": "F-9"},
        {
            "type": {"coding": [{"system": systems.V2_IDENTIFIER_TYPE, "code": "PLAC"}]},
            "system": "urn:his:placer",
            "value": "ORD-2024-0001",
        },
    ],
    "status": "active",
    "intent": "order",
    "priority": "stat",
    "code": {"coding": [{"system": "http://his.example.cn/order-code", "code": "HZCONSULT"}]},
    "subject": {"reference": "Patient/p-zhang"},
    "requester": {"reference": "Practitioner/dr-wang"},
    "performer": [{"reference": "Practitioner/expert-li"}],
    "performerType": {"text": "心血管内科"},
    "reasonCode": [
        {"coding": [{"system": systems.ICD10, "code": "I20.0", "display": "不稳定性心绞痛"}]},
        {"text": "胸痛3天"},
    ],
    "reasonReference": [{"reference": "Condition/c1"}],
    "supportingInfo": [{"reference": "Observation/ecg"}],
    "note": [{"text": "是否需要介入治疗？"}],
    "authoredOn": "2024-03-01T08:00:00+08:00",
}


def test_service_request_as_consultation() -> None:
    result = mapped(CONSULT_REQUEST, consultation_codes=CONSULT)
    c: Consultation = result.entity
    assert c.source_order == Identifier("urn:his:placer", "ORD-2024-0001")
    assert (c.department, c.urgency, c.status) == ("心血管内科", Urgency.CRITICAL, ConsultationStatus.PENDING)
    assert (c.disease_code, c.disease_name, c.chief_complaint) == ("I20.0", "不稳定性心绞痛", "胸痛3天")
    assert c.question == "是否需要介入治疗？"
    assert c.created_at == datetime(2024, 3, 1, 8, tzinfo=CST)
    slots = {link.slot for link in result.links}
    assert {"patient_id", "requester_id", "preferred_expert_id", "disease", "supporting_info"} <= slots


def test_service_request_table_decides() -> None:
    other = map_resource(validate_resource(corpus("R4_servicerequest-example.json")), consultation_codes=CONSULT)
    assert isinstance(other, Unmapped) and other.reason is UnmappedReason.FILTERED
    by_category = {**CONSULT_REQUEST, "code": {"text": "x"}, "category": [{"coding": [{"code": "会诊"}]}]}
    assert isinstance(map_resource(validate_resource(by_category), consultation_codes=CONSULT), Mapped)
    table = {("http://his.example.cn/order-code", "HZCONSULT"): "神经内科"}
    no_type = {k: v for k, v in CONSULT_REQUEST.items() if k != "performerType"}
    assert mapped(no_type, consultation_codes=table).entity.department == "神经内科"
    no_id = {k: v for k, v in CONSULT_REQUEST.items() if k != "identifier"}
    assert mapped(no_id, consultation_codes=CONSULT).warnings[0].expression == ("ServiceRequest.identifier",)
    revoked = mapped({**CONSULT_REQUEST, "status": "revoked"}, consultation_codes=CONSULT).entity
    assert revoked.status is ConsultationStatus.CANCELLED and revoked.cancel_reason


def test_unmapped_types_are_typed_results() -> None:
    result = map_resource(validate_resource(corpus("R4_Immunization.json")))
    assert isinstance(result, Unmapped) and result.reason is UnmappedReason.NOT_SUPPORTED
    result = map_resource(parse_resource(b'{"resourceType": "MedicinalProduct"}'))
    assert isinstance(result, Unmapped) and result.reason is UnmappedReason.NOT_VALIDATED


def _corpus_resources() -> list[tuple[str, dict[str, Any]]]:
    if not (CORPUS / "manifest.json").exists():
        return []
    files = json.loads((CORPUS / "manifest.json").read_text("utf-8"))["files"]
    found = []
    for f in files:
        if f["kind"] != "fhir" or not f["expected_valid"]:
            continue
        data = parse_resource((CORPUS / f["path"]).read_bytes()).data
        items = (
            [e["resource"] for e in data.get("entry", []) if "resource" in e]
            if data["resourceType"] == "Bundle"
            else [data]
        )
        found += [(f"{Path(f['path']).name}#{n}", item) for n, item in enumerate(items)]
    return found


@pytest.mark.parametrize(("name", "resource"), _corpus_resources(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_valid_corpus_resource_maps(name: str, resource: dict[str, Any]) -> None:
    result = map_resource(validate_resource(resource), consultation_codes=CONSULT)
    assert isinstance(result, Mapped | Unmapped)
    if isinstance(result, Mapped):
        assert result.resource_type == resource["resourceType"]
