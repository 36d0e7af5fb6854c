"""FHIR searches page and count only what the viewer may see, over real HTTP on both back ends.

Two facilities' HIS accounts submit interleaved data; each one (and a primary doctor of one facility)
walks every searchable type page by page: ``Bundle.total`` is the same on every page and counts only
its own facility's resources, every page but the last is full, and the other facility's resources never
appear, not even as a count (a hidden patient reads like an unknown one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from huizhen.integration.model import Actor
from huizhen.mappings.fhir import systems
from tests.helpers import RunningServer
from tests.integration.fhir_support import CONSULT_CODE, FHIR_JSON, body, fhir_server, location_path, valid

PAGE = 2


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with fhir_server(tmp_path, db_url) as srv:
        yield srv


def account(server: RunningServer, sub: str, role: str, facility: str) -> httpx.AsyncClient:
    token = server.token(sub, role, facility=facility)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    return httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=headers, timeout=60)


def resources(facility: str, n: int) -> list[dict[str, Any]]:
    """A patient with a glucose result, a visit, a study and a consultation request, as a transaction."""
    pid = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
    subject = {"reference": pid}
    mrn = f"http://his.{facility.lower()}.example.cn/mrn"
    return [
        {"fullUrl": pid, "request": {"method": "POST", "url": "Patient"}, "resource": {
            "resourceType": "Patient", "identifier": [{"system": mrn, "value": f"{facility}-{n}"}],
            "name": [{"text": f"病人{n}", "family": "病", "given": [f"人{n}"]}]}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "status": "final", "subject": subject,
            "code": {"coding": [{"system": systems.LOINC, "code": "2345-7"}]},
            "effectiveDateTime": f"2026-11-{n:02d}T08:00:00+08:00",
            "valueQuantity": {"value": 5 + n / 10, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"}}},
        {"request": {"method": "POST", "url": "Encounter"}, "resource": {
            "resourceType": "Encounter", "status": "finished", "subject": subject,
            "identifier": [{"system": f"{mrn}/visit", "value": f"V{n}"}],
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}},
        {"request": {"method": "POST", "url": "ImagingStudy"}, "resource": {
            "resourceType": "ImagingStudy", "status": "available", "subject": subject,
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:1.2.826.0.1.3680043.8.498.{n}"}]}},
        {"request": {"method": "POST", "url": "ServiceRequest"}, "resource": {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order", "code": CONSULT_CODE,
            "identifier": [{"system": f"{mrn}/order", "value": f"O{n}"}], "subject": subject,
            "performerType": {"text": "心血管内科"}}},
    ]


async def submit(his: httpx.AsyncClient, facility: str, n: int) -> str:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": resources(facility, n)}
    answer = await his.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    first = body(answer)["entry"][0]["response"]
    assert first["status"].startswith("201"), first
    return str(first["location"]).split("/")[1]


async def walk(c: httpx.AsyncClient, url: str) -> tuple[list[int], list[int], list[str]]:
    """Every page of a search: the totals it reports, its page sizes, the ids it returns."""
    totals, sizes, ids = [], [], []
    next_url: str | None = url
    while next_url:
        answer = await c.get(next_url)
        assert answer.status_code == 200, answer.text
        page = valid(body(answer))
        matches = [e["resource"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
        totals.append(page["total"])
        sizes.append(len(matches))
        ids += [r["id"] for r in matches]
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    return totals, sizes, ids


def full_pages(total: int) -> list[int]:
    return [PAGE] * (total // PAGE) + ([total % PAGE] if total % PAGE else []) or [0]


async def test_searches_count_and_page_only_what_the_viewer_may_see(server: RunningServer) -> None:
    mine: list[str] = []
    theirs: list[str] = []
    a, b = account(server, "his-a", "his_system", "QSWSY"), account(server, "his-b", "his_system", "HZSY")
    async with a, b:
        for n in range(1, 6):  # interleaved, so that any page of the unfiltered rows mixes both facilities
            mine.append(await submit(a, "QSWSY", n))
            theirs.append(await submit(b, "HZSY", 10 + n))
        theirs.append(await submit(b, "HZSY", 20))
        async with account(server, "doc-a", "primary_doctor", "QSWSY") as doctor:
            for viewer, own, other in ((a, mine, theirs), (doctor, mine, theirs), (b, theirs, mine)):
                total = len(own)
                for url in (f"/Patient?_count={PAGE}", f"/Patient?name=病&_count={PAGE}",
                            f"/Observation?code={systems.LOINC}|2345-7&_count={PAGE}",
                            f"/ServiceRequest?status=active&_count={PAGE}"):
                    totals, sizes, ids = await walk(viewer, url)
                    assert set(totals) == {total}, url
                    assert sizes == full_pages(total), url
                    assert len(ids) == total == len(set(ids)), url
                patients = (await walk(viewer, f"/Patient?_count={PAGE}"))[2]
                assert sorted(patients) == sorted(own)
                for kind, count in (("Encounter", 2), ("ImagingStudy", 1), ("Observation", 1), ("ServiceRequest", 1)):
                    # Encounter: the visit and the consultation's session
                    assert (await walk(viewer, f"/{kind}?patient=Patient/{own[0]}"))[0] == [count], kind
                    assert (await walk(viewer, f"/{kind}?patient=Patient/{other[0]}")) == ([0], [0], []), kind
                assert (await walk(viewer, f"/Patient?_id={other[0]}")) == ([0], [0], [])
                assert (await walk(viewer, f"/Patient?_id={own[0]}"))[0] == [1]
                hidden = await viewer.get(f"/Patient/{other[0]}")
                assert hidden.status_code == 404


async def test_a_his_system_reads_back_what_it_sent(server: RunningServer) -> None:
    async with account(server, "his-a", "his_system", "QSWSY") as a:
        sent = {"resourceType": "Patient", "id": "hx-1", "name": [{"text": "赵六"}],
                "identifier": [{"system": "http://his.qswsy.example.cn/mrn", "value": "HX-1"}]}
        hz = location_path(await a.put("/Patient/hx-1", json=sent)).split("/")[1]
        for path in (f"/Patient/{hz}", "/Patient/hx-1"):  # Huizhen's id and the id it sent
            got = await a.get(path)
            assert got.status_code == 200 and body(got)["name"][0]["text"] == "赵六", path
        observation = await a.post("/Observation", json={
            "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/hx-1"},
            "code": {"coding": [{"system": systems.LOINC, "code": "8867-4"}]},
            "valueQuantity": {"value": 72, "unit": "/min", "system": systems.UCUM, "code": "/min"}})
        assert observation.status_code == 201, observation.text
        assert (await a.get(f"/{location_path(observation)}")).status_code == 200
        found = body(await a.get("/Patient", params={"identifier": "http://his.qswsy.example.cn/mrn|HX-1"}))
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == hz



async def test_an_expert_sees_only_the_consultations_assigned_to_them(server: RunningServer) -> None:
    """What a consultation reads as follows the consultation rule (as in GraphQL), not the patient's."""
    async with account(server, "his-a", "his_system", "QSWSY") as a:
        patient = await submit(a, "QSWSY", 1)  # with one consultation request (O1)
        second = await a.post("/ServiceRequest", json={
            "resourceType": "ServiceRequest", "status": "active", "intent": "order", "code": CONSULT_CODE,
            "identifier": [{"system": "http://his.qswsy.example.cn/order", "value": "O2"}],
            "subject": {"reference": f"Patient/{patient}"}})
        assert second.status_code == 201, second.text
        expert = location_path(await a.put("/Practitioner/dr-9", json={
            "resourceType": "Practitioner", "id": "dr-9", "name": [{"text": "钱医生"}]})).split("/")[1]
        requests = body(await a.get("/ServiceRequest", params={"patient": patient}))
        assert requests["total"] == 2
        other = location_path(second).split("/")[1]
        [mine] = [e["resource"]["id"] for e in requests["entry"] if e["resource"]["id"] != other]
    await server.services.consultations.assign(mine, Actor("coordinator-1", ("coordinator",)), expert)
    async with account(server, expert, "expert", "*") as doctor:
        assert (await doctor.get(f"/ServiceRequest/{mine}")).status_code == 200
        assert (await doctor.get(f"/Encounter/{mine}")).status_code == 200
        for path in (f"/ServiceRequest/{other}", f"/Encounter/{other}"):
            assert (await doctor.get(path)).status_code == 404, path
        assert (await doctor.get(f"/Patient/{patient}")).status_code == 200  # through the assigned one
        assert await walk(doctor, f"/ServiceRequest?patient={patient}&_count=1") == ([1], [1], [mine])
        assert await walk(doctor, "/ServiceRequest?status=active&_count=1") == ([1], [1], [mine])
        sessions = (await walk(doctor, f"/Encounter?patient={patient}"))[2]
        assert mine in sessions and other not in sessions and len(sessions) == 2  # the visit and its session
