"""Issue #4 walked as a new HIS vendor would, over real HTTP on both back ends, with hand-written R4 examples.

The CapabilityStatement is checked against behaviour for several roles: every interaction it offers
the caller is answered as supported (never 403, never "not supported"), and what it leaves out is
refused. Then a Chinese patient with two identifiers, conditional create and update, an Observation
with components and reference ranges, and a transaction of urn:uuid references with an unmapped entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from huizhen.mappings.fhir import systems
from tests.helpers import RunningServer
from tests.integration.fhir_support import FHIR_JSON, body, fhir_server, location_path, outcome, valid

MRN = "http://his.bjch.example.cn/mrn"
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"  # 居民身份证号
UCUM_MMHG = {"unit": "mmHg", "system": systems.UCUM, "code": "mm[Hg]"}


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with fhir_server(tmp_path, db_url) as srv:
        yield srv


def account(server: RunningServer, sub: str, role: str, facility: str = "BJCH") -> httpx.AsyncClient:
    token = server.token(sub, role, facility=facility)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    return httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=headers, timeout=60)


def offered(statement: dict[str, Any]) -> dict[str, set[str]]:
    rest = statement["rest"][0]
    found = {r["type"]: {i["code"] for i in r["interaction"]} for r in rest.get("resource", [])}
    return {**found, "": {i["code"] for i in rest.get("interaction", [])}}


async def exercise(c: httpx.AsyncClient, resource_type: str, interaction: str, statement: dict[str, Any]) -> int:
    """Use one interaction in a way that cannot change anything; the HTTP status."""
    if interaction == "read":
        return (await c.get(f"/{resource_type}/no-such-id")).status_code
    if interaction == "search-type":
        declared = [p["name"] for r in statement["rest"][0].get("resource", []) if r["type"] == resource_type
                    for p in r.get("searchParam", [])]
        params = {"patient": "Patient/no-such-id"} if "patient" in declared else {"_count": "1"}
        return (await c.get(f"/{resource_type}", params=params)).status_code
    if interaction in ("create", "update"):  # an empty resource of that type: invalid, so nothing is written
        empty = {"resourceType": resource_type, "id": "x"}
        answer = await (c.post(f"/{resource_type}", json=empty) if interaction == "create"
                        else c.put(f"/{resource_type}/x", json=empty))
        return answer.status_code
    return (await c.post("", json={"resourceType": "Bundle", "type": interaction})).status_code


async def test_the_capability_statement_tells_each_role_the_truth(server: RunningServer) -> None:
    everything = {"read", "search-type", "create", "update", "transaction", "batch"}
    by_role: dict[str, dict[str, set[str]]] = {}
    for role in ("his_system", "primary_doctor", "integration_admin", "security_officer"):
        async with account(server, f"{role}-1", role) as c:
            answer = await c.get("/metadata", params={"_format": "json"})  # "json" means FHIR JSON
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(FHIR_JSON)
            statement = body(answer)
            CapabilityStatement.model_validate(statement)
            assert statement["format"] == [FHIR_JSON, "application/json"] and statement["fhirVersion"] == "4.0.1"
            by_role[role] = offered(statement)
            types = {r["type"] for r in statement["rest"][0].get("resource", [])} | {""}
            for resource_type in sorted(types | {"Patient", "Observation"}):
                for interaction in sorted(everything):
                    if (resource_type == "") != (interaction in ("transaction", "batch")):
                        continue
                    status = await exercise(c, resource_type, interaction, statement)
                    if interaction in by_role[role].get(resource_type, set()):
                        assert status not in (403, 405) and status < 500, (role, resource_type, interaction, status)
                        assert status != 404 or interaction == "read", (role, resource_type, interaction)
                    else:
                        refused = (403, 404, 405, 400) if interaction == "search-type" else (403, 404, 405)
                        assert status in refused, (role, resource_type, interaction, status)
    his, doctor = by_role["his_system"], by_role["primary_doctor"]
    assert his[""] == {"transaction", "batch"} and his["Patient"] == {"read", "create", "update", "search-type"}
    assert doctor[""] == set() and doctor["Patient"] == {"read", "search-type"} and "Condition" not in doctor
    assert set(by_role["integration_admin"]) == {"", "Organization", "Practitioner", "PractitionerRole"}
    assert by_role["security_officer"] == {"": set()}


def chinese_patient(mrn: str = "MRN-000731", resident: str = "110101195003071234") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": RESIDENT_ID, "value": resident},
                       {"use": "usual", "system": MRN, "value": mrn,
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR"}]}}],
        "name": [{"use": "official", "text": "欧阳明华", "family": "欧阳", "given": ["明华"]}],
        "gender": "male", "birthDate": "1950-03-07",
        "telecom": [{"system": "phone", "value": "13800138000", "use": "mobile"}],
        "address": [{"text": "北京市东城区和平里街道1号", "city": "北京市"}],
    }


async def test_a_chinese_patient_conditional_writes_and_a_blood_pressure_panel(server: RunningServer) -> None:
    async with account(server, "his-bjch", "his_system") as his:
        condition = {"If-None-Exist": f"identifier={MRN}|MRN-000731"}
        created = await his.post("/Patient", json=chinese_patient(), headers=condition)
        assert created.status_code == 201, created.text
        hz = location_path(created)
        read = valid(body(await his.get(f"/{hz}", params={"_format": "json"})))
        assert {(i["system"], i["value"]) for i in read["identifier"]} == {
            (RESIDENT_ID, "110101195003071234"), (MRN, "MRN-000731")}
        assert read["name"][0] | {"use": "official"} == {"use": "official", "text": "欧阳明华", "family": "欧阳",
                                                         "given": ["明华"]}
        assert (read["gender"], read["birthDate"], read["address"][0]["text"]) == ("male", "1950-03-07",
                                                                                  "北京市东城区和平里街道1号")
        for name in ("欧阳明华", "欧阳", "明华"):
            assert body(await his.get("/Patient", params={"name": name}))["total"] == 1, name
        by_id = body(await his.get("/Patient", params={"identifier": f"{RESIDENT_ID}|110101195003071234"}))
        assert [e["resource"]["id"] for e in by_id["entry"]] == [hz.split("/")[1]]
        changed = {**chinese_patient(), "telecom": [{"system": "phone", "value": "13900139000"}]}
        exists = await his.post("/Patient", json=changed, headers=condition)  # If-None-Exist matches: untouched
        assert (exists.status_code, location_path(exists)) == (200, hz)
        assert body(exists)["telecom"][0]["value"] == "13800138000"
        updated = await his.put("/Patient", params={"identifier": f"{MRN}|MRN-000731"}, json=changed)
        assert (updated.status_code, location_path(updated)) == (200, hz)
        assert body(updated)["telecom"][0]["value"] == "13900139000"
        fresh = chinese_patient("MRN-000999", "110101196001011111")
        new = await his.put("/Patient", params={"identifier": f"{MRN}|MRN-000999"}, json=fresh)
        assert new.status_code == 201 and location_path(new) != hz  # a conditional update matching nothing creates

        panel = {
            "resourceType": "Observation", "status": "final",
            "identifier": [{"system": "http://his.bjch.example.cn/lab", "value": "BP-20261130-1"}],
            "code": {"coding": [{"system": systems.LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "subject": {"reference": hz}, "effectiveDateTime": "2026-11-30T09:15:00+08:00",
            "interpretation": [{"coding": [{"system": systems.V3_INTERPRETATION, "code": "H"}]}],
            "component": [
                {"code": {"coding": [{"system": systems.LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": 152, **UCUM_MMHG},
                 "referenceRange": [{"low": {"value": 90, **UCUM_MMHG}, "high": {"value": 139, **UCUM_MMHG}}],
                 "interpretation": [{"coding": [{"system": systems.V3_INTERPRETATION, "code": "H"}]}]},
                {"code": {"coding": [{"system": systems.LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": 88, **UCUM_MMHG}},
            ],
        }
        posted = await his.post("/Observation", json=panel, headers={"Content-Type": "application/json"})
        assert posted.status_code == 201, posted.text
        back = valid(body(await his.get(f"/{location_path(posted)}")))
        assert back["identifier"] == panel["identifier"] and back["subject"]["reference"] == hz
        assert back["interpretation"][0]["coding"][0]["code"] == "H"
        systolic, diastolic = back["component"]
        assert systolic["code"]["coding"][0] == {"system": systems.LOINC, "code": "8480-6"}
        assert systolic["valueQuantity"]["value"] == 152 and systolic["valueQuantity"]["code"] == "mm[Hg]"
        assert systolic["referenceRange"][0]["high"]["value"] == 139
        assert systolic["interpretation"][0]["coding"][0]["code"] == "H"
        assert diastolic["valueQuantity"]["value"] == 88
        found = body(await his.get("/Observation", params={"patient": hz, "code": f"{systems.LOINC}|85354-9",
                                                            "date": "2026-11-30"}))
        assert found["total"] == 1
        plain = {"_format": "application/json", "_count": "1"}
        page = await his.get("/Patient", params={"name": "欧阳明华", **plain})
        assert page.headers["content-type"].startswith("application/json") and body(page)["total"] == 2
        [next_url] = [link["url"] for link in body(page)["link"] if link["relation"] == "next"]
        following = await his.get(next_url)  # the next link keeps the format asked for
        assert following.headers["content-type"].startswith("application/json")
        assert [e["resource"]["id"] for e in body(following)["entry"]] != [e["resource"]["id"] for e in
                                                                            body(page)["entry"]]


async def test_a_transaction_with_urn_uuid_references_and_an_unmapped_entry(server: RunningServer) -> None:
    pid, eid = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"

    def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
        entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        return {**entry, "fullUrl": full_url} if full_url else entry

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        post({"resourceType": "Patient", "identifier": [{"system": MRN, "value": "MRN-TX-1"}],
              "name": [{"text": "司马相如", "family": "司马", "given": ["相如"]}], "gender": "female"}, pid),
        post({"resourceType": "Encounter", "status": "in-progress", "subject": {"reference": pid},
              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
              "identifier": [{"system": "http://his.bjch.example.cn/visit", "value": "V-TX-1"}]}, eid),
        post({"resourceType": "Observation", "status": "final", "subject": {"reference": pid},
              "encounter": {"reference": eid}, "code": {"coding": [{"system": systems.LOINC, "code": "2345-7"}]},
              "effectiveDateTime": "2026-11-28T15:00:00+08:00",
              "valueQuantity": {"value": 9.8, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"}}),
        post({"resourceType": "Immunization", "status": "completed", "patient": {"reference": pid},
              "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
              "occurrenceDateTime": "2026-10-01"}),
    ]}
    async with account(server, "his-bjch", "his_system") as his:
        answer = await his.post("", params={"_format": "application/json"}, json=bundle)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
        statuses = [e["response"]["status"] for e in body(answer)["entry"]]
        assert statuses == ["201 Created", "201 Created", "201 Created", "200 OK"]
        [info] = body(answer)["entry"][3]["response"]["outcome"]["issue"]
        assert info["severity"] == "information"
        patient, encounter, observation = (e["response"]["location"] for e in body(answer)["entry"][:3])
        back = valid(body(await his.get(f"/{observation}")))
        assert (back["subject"]["reference"], back["encounter"]["reference"]) == (patient, encounter)
        assert valid(body(await his.get(f"/{encounter}")))["subject"]["reference"] == patient
        nowhere = {**bundle["entry"][2]["resource"], "subject": {"reference": "urn:uuid:nothing"}}
        renamed = {**bundle["entry"][0]["resource"], "identifier": [{"system": MRN, "value": "MRN-TX-2"}]}
        bad = {**bundle, "entry": [post(renamed, pid), post(nowhere)]}  # a reference to nothing: none of it applies
        issues = outcome(await his.post("", json=bad), 422)
        assert ["Bundle.entry[1].resource.subject.reference"] in [i["expression"] for i in issues], issues
        assert body(await his.get("/Patient", params={"identifier": f"{MRN}|MRN-TX-2"}))["total"] == 0
