"""Every example of the FHIR corpus over real HTTP, on both back ends: the valid ones go in and
read back with identifiers, codes with systems, values with units, references and dates; the
invalid ones are answered with an OperationOutcome naming the element."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from huizhen.integration.model import MessageStatus
from tests.helpers import RunningServer
from tests.integration.fhir_support import (
    CORPUS,
    body,
    corpus,
    corpus_json,
    fhir_server,
    his_client,
    idents,
    location_path,
    outcome,
    valid,
)

CST = timezone(timedelta(hours=8))
SUBJECTS = ("example", "f001", "pat2", "dicom")  # patients the corpus refers to by logical id
UNSUPPORTED = ("Normative_Specimen.json", "R4_Immunization.json", "R4_allergyintolerance-example.json",
               "R4_appointment-example.json", "R4_medicationrequest0302.json", "R4_procedure-example.json",
               "R4_specimen-example.json")
SINGLE = ("Normative_Profile-Patient-uscore.json", "Normative_Patient-f001.json", "Normative_Practitioner.json",
          "R4_practitioner-example.json", "Normative_Profile-Organization-uscore.json", "R4_Organization.json",
          "R4_encounter-example.json", "R4_Encounter-For-Patient-f001.json", "Normative_BloodGlucose.json",
          "Normative_BloodPressure.json", "Normative_observation-example.json", "Normative_Weight.json",
          "R4_condition-example2.json", "R4_Condition-For-Patient-f001.json", "R4_imagingstudy-example.json")
# invalid examples: (status, an element the answer must name; None for unreadable JSON)
INVALID = {  # file: (where it is sent, status, an element the answer must name; None for unreadable JSON)
    "Normative_Bundle-InvalidBundleType.json": ("", 422, "Bundle.type"),
    "Normative_Bundle-TypeMissing.json": ("", 422, "Bundle.type"),
    "Normative_Bundle-TransactionWithInvalidBundleEntry.json": ("", 400, None),
    "ObservationBundle.json": ("", 400, "Bundle.type"),
    "R4_SmartPatientA.json": ("", 422, "Bundle.entry[10].resource.participant[0].status"),
    "Normative_InvalidObservation.json": ("/Observation", 400, "Observation.text"),
    "Normative_Observation-For-Patient-f001.json": ("/Observation", 400, "Observation.interpretation"),
    "Normative_ObservationWithTemperature.json": ("/Observation", 400, "Observation.interpretation"),
    "Normative_ObservationWithInvalidDecimalSpecification.json": (
        "/Observation", 422, "Observation.valueQuantity.value"
    ),
    "Normative_ObservationWithInvalidStatus.json": ("/Observation", 422, "Observation.status"),
    "Normative_ObservationWithNoCode.json": ("/Observation", 422, "Observation.code"),
    "Normative_Patient.json": ("/Patient", 422, "Patient.meta.lastUpdated"),
    "Normative_PatientMissingResourceType.json": ("/Patient", 400, "resourceType"),
    "Normative_PatientWithUnknownElements.json": ("/Patient", 400, "Patient.name1"),
}

@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with fhir_server(tmp_path, db_url) as srv:
        yield srv


@pytest.fixture
async def his(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with his_client(server) as c:
        yield c



async def send(c: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    data = json.loads(raw.decode("utf-8-sig"))
    if data.get("id"):
        return await c.put(f"/{data['resourceType']}/{data['id']}", content=raw)
    return await c.post(f"/{data['resourceType']}", content=raw)


def moment(value: str) -> datetime:
    """A FHIR dateTime as an instant; a date is that day's start in China (where Huizhen runs)."""
    if "T" not in value:
        return datetime.fromisoformat(value).replace(tzinfo=CST)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_valid_resources_round_trip(server: RunningServer, his: httpx.AsyncClient) -> None:
    subjects = {}
    for name in SUBJECTS:
        put = await his.put(f"/Patient/{name}", json={"resourceType": "Patient", "id": name})
        assert put.status_code == 200, put.text
        subjects[name] = location_path(put)
    for name in SINGLE:
        sent = corpus_json(name)
        answer = await send(his, corpus(name))
        assert answer.status_code in (200, 201), f"{name}: {answer.text}"
        read = await his.get(f"/{location_path(answer)}")
        assert read.status_code == 200, read.text
        out = valid(body(read))
        assert out == valid(body(answer))  # the answer is the resource as stored
        assert idents(sent) <= idents(out) or sent["resourceType"] == "Organization", name
        check = CHECKS.get(sent["resourceType"])
        if check is not None:
            check(sent, out, subjects)


