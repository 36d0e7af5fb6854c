"""The FHIR R4 endpoint over real HTTP on both back ends: bad input, all-or-nothing transactions,
conditional writes, duplicates, searches with paging, consultations read as FHIR, HL7 patients read
as FHIR, the CapabilityStatement, and reprocessing a journaled FHIR message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from huizhen.integration.model import Actor, MessageStatus
from huizhen.mappings.fhir import systems
from tests.helpers import RunningServer
from tests.integration.fhir_support import (
    BODY_LIMIT,
    CONSULT_CODE,
    FHIR_JSON,
    body,
    client,
    fhir_server,
    his_client,
    location_path,
    outcome,
    valid,
)

MRN = "http://his.qswsy.example.cn/mrn"

@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with fhir_server(tmp_path, db_url) as srv:
        yield srv


@pytest.fixture
async def his(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with his_client(server) as c:
        yield c



def patient(mrn: str, name: str = "张三", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], "name": [{"text": name}],
            **extra}


def glucose(subject: str, value: str = "5.6", when: str = "2026-11-20T08:00:00+08:00") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": systems.LOINC, "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": subject}, "effectiveDateTime": when,
        "valueQuantity": {"value": float(value), "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
    }


def entry(resource: dict[str, Any], method: str = "POST", url: str | None = None, full_url: str | None = None
          ) -> dict[str, Any]:
    found = {"resource": resource, "request": {"method": method, "url": url or resource["resourceType"]}}
    return {**found, "fullUrl": full_url} if full_url else found


async def test_bad_input_answers_an_operation_outcome_with_the_right_status(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    [issue] = outcome(await his.post("/Patient", content=b"{not json"), 400)
    assert issue["code"] == "structure"
    [issue] = outcome(await his.post("/Patient", json={"hello": "world"}), 400)
    assert issue["expression"] == ["resourceType"]
    [issue] = outcome(await his.post("/Observation", json=patient("M1")), 400)
    assert issue["expression"] == ["resourceType"] and "expected a Observation" in issue["diagnostics"]
    [issue] = outcome(await his.put("/Patient/a1", json={**patient("M1"), "id": "b2"}), 400)
    assert issue["expression"] == ["Patient.id"]
    nested: Any = "deep"
    for _ in range(200):
        nested = {"extension": [nested]}
    [issue] = outcome(await his.post("/Patient", content=json.dumps({"resourceType": "Patient", "x": nested})), 400)
    assert issue["code"] == "too-costly"
    [issue] = outcome(await his.post("/Observation", json=glucose("Patient/nobody")), 422)
    assert issue["code"] == "not-found" and issue["expression"] == ["Observation.subject"]
    [issue] = outcome(await his.post("/Patient", content=b"{}", headers={"Content-Type": "application/xml"}), 415)
    [issue] = outcome(await his.get("/metadata", params={"_format": "xml"}), 406)
    [issue] = outcome(await his.delete("/Patient/x"), 405)
    [issue] = outcome(await his.get("/Patient/not-there"), 404)
    [issue] = outcome(await his.get("/NoSuchType/1"), 404)
    async with server.services.store.read() as repo:
        errors = await repo.journal.search(channel="fhir", status=MessageStatus.ERROR)
        patients = await repo.patients.search()
    assert errors.total == 6 and patients.total == 0  # every refused submission is journaled; nothing applied


async def test_bodies_over_the_limit_are_refused_before_they_are_read_whole(his: httpx.AsyncClient) -> None:
    big = json.dumps({**patient("M1"), "text": {"status": "generated", "div": "<div>" + "x" * BODY_LIMIT + "</div>"}})
    [issue] = outcome(await his.post("/Patient", content=big), 413)
    assert issue["code"] == "too-costly"

    async def chunks() -> Any:  # no Content-Length: counted while streaming
        for _ in range(8):
            yield b" " * (BODY_LIMIT // 4)

    outcome(await his.post("/Patient", content=chunks()), 413)


async def test_no_token_is_401_and_the_body_is_not_read(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"{server.base_url}/fhir") as anonymous:
        issues = outcome(await anonymous.post("/Patient", content=b"{", headers={"Content-Type": FHIR_JSON}), 401)
        assert issues[0]["code"] == "login"
        outcome(await anonymous.get("/metadata", headers={"Authorization": "Bearer forged"}), 401)
    async with server.services.store.read() as repo:
        assert (await repo.journal.search(channel="fhir")).total == 0


async def test_a_transaction_with_one_bad_entry_applies_nothing(server: RunningServer, his: httpx.AsyncClient) -> None:
    good = entry(patient("T1"), full_url="urn:uuid:1b0c8a8e-0000-4000-8000-000000000001")
    invalid = entry({**patient("T2"), "gender": "man"})
    issues = outcome(await his.post("", json={"resourceType": "Bundle", "type": "transaction",
                                              "entry": [good, invalid]}), 422)
    assert "Bundle.entry[1].resource.gender" in [p for i in issues for p in i.get("expression", [])]
    to_nothing = entry(glucose("urn:uuid:00000000-0000-4000-8000-00000000dead"))
    outcome(await his.post("", json={"resourceType": "Bundle", "type": "transaction",
                                     "entry": [good, to_nothing]}), 422)
    # valid on its own, but its subject does not exist: found only while applying, so the patient rolls back
    missing = entry(glucose("Patient/nobody"))
    issues = outcome(await his.post("", json={"resourceType": "Bundle", "type": "transaction",
                                              "entry": [good, missing]}), 422)
    assert issues[0]["expression"] == ["Bundle.entry[1].resource.subject"]
    async with server.services.store.read() as repo:
        assert await repo.patients.by_identifier(MRN, "T1") is None
        errors = await repo.journal.search(channel="fhir", status=MessageStatus.ERROR)
    assert errors.total == 3


async def test_a_batch_applies_what_it_can(server: RunningServer, his: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [entry(patient("B1")), entry(glucose("Patient/nobody")), entry(patient("B2"))]}
    result = valid(body(await his.post("", json=bundle)))
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created", "422 Unprocessable Entity",
                                                                   "201 Created"]
    async with server.services.store.read() as repo:
        assert await repo.patients.by_identifier(MRN, "B1") is not None
        assert await repo.patients.by_identifier(MRN, "B2") is not None


async def test_logical_ids_conditional_writes_and_duplicates(server: RunningServer, his: httpx.AsyncClient) -> None:
    put = await his.put("/Patient/his-77", json={**patient("C1"), "id": "his-77"})
    assert put.status_code == 200
    hz = location_path(put)
    first = await his.post("/Observation", json=glucose("Patient/his-77"))
    assert first.status_code == 201 and body(first)["subject"]["reference"] == hz
    again = await his.post("/Observation", json=glucose("Patient/his-77"))  # the same request resent
    assert (again.status_code, location_path(again)) == (201, location_path(first))
    by_hz_id = await his.post("/Observation", json=glucose(hz, value="6.1"))  # the id Huizhen gave, read back
    assert by_hz_id.status_code == 201 and body(by_hz_id)["subject"]["reference"] == hz
    condition = {"If-None-Exist": f"identifier={MRN}|C1"}
    exists = await his.post("/Patient", json=patient("C1", "另一个名字"), headers=condition)
    assert (exists.status_code, location_path(exists)) == (200, hz)
    assert body(exists)["name"][0]["text"] == "张三"  # nothing was created or changed
    update = await his.put("/Patient", params={"identifier": f"{MRN}|C1"}, json=patient("C1", "张三丰"))
    assert (update.status_code, location_path(update)) == (200, hz) and body(update)["name"][0]["text"] == "张三丰"
    await his.post("/Patient", json={**patient("C2"), "identifier": [{"system": "urn:other", "value": "C1"}]})
    outcome(await his.post("/Patient", json=patient("C3"), headers={"If-None-Exist": "identifier=C1"}), 412)
    other_sender = client(server, "his-hqsq", facility="HQSQ")
    async with other_sender:  # another sender's "his-77" is another patient
        outcome(await other_sender.post("/Observation", json=glucose("Patient/his-77")), 422)
    async with server.services.store.read() as repo:
        found = await repo.patients.get(hz.split("/")[1])
        duplicates = await repo.journal.search(channel="fhir", status=MessageStatus.DUPLICATE)
        assert found is not None
        observations = (await repo.clinical.observations_for_patients([found.id]))[found.id]
    assert len(observations) == 2 and duplicates.total == 1


async def test_a_put_back_to_earlier_content_is_applied(server: RunningServer, his: httpx.AsyncClient) -> None:
    """A PUT is idempotent: sent again it is applied again, never answered from the journal, so
    a resource set back to content it had before (male, female, male) ends as the last PUT says."""
    url = f"/Patient?identifier={MRN}|R1"
    answers = [await his.put(url, json=patient("R1", gender=g)) for g in ("male", "female", "male", "male")]
    assert [a.status_code for a in answers] == [201, 200, 200, 200]
    assert {location_path(a) for a in answers} == {location_path(answers[0])}
    read = body(await his.get(location_path(answers[0])))
    assert read["gender"] == "male"
    by_id = {**patient("R2", gender="female"), "id": "r2"}
    for g in ("female", "male", "female"):
        assert (await his.put("/Patient/r2", json={**by_id, "gender": g})).status_code == 200
    assert body(await his.get(location_path(await his.put("/Patient/r2", json=by_id))))["gender"] == "female"
    async with server.services.store.read() as repo:
        duplicates = await repo.journal.search(channel="fhir", status=MessageStatus.DUPLICATE)
    assert duplicates.total == 0


async def test_the_same_request_sent_twice_at_once_is_applied_once(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    """Two copies of one request in flight together: one applies, the other is its DUPLICATE and gets
    the same answer, whichever reached the journal first (the journal answers a sender + request once)."""
    put = await his.put("/Patient/his-88", json={**patient("D1"), "id": "his-88"})
    assert put.status_code == 200
    hz = location_path(put)
    answers = await asyncio.gather(*(his.post("/Observation", json=glucose("Patient/his-88")) for _ in range(4)))
    assert {a.status_code for a in answers} == {201}
    assert len({location_path(a) for a in answers}) == 1
    async with server.services.store.read() as repo:
        observations = (await repo.clinical.observations_for_patients([hz.split("/")[1]]))[hz.split("/")[1]]
        processed = await repo.journal.search(channel="fhir", status=MessageStatus.PROCESSED)
        duplicates = await repo.journal.search(channel="fhir", status=MessageStatus.DUPLICATE)
    assert len(observations) == 1
    assert (processed.total, duplicates.total) == (2, 3)  # the PUT and one POST; three copies


async def test_searches_page_with_next_links(server: RunningServer, his: httpx.AsyncClient) -> None:
    hz = location_path(await his.put("/Patient/s1", json={**patient("S1", "李四"), "id": "s1"}))
    for day in range(1, 6):
        await his.post("/Observation", json=glucose("Patient/s1", str(5 + day / 10), f"2026-11-0{day}T08:00:00+08:00"))
    found = valid(body(await his.get("/Patient", params={"identifier": f"{MRN}|S1"})))
    assert [e["resource"]["id"] for e in found["entry"]] == [hz.split("/")[1]]
    assert body(await his.get("/Patient", params={"name": "李四"}))["total"] == 1
    seen, url = [], "/Observation?patient=Patient/s1&code=http://loinc.org|2345-7&date=ge2026-11-02&_count=2"
    while url:
        page = valid(body(await his.get(url)))
        seen += [e["resource"]["effectiveDateTime"] for e in page["entry"] if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
        assert page["total"] == 4
    assert [datetime.fromisoformat(t) for t in seen] == [datetime(2026, 11, d, tzinfo=UTC) for d in (5, 4, 3, 2)]
    assert body(await his.get("/Observation", params={"patient": "s1", "date": "2026-11-03"}))["total"] == 1
    assert body(await his.get("/Observation", params={"patient": "s1", "code": "718-7"}))["total"] == 0
    ignored = body(await his.get("/Patient", params={"identifier": f"{MRN}|S1", "birthdate": "2000"}))
    assert ignored["entry"][-1]["search"]["mode"] == "outcome"
    # the self link names only the parameters applied: the ignored birthdate is not claimed
    [self_link] = [link["url"] for link in ignored["link"] if link["relation"] == "self"]
    assert "birthdate" not in self_link and "identifier=" in self_link
    paged = body(await his.get("/Patient", params={"birthdate": "2000", "_count": "1"}))
    assert all("birthdate" not in link["url"] and "_count=1" in link["url"] for link in paged["link"])
    outcome(await his.get("/Observation", params={"date": "yesterday"}), 400)
    outcome(await his.get("/Encounter"), 400)  # needs a patient


async def test_consultation_reads_as_service_request_encounter_and_report(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    await his.put("/Patient/c1", json={**patient("K1"), "id": "c1"})
    expert = location_path(await his.put("/Practitioner/dr-1", json={
        "resourceType": "Practitioner", "id": "dr-1", "name": [{"text": "王医生"}]}))
    request = {
        "resourceType": "ServiceRequest", "id": "sr-1", "status": "active", "intent": "order", "priority": "urgent",
        "code": CONSULT_CODE, "subject": {"reference": "Patient/c1"}, "performerType": {"text": "心血管内科"},
        "reasonCode": [{"coding": [{"system": systems.ICD10, "code": "I20.0", "display": "不稳定性心绞痛"}]}],
    }
    created = await his.put("/ServiceRequest/sr-1", json=request)
    assert created.status_code == 200, created.text
    consultation_id = location_path(created).split("/")[1]
    sr = valid(body(await his.get(f"/ServiceRequest/{consultation_id}")))
    assert (sr["status"], sr["priority"], sr["reasonCode"][0]["coding"][0]["code"]) == ("active", "urgent", "I20.0")
    session = valid(body(await his.get(f"/Encounter/{consultation_id}")))
    assert session["class"]["code"] == "AMB" and session["status"] == "planned"
    outcome(await his.get(f"/DiagnosticReport/{consultation_id}"), 404)
    assert (await his.put("/ServiceRequest/sr-1", json=request)).status_code == 200  # idempotent on its id
    services, actor = server.services, Actor("coordinator-1", ("coordinator",))
    await services.consultations.assign(consultation_id, actor, expert.split("/")[1])
    await services.consultations.start(consultation_id, actor)
    await services.consultations.complete(consultation_id, actor, "稳定型心绞痛", "阿司匹林 100mg qd")
    report = valid(body(await his.get(f"/DiagnosticReport/{consultation_id}")))
    assert report["conclusion"] == "稳定型心绞痛" and report["performer"][0]["reference"] == expert
    active = body(await his.get("/ServiceRequest", params={"status": "active"}))
    done = body(await his.get("/ServiceRequest", params={"status": "completed", "patient": "c1"}))
    assert (active["total"], done["total"]) == (0, 1)
    visits = body(await his.get("/Encounter", params={"patient": "c1"}))
    assert [e["resource"]["id"] for e in visits["entry"]] == [consultation_id]


async def test_an_hl7_patient_and_its_results_read_as_valid_fhir(server: RunningServer, his: httpx.AsyncClient) -> None:
    services = server.services
    msh = "MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||{type}|{cid}|P|2.5"
    adt = "\r".join([msh.format(type="ADT^A01^ADT_A01", cid="A-1"),
                     "PID|1||Q1001^^^QSWSY^MR||张^桂兰||19560314|F|||石桥镇1号||13800000001"]).encode() + b"\r"
    oru = "\r".join([msh.format(type="ORU^R01^ORU_R01", cid="O-1"), "PID|1||Q1001^^^QSWSY^MR||张^桂兰",
                     "OBR|1|ORD1|FIL1|CBC^血常规^L",
                     "OBX|1|NM|WBC^白细胞计数^L||6.50|10*9/L|3.5-9.5|N|||F|||20261127083000+0800"]).encode() + b"\r"
    for raw in (adt, oru):
        assert (await services.engine.receive(services.codecs["mllp"], raw)).message.status is MessageStatus.PROCESSED
    found = body(await his.get("/Patient", params={"identifier": "QSWSY|Q1001"}))
    read = valid(found["entry"][0]["resource"])
    assert (read["gender"], read["birthDate"], read["name"][0]["text"]) == ("female", "1956-03-14", "张桂兰")
    results = body(await his.get("/Observation", params={"patient": read["id"]}))
    [wbc] = [valid(e["resource"]) for e in results["entry"]]
    assert wbc["code"]["coding"][0]["code"] == "6690-2" and wbc["valueQuantity"]["value"] == 6.5


async def test_the_capability_statement_tells_what_is_supported(his: httpx.AsyncClient) -> None:
    response = await his.get("/metadata", params={"_format": "json"})
    statement = body(response)
    # validate.py takes any element named "resource" for a nested resource (rest.resource is not): the model itself
    CapabilityStatement.model_validate(statement)
    assert response.headers["content-type"].startswith(FHIR_JSON) and statement["fhirVersion"] == "4.0.1"
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "Immunization" not in by_type
    assert {p["name"] for p in by_type["Observation"]["searchParam"]} >= {"patient", "code", "date"}
    assert by_type["Patient"]["conditionalUpdate"] and not by_type["Observation"]["conditionalCreate"]
    assert [i["code"] for i in by_type["Condition"]["interaction"]] == ["create", "update"]  # not readable as such
    plain = await his.get("/metadata", headers={"Accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")


async def test_a_failed_fhir_message_is_reprocessed_after_the_fix(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    outcome(await his.post("/Observation", json=glucose("Patient/late")), 422)
    async with server.services.store.read() as repo:
        [(failed, _)] = (await repo.journal.search(channel="fhir", status=MessageStatus.ERROR)).items
    await his.put("/Patient/late", json={**patient("L1"), "id": "late"})
    reprocessed = await server.services.reprocess(failed.id)
    assert reprocessed.status is MessageStatus.PROCESSED
    assert body(await his.get("/Observation", params={"patient": "late"}))["total"] == 1
