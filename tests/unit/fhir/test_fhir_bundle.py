"""Bundles: entries, internal references and their order, unmapped types, and the Bundles we answer with."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from huizhen.integration.model import Consultation, Identifier, Observation, Patient
from huizhen.mappings.fhir import systems
from huizhen.mappings.fhir.bundle import parse_bundle
from huizhen.mappings.fhir.bundle_map import map_bundle
from huizhen.mappings.fhir.bundle_response import (
    EntryResult,
    batch_response,
    searchset,
    status_line,
    transaction_response,
)
from huizhen.mappings.fhir.outcome import InvalidResource, IssueSeverity, IssueType, error, information
from huizhen.mappings.fhir.result import Mapped, Unmapped
from huizhen.mappings.fhir.validate import validate_resource

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", "/work/shared/corpus"))
PATIENT_URN = "urn:uuid:0b6f3c1e-1111-4a4a-9c9c-000000000001"
CONDITION_URN = "urn:uuid:0b6f3c1e-1111-4a4a-9c9c-000000000002"


def corpus(name: str) -> bytes:
    path = next(CORPUS.glob(f"fhir/*/{name}"), None)
    if path is None:
        pytest.skip("test corpus not present")
    return path.read_bytes()


def entry(
    full_url: str | None, resource: dict[str, Any] | None, method: str = "POST", url: str | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {"request": {"method": method, "url": url or (resource or {}).get("resourceType", "")}}
    if full_url:
        found["fullUrl"] = full_url
    if resource is not None:
        found["resource"] = resource
    return found


def observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": systems.LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 88, "unit": "/min", "system": systems.UCUM, "code": "/min"},
    }


PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:his:mrn", "value": "M1"}],
    "name": [{"family": "张", "given": ["三"]}],
}
CLAIM = {
    "resourceType": "Claim",
    "status": "active",
    "type": {"text": "professional"},
    "use": "claim",
    "patient": {"reference": PATIENT_URN},
    "created": "2024-03-01",
    "provider": {"display": "卫生院"},
    "priority": {"text": "normal"},
    "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "新农合"}}],
}


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_urn_uuid_references_order_the_entries() -> None:
    bundle = parse_bundle(
        transaction(
            entry("urn:uuid:0b6f3c1e-1111-4a4a-9c9c-00000000000a", observation(PATIENT_URN)),
            entry(None, CLAIM),
            entry(PATIENT_URN, PATIENT),
        )
    )
    assert not bundle.rejected and bundle.order == (2, 0, 1)
    assert bundle.resolve(PATIENT_URN) == 2
    assert bundle.resolve("Patient?identifier=urn:his:mrn|M1") == 2
    claim = bundle.entries[1]
    assert not claim.applies and claim.ok
    assert claim.issues[0].severity is IssueSeverity.INFORMATION
    assert claim.issues[0].expression == ("Bundle.entry[1].resource",)
    mapped = map_bundle(bundle)
    assert [type(m.result).__name__ for m in mapped] == ["Mapped", "Mapped", "Unmapped"]
    assert isinstance(mapped[0].result, Mapped) and isinstance(mapped[0].result.entity, Patient)
    obs = mapped[1].result
    assert isinstance(obs, Mapped) and bundle.resolve(obs.ref("patient_id").url or "") == 2  # type: ignore[union-attr]


def test_a_reference_to_nothing() -> None:
    body = transaction(
        entry(None, observation("urn:uuid:0b6f3c1e-1111-4a4a-9c9c-0000000000ff")), entry(PATIENT_URN, PATIENT)
    )
    bundle = parse_bundle(body)
    assert bundle.rejected
    issue = bundle.entries[0].issues[0]
    assert (issue.code, issue.expression) == (IssueType.NOT_FOUND, ("Bundle.entry[0].resource.subject.reference",))
    batch = parse_bundle({**body, "type": "batch"})
    assert not batch.rejected and [e.ok for e in batch.entries] == [False, True]
    assert [m.result is not None for m in map_bundle(batch)] == [False, True]  # the bad entry is not mapped


def test_one_bad_entry_rejects_a_transaction_only() -> None:
    bad = {**PATIENT, "gender": "man"}
    body = transaction(entry(PATIENT_URN, bad), entry(None, observation(PATIENT_URN)))
    bundle = parse_bundle(body)
    assert bundle.rejected
    assert [i.expression for i in bundle.all_issues() if i.blocking] == [("Bundle.entry[0].resource.gender",)]
    batch = parse_bundle({**body, "type": "batch"})
    assert not batch.rejected and [e.ok for e in batch.entries] == [False, True]


def test_entry_rules() -> None:
    body = transaction(
        {"fullUrl": PATIENT_URN, "resource": PATIENT},  # no request (bdl-3)
        entry(None, None, "DELETE", "Patient/1"),
        entry(None, observation(PATIENT_URN), "PUT", "Patient/2"),  # url names another type
        entry(None, PATIENT, "POST", "Patient/$validate"),
        entry(PATIENT_URN, PATIENT),  # fullUrl twice (bdl-7)
    )
    bundle = parse_bundle(body)
    where = {e for i in bundle.all_issues() if i.blocking for e in i.expression}
    assert where == {
        "Bundle.entry[0].request",
        "Bundle.entry[1].request.method",
        "Bundle.entry[2].request.url",
        "Bundle.entry[3].request.url",
        "Bundle.entry[4].fullUrl",
    }


def test_conditional_create_and_update() -> None:
    bundle = parse_bundle(
        transaction(
            {
                **entry(PATIENT_URN, PATIENT),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:his:mrn|M1"},
            },
            entry(None, PATIENT, "PUT", "Patient?identifier=urn:his:mrn|M1"),
            entry(None, PATIENT, "PUT", "Patient/abc"),
        )
    )
    assert [e.condition for e in bundle.entries] == [Identifier("urn:his:mrn", "M1")] * 2 + [None]
    assert bundle.resolve("Patient/abc") == 2


def test_circular_references_keep_index_order() -> None:
    a, b = "urn:uuid:0b6f3c1e-1111-4a4a-9c9c-0000000000a1", "urn:uuid:0b6f3c1e-1111-4a4a-9c9c-0000000000b1"
    first = {"resourceType": "Patient", "link": [{"other": {"reference": b}, "type": "seealso"}]}
    second = {"resourceType": "Patient", "link": [{"other": {"reference": a}, "type": "seealso"}]}
    bundle = parse_bundle(transaction(entry(a, first), entry(b, second)))
    assert bundle.order == (0, 1) and bundle.issues[0].code is IssueType.PROCESSING


def test_disease_code_from_a_condition_in_the_same_bundle() -> None:
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": systems.ICD10, "code": "I63.9", "display": "脑梗死"}]},
        "subject": {"reference": PATIENT_URN},
    }
    request = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:his:placer", "value": "ORD-7"}],
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"code": "HZCONSULT-NEURO"}]},
        "subject": {"reference": PATIENT_URN},
        "reasonReference": [{"reference": CONDITION_URN}],
    }
    bundle = parse_bundle(
        transaction(entry(None, request), entry(CONDITION_URN, condition), entry(PATIENT_URN, PATIENT))
    )
    assert bundle.order == (2, 1, 0)
    mapped = map_bundle(bundle, consultation_codes={("", "HZCONSULT-NEURO"): "神经内科"})
    consult = mapped[-1].result
    assert isinstance(consult, Mapped) and isinstance(consult.entity, Consultation)
    assert (consult.entity.disease_code, consult.entity.disease_name, consult.entity.department) == (
        "I63.9",
        "脑梗死",
        "神经内科",
    )
    diagnosis = mapped[1].result
    assert isinstance(diagnosis, Mapped) and isinstance(diagnosis.entity, Observation)


def test_unusable_bundles_raise() -> None:
    for name, where in (
        ("Normative_Bundle-InvalidBundleType.json", "Bundle.type"),
        ("Normative_Bundle-TypeMissing.json", "Bundle.type"),
    ):
        with pytest.raises(InvalidResource) as caught:
            parse_bundle(corpus(name))
        assert caught.value.issues[0].expression == (where,)
    with pytest.raises(InvalidResource):
        parse_bundle(corpus("Normative_Bundle-TransactionWithInvalidBundleEntry.json"))
    with pytest.raises(InvalidResource):
        parse_bundle(b'{"resourceType": "Patient"}')


def test_a_real_bundle_is_accepted_for_what_huizhen_maps() -> None:
    bundle = parse_bundle(corpus("hl7v2-expected_ADT04-251-expected.json"))
    assert bundle.type == "batch" and all(e.ok for e in bundle.entries)
    applied = sorted(e.resource.resource_type for e in bundle.entries if e.applies and e.resource)
    assert applied == ["Encounter", "Organization", "Patient", "Practitioner"]
    skipped = {e.resource.resource_type for e in bundle.entries if not e.applies and e.resource}
    assert skipped == {"Account", "MessageHeader", "Provenance", "RelatedPerson"}
    results = map_bundle(bundle)
    assert sum(isinstance(m.result, Unmapped) for m in results) == 4


def test_corpus_transactions() -> None:
    smart = parse_bundle(corpus("R4_SmartPatientA.json"))
    assert smart.rejected
    bad = {i.expression[0].split(".resource")[0] for i in smart.all_issues() if i.blocking}
    assert bad == {"Bundle.entry[10]", "Bundle.entry[11]"}
    claim = next(e for e in smart.entries if e.resource and e.resource.resource_type == "Claim")
    assert claim.ok and not claim.applies
    normative = parse_bundle(corpus("Normative_Bundle-Transaction.json"))
    not_supported = {i.expression[0] for i in normative.all_issues() if i.code is IssueType.NOT_SUPPORTED}
    assert not_supported == {
        "Bundle.entry[5].request.method",
        "Bundle.entry[6].request.method",
        "Bundle.entry[7].request.url",
        "Bundle.entry[8].request.method",
        "Bundle.entry[9].request.method",
    }
    with_refs = parse_bundle(corpus("R4_Bundle-TransactionWithReferenceInResourceBody.json"))
    patient = next(e.index for e in with_refs.entries if e.resource and e.resource.resource_type == "Patient")
    encounter = next(e.index for e in with_refs.entries if e.resource and e.resource.resource_type == "Encounter")
    assert with_refs.order.index(patient) < with_refs.order.index(encounter)


def test_transaction_and_batch_responses() -> None:
    when = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))
    results = [
        EntryResult(201, "Patient/abc/_history/1", 'W/"1"', when),
        EntryResult(200, outcome=[information(IssueType.INFORMATIONAL, "Claim is validated but not applied")]),
        EntryResult(
            422, outcome=[error(IssueType.CODE_INVALID, "'man' is not a gender", "Bundle.entry[2].resource.gender")]
        ),
    ]
    for build, kind in ((transaction_response, "transaction-response"), (batch_response, "batch-response")):
        rendered = build(results)
        assert validate_resource(rendered).model is not None
        assert rendered["type"] == kind
        statuses = [e["response"]["status"] for e in rendered["entry"]]
        assert statuses[:2] == ["201 Created", "200 OK"] and statuses[2].startswith("422 Unprocessable")
        assert rendered["entry"][0]["response"]["lastModified"] == "2024-03-01T09:00:00+08:00"
        assert rendered["entry"][2]["response"]["outcome"]["issue"][0]["code"] == "code-invalid"
    assert status_line(299) == "299"


def test_searchset_with_paging() -> None:
    patients = [{"resourceType": "Patient", "id": f"p{n}"} for n in range(2)]
    page = searchset(
        patients,
        base_url="https://hz.example.cn/fhir/",
        self_url="https://hz.example.cn/fhir/Patient?name=张&_count=2",
        next_url="https://hz.example.cn/fhir/Patient?name=张&_count=2&_cursor=abc",
        total=5,
        included=[{"resourceType": "Organization", "id": "o1"}],
        issues=[information(IssueType.INFORMATIONAL, "name search is exact")],
    )
    assert validate_resource(json.loads(json.dumps(page))).model is not None
    assert [link["relation"] for link in page["link"]] == ["self", "next"]
    assert page["total"] == 5
    assert page["entry"][0] == {
        "fullUrl": "https://hz.example.cn/fhir/Patient/p0",
        "resource": patients[0],
        "search": {"mode": "match"},
    }
    assert [e["search"]["mode"] for e in page["entry"]] == ["match", "match", "include", "outcome"]
    empty = searchset([], base_url="https://hz.example.cn/fhir", self_url="https://hz.example.cn/fhir/Patient", total=0)
    assert validate_resource(empty).model is not None and "entry" not in empty