def _subject(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    if "subject" in sent:
        assert out["subject"]["reference"] == subjects[sent["subject"]["reference"].split("/")[1]]


def _observation(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    _subject(sent, out, subjects)
    coded = {(c.get("system"), c["code"]) for c in sent["code"].get("coding", [])}
    assert (out["code"]["coding"][0].get("system"), out["code"]["coding"][0]["code"]) in coded
    assert {(c.get("system"), c["code"]) for c in out["code"].get("coding", [])} == coded  # none dropped
    assert _categories(out) == _categories(sent)
    if "issued" in sent:
        assert moment(out["issued"]) == moment(sent["issued"])
    for key in ("valueQuantity",):
        if key in sent:
            assert Decimal(str(out[key]["value"])) == Decimal(str(sent[key]["value"]))
            assert out[key]["unit"] in (sent[key].get("code"), sent[key].get("unit"))
    assert len(out.get("component", [])) == len(sent.get("component", []))
    for c_in, c_out in zip(sent.get("component", []), out.get("component", []), strict=True):
        assert c_out["code"]["coding"][0]["code"] == c_in["code"]["coding"][0]["code"]
        if "valueQuantity" in c_in:
            assert Decimal(str(c_out["valueQuantity"]["value"])) == Decimal(str(c_in["valueQuantity"]["value"]))
    if "effectiveDateTime" in sent:
        assert moment(out["effectiveDateTime"]) == moment(sent["effectiveDateTime"])


def _categories(resource: dict[str, Any]) -> list[set[tuple[str | None, str]]]:
    return [{(c.get("system"), c["code"]) for c in cc.get("coding", [])} for cc in resource.get("category", [])]


def _condition(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    _subject(sent, out, subjects)
    assert out["resourceType"] == "Observation" and out["code"]["coding"][0]["code"] == "29308-4"
    if sent["code"].get("coding"):
        assert out["valueCodeableConcept"]["coding"][0]["code"] in {c["code"] for c in sent["code"]["coding"]}


def _encounter(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    _subject(sent, out, subjects)
    assert (out["status"], out["class"]["code"]) == (sent["status"], sent["class"]["code"])
    for key in ("start", "end"):
        if key in sent.get("period", {}):
            assert moment(out["period"][key]) == moment(sent["period"][key])


def _imaging(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    _subject(sent, out, subjects)
    assert moment(out["started"]) == moment(sent["started"])
    for s_in, s_out in zip(sent["series"], out["series"], strict=True):
        assert (s_out["uid"], s_out["modality"]["code"]) == (s_in["uid"], s_in["modality"]["code"])
        assert [i["uid"] for i in s_out["instance"]] == [i["uid"] for i in s_in["instance"]]


def _patient(sent: dict[str, Any], out: dict[str, Any], subjects: dict[str, str]) -> None:
    assert (out.get("gender"), out.get("birthDate")) == (sent.get("gender"), sent.get("birthDate"))


CHECKS = {"Observation": _observation, "Condition": _condition, "Encounter": _encounter,
          "ImagingStudy": _imaging, "Patient": _patient}


async def test_resources_huizhen_does_not_take_are_refused_and_journaled(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    for name in UNSUPPORTED:
        [issue] = outcome(await send(his, corpus(name)), 404)
        assert issue["code"] == "not-supported", name
    [issue] = outcome(await send(his, corpus("R4_servicerequest-example.json")), 422)  # not a consultation
    assert issue["code"] == "business-rule"
    [issue] = outcome(await send(his, corpus("Normative_ObservationWith1MinuteApgarScore.json")), 422)
    assert issue["expression"] == ["Observation.subject"]  # a contained newborn: no patient Huizhen can find
    async with server.services.store.read() as repo:
        filtered = await repo.journal.search(channel="fhir", status=MessageStatus.FILTERED, first=50)
    assert filtered.total == len(UNSUPPORTED) + 1


async def test_invalid_examples_name_the_element(server: RunningServer, his: httpx.AsyncClient) -> None:
    for name, (url, status, element) in INVALID.items():
        issues = outcome(await his.post(url, content=corpus(name)), status)
        named = [p for i in issues if i["severity"] == "error" for p in i.get("expression", [])]
        assert element is None or element in named, f"{name}: {issues}"
    async with server.services.store.read() as repo:
        errors = await repo.journal.search(channel="fhir", status=MessageStatus.ERROR, first=50)
        patients = await repo.patients.search()
    assert errors.total == len(INVALID) and patients.total == 0


async def test_real_hl7_converter_bundles_are_accepted_for_what_huizhen_uses(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    for name in ("hl7v2-expected_ADT04-251-expected.json", "hl7v2-expected_ORU-R01-RMGEAD-expected.json",
                 "hl7v2-expected_SIU-S12-01-expected.json", "hl7v2-expected_MDM-T01-01-expected.json"):
        sent = corpus_json(name)
        answer = await his.post("", content=corpus(name))
        assert answer.status_code == 200, answer.text
        result = valid(body(answer))
        assert result["type"] == "batch-response" and len(result["entry"]) == len(sent["entry"])
        for entry_in, entry_out in zip(sent["entry"], result["entry"], strict=True):
            response = entry_out["response"]
            kind = entry_in["resource"]["resourceType"]
            issues = response.get("outcome", {}).get("issue", [])
            if kind in ("Patient", "Practitioner", "Organization", "Encounter", "Observation", "Condition"):
                assert response["status"].startswith("20") and "location" in response, (name, kind, response)
                read = body(await his.get(f"/{'/'.join(response['location'].split('/')[-2:])}"))
                assert idents(entry_in["resource"]) <= idents(read) or kind == "Organization"
            elif kind not in ("ServiceRequest", "DiagnosticReport", "DocumentReference", "PractitionerRole"):
                assert response["status"] == "200 OK" and issues[0]["severity"] == "information", (kind, response)
    # the MDM note names no subject: valid FHIR, but Huizhen keeps documents for a patient only
    assert "a subject" in json.dumps(result)


async def test_collection_bundle_as_a_batch_and_the_report_reads_back(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    patient = location_path(await his.put("/Patient/pat2", json={"resourceType": "Patient", "id": "pat2"}))
    bundle = corpus_json("R4_diagnosticreport-example.json")
    bundle["type"] = "batch"
    for entry in bundle["entry"]:
        entry["request"] = {"method": "PUT", "url": f"{entry['resource']['resourceType']}/{entry['resource']['id']}"}
    answer = body(await his.post("", json=bundle))
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["200 OK"] * len(bundle["entry"])
    report_in = bundle["entry"][0]["resource"]
    report = valid(body(await his.get("/" + "/".join(answer["entry"][0]["response"]["location"].split("/")[-2:]))))
    assert report["resourceType"] == "DiagnosticReport" and idents(report_in) <= idents(report)
    assert report["subject"]["reference"] == patient
    assert moment(report["issued"]) == moment(report_in["issued"])
    assert report.get("conclusion") == report_in.get("conclusion")
    found = body(await his.get("/Observation", params={"patient": "pat2", "_count": 100}))
    assert found["total"] == len(bundle["entry"]) - 1


async def test_transaction_resolves_conditional_and_internal_references(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    known = await his.post("/Patient", content=corpus("Normative_PatientWithMinimalData.json"))
    assert known.status_code == 201
    answer = body(await his.post("", content=corpus("R4_Bundle-TransactionWithReferenceInResourceBody.json")))
    assert answer["type"] == "transaction-response"
    where = ["/".join(e["response"]["location"].split("/")[-2:]) for e in answer["entry"]]
    observation, _, patient, encounter, practitioner, organization = where
    assert body(await his.get(f"/{observation}"))["subject"]["reference"] == location_path(known)
    visit = valid(body(await his.get(f"/{encounter}")))
    assert visit["subject"]["reference"] == patient
    assert visit["participant"][0]["individual"]["reference"] == practitioner
    assert visit["serviceProvider"]["reference"] == organization


def test_the_corpus_is_where_the_tests_expect_it() -> None:
    assert (CORPUS / "manifest.json").exists()
