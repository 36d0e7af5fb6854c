"""Round trip: FHIR in → canonical → FHIR out → valid, with identifiers, codes, values, units, references, dates kept.

A stand-in for the engine resolves each reference to a canonical id; the
rendered reference must then point at that id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from huizhen.mappings.fhir import outbound, systems
from huizhen.mappings.fhir.inbound import map_resource
from huizhen.mappings.fhir.jsonio import dumps
from huizhen.mappings.fhir.outbound_consultation import service_request
from huizhen.mappings.fhir.references import Ref
from huizhen.mappings.fhir.result import Mapped
from huizhen.mappings.fhir.validate import parse_resource, validate_resource

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", "/work/shared/corpus"))
CONSULT = {("http://his.example.cn/order-code", "HZCONSULT")}
CHINESE_PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {"system": "http://his.xiangzhen.example.cn/mrn", "value": "MRN0001"},
        {"system": "urn:oid:2.16.156.10011.1.20", "value": "330106199001011234"},
    ],
    "name": [{"use": "usual", "text": "Zhang San"}, {"use": "official", "family": "张", "given": ["三"]}],
    "gender": "male",
    "birthDate": "1990-01-01",
    "telecom": [{"system": "phone", "value": "13800000000", "use": "mobile"}],
    "address": [{"state": "浙江省", "city": "杭州市", "district": "西湖区", "line": ["文三路1号"]}],
    "managingOrganization": {"reference": "Organization/thc-01"},
}
CONSULT_REQUEST = {
    "resourceType": "ServiceRequest",
    "identifier": [
        {
            "type": {"coding": [{"system": systems.V2_IDENTIFIER_TYPE, "code": "PLAC"}]},
            "system": "urn:his:placer",
            "value": "ORD-2024-0001",
        }
    ],
    "status": "active",
    "intent": "order",
    "priority": "urgent",
    "code": {"coding": [{"system": "http://his.example.cn/order-code", "code": "HZCONSULT"}]},
    "subject": {"reference": "Patient/p-zhang"},
    "requester": {"reference": "Practitioner/dr-wang"},
    "performerType": {"text": "心血管内科"},
    "reasonCode": [
        {"coding": [{"system": systems.ICD10, "code": "I20.0", "display": "不稳定性心绞痛"}]},
        {"text": "胸痛3天"},
    ],
    "note": [{"text": "是否需要介入治疗？"}],
    "authoredOn": "2024-03-01T08:00:00+08:00",
}
RENDER: dict[str, Callable[[Any], dict[str, Any]]] = {
    "Patient": outbound.patient,
    "Practitioner": outbound.practitioner,
    "Organization": outbound.organization,
    "Encounter": outbound.encounter,
    "ImagingStudy": outbound.imaging_study,
}


def canonical_id(ref: Ref) -> str:
    return f"hz-{ref.type or 'x'}-{ref.id or abs(hash(str(ref)))}".lower()


def resolve(result: Mapped[Any]) -> dict[str, str]:
    """What the engine does with links: fill each canonical id field."""
    filled = {}
    for link in result.links:
        for entity in (result.entity, *result.parts):
            if hasattr(entity, link.slot):
                setattr(entity, link.slot, canonical_id(link.ref))
                filled[link.slot] = canonical_id(link.ref)
    return filled


def round_trip(resource: dict[str, Any]) -> tuple[Mapped[Any], dict[str, Any]]:
    result = map_resource(validate_resource(resource), consultation_codes=CONSULT)
    assert isinstance(result, Mapped)
    resolve(result)
    if result.resource_type == "Observation":
        rendered = outbound.observation(result.entity, result.parts)
    elif result.resource_type == "ServiceRequest":
        rendered = service_request(result.entity)
    else:
        rendered = RENDER[result.resource_type](result.entity)
    return result, parse_resource(dumps(rendered)).data  # out, as bytes, validated again


def idents(resource: dict[str, Any]) -> set[tuple[str | None, str]]:
    return {(i.get("system"), i["value"]) for i in resource.get("identifier", []) if "value" in i}


def coded(*concepts: dict[str, Any]) -> set[tuple[str | None, str]]:
    """(system, code) of every coding of these CodeableConcepts."""
    return {(c.get("system"), c["code"]) for cc in concepts for c in cc.get("coding", []) if "code" in c}


def moment(value: str) -> datetime | str:
    """dateTime text → comparable value (date-only stays text: its precision must survive)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else value


def corpus_resources(*types: str) -> list[dict[str, Any]]:
    if not (CORPUS / "manifest.json").exists():
        return []
    found = []
    for f in json.loads((CORPUS / "manifest.json").read_text("utf-8"))["files"]:
        if f["kind"] != "fhir" or not f["expected_valid"]:
            continue
        data = parse_resource((CORPUS / f["path"]).read_bytes()).data
        items = (
            [e["resource"] for e in data.get("entry", []) if "resource" in e]
            if data["resourceType"] == "Bundle"
            else [data]
        )
        found += [item for item in items if item["resourceType"] in types]
    return found


def _id(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource.get('id', '?')}"


@pytest.mark.parametrize("resource", corpus_resources("Patient"), ids=_id)
def test_patient(resource: dict[str, Any]) -> None:
    _, out = round_trip(resource)
    assert idents(resource) <= idents(out)
    for key in ("gender", "birthDate"):
        assert out.get(key) == resource.get(key)


@pytest.mark.parametrize("resource", corpus_resources("Observation"), ids=_id)
def test_observation(resource: dict[str, Any]) -> None:
    result, out = round_trip(resource)
    assert idents(resource) <= idents(out)
    chosen = result.entity.code
    assert {"system": chosen.system, "code": chosen.code} in [
        {k: c.get(k) for k in ("system", "code")} for c in resource["code"].get("coding", [])
    ]
    assert out["code"]["coding"][0]["code"] == chosen.code
    assert coded(out["code"]) == coded(resource["code"])  # every coding, not only the chosen one
    assert coded(*out.get("category", [])) == coded(*resource.get("category", []))
    if "issued" in resource:
        assert moment(out["issued"]) == moment(resource["issued"])
    if "valueCodeableConcept" in resource:
        assert coded(out["valueCodeableConcept"]) == coded(resource["valueCodeableConcept"])
    if "valueQuantity" in resource:
        q_in, q_out = resource["valueQuantity"], out["valueQuantity"]
        assert Decimal(q_out["value"]) == Decimal(q_in["value"])
        assert q_out["unit"] in (q_in.get("code"), q_in.get("unit"))
    if "effectiveDateTime" in resource:
        assert moment(out["effectiveDateTime"]) == moment(resource["effectiveDateTime"])
    assert len(out.get("component", [])) == len(resource.get("component", []))
    for c_in, c_out in zip(resource.get("component", []), out.get("component", []), strict=True):
        assert coded(c_out["code"]) == coded(c_in["code"])
        if "valueQuantity" in c_in:
            assert Decimal(c_out["valueQuantity"]["value"]) == Decimal(c_in["valueQuantity"]["value"])
    if "subject" in resource:
        assert out["subject"]["reference"] == f"Patient/{result.entity.patient_id}"


@pytest.mark.parametrize("resource", corpus_resources("Encounter"), ids=_id)
def test_encounter(resource: dict[str, Any]) -> None:
    result, out = round_trip(resource)
    assert idents(resource) <= idents(out)
    assert (out["status"], out["class"]["code"]) == (resource["status"], resource["class"]["code"])
    for key in ("start", "end"):
        if key in resource.get("period", {}):
            assert moment(out["period"][key]) == moment(resource["period"][key])
    assert out["subject"]["reference"] == f"Patient/{result.entity.patient_id}"


@pytest.mark.parametrize("resource", corpus_resources("Practitioner", "Organization"), ids=_id)
def test_practitioner_and_organization(resource: dict[str, Any]) -> None:
    _, out = round_trip(resource)
    if resource["resourceType"] == "Practitioner":
        assert idents(resource) <= idents(out)
    else:  # a facility keeps its code, not the code's system (see the report)
        assert not idents(resource) or next(iter(idents(out)))[1] == resource["identifier"][0]["value"]


@pytest.mark.parametrize("resource", corpus_resources("ImagingStudy"), ids=_id)
def test_imaging_study(resource: dict[str, Any]) -> None:
    _, out = round_trip(resource)
    assert idents(resource) <= idents(out)
    assert moment(out["started"]) == moment(resource["started"])
    for s_in, s_out in zip(resource["series"], out["series"], strict=True):
        assert (s_out["uid"], s_out["modality"]["code"]) == (s_in["uid"], s_in["modality"]["code"])
        assert [i["uid"] for i in s_out["instance"]] == [i["uid"] for i in s_in["instance"]]
        assert [i["sopClass"] for i in s_out["instance"]] == [i["sopClass"] for i in s_in["instance"]]


def test_chinese_patient_round_trip_and_back_again() -> None:
    first, out = round_trip(CHINESE_PATIENT)
    assert out["name"][0]["text"] == "张三" and out["telecom"] == [{"system": "phone", "value": "13800000000"}]
    assert out["managingOrganization"] == {"reference": f"Organization/{first.entity.facility_id}"}
    again, _ = round_trip(out)
    assert (again.entity.name, again.entity.identifiers, again.entity.address) == (
        first.entity.name,
        first.entity.identifiers,
        first.entity.address,
    )


def test_consultation_request_round_trip() -> None:
    first, out = round_trip(CONSULT_REQUEST)
    assert ("urn:his:placer", "ORD-2024-0001") in idents(out)
    assert out["requester"]["reference"] == f"Practitioner/{first.entity.requester_id}"
    assert out["subject"]["reference"] == f"Patient/{first.entity.patient_id}"
    assert coded(out["code"]) >= coded(CONSULT_REQUEST["code"])  # the HIS's own order code comes back
    assert (systems.SNOMED, systems.SNOMED_CONSULTATION) in coded(out["code"])  # beside what Huizhen made of it
    again = map_resource(validate_resource(out), consultation_codes=CONSULT)
    assert isinstance(again, Mapped)
    a, b = first.entity, again.entity
    fields = ("source_order", "department", "urgency", "disease_code", "disease_name", "chief_complaint", "question")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert b.created_at == a.created_at and b.status == a.status


def test_observation_keeps_every_coding_category_text_and_issued() -> None:
    """What the model does not search on is still kept: a LOINC code with a local twin and its own
    text, two categories, the release time, and a coded value in two systems."""
    sent = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                         "code": "laboratory", "display": "Laboratory"}]},
            {"text": "急诊"},
        ],
        "code": {
            "coding": [
                {"system": "http://his.example.cn/lab", "code": "GLU", "display": "血糖"},
                {"system": systems.LOINC, "code": "2345-7", "display": "Glucose [Mass/volume] in Serum or Plasma"},
            ],
            "text": "空腹血糖",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:00:00+08:00",
        "issued": "2024-03-01T09:30:00+08:00",
        "valueCodeableConcept": {"coding": [
            {"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"},
            {"system": "http://his.example.cn/result", "code": "NEG", "display": "阴性"},
        ]},
    }
    result, out = round_trip(sent)
    assert result.entity.code.code == "2345-7"  # LOINC first, whatever the order sent
    assert out["code"]["coding"][0]["code"] == "2345-7" and out["code"]["text"] == "空腹血糖"
    assert coded(out["code"]) == coded(sent["code"])
    assert [c.get("text") or c["coding"][0]["code"] for c in out["category"]] == ["laboratory", "急诊"]
    assert moment(out["issued"]) == moment(sent["issued"])
    assert coded(out["valueCodeableConcept"]) == coded(sent["valueCodeableConcept"])
