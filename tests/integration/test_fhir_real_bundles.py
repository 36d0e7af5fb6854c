"""Real-world FHIR over HTTP on both back ends: a Synthea-style patient bundle, the server's own
CapabilityStatement as input, and an ImagingStudy registered by FHIR before its images arrive by DICOM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from huizhen.integration.model import MessageStatus
from huizhen.mappings.fhir.validate import validate_resource
from tests.conftest import free_port
from tests.dicom_support import pynetdicom_store
from tests.helpers import RunningServer, running_server
from tests.integration.fhir_support import BODY_LIMIT, body, his_client, location_path, outcome, valid
from tests.integration.test_dicom_scp import synthetic

SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea_patient_bundle.json"


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url, fhir_max_body_bytes=BODY_LIMIT,
                              dicom_port=free_port()) as srv:
        yield srv


@pytest.fixture
async def his(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with his_client(server) as c:
        yield c


async def test_a_synthea_patient_bundle_is_accepted_with_information_for_unmapped_types(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    bundle = json.loads(SYNTHEA.read_text(encoding="utf-8"))
    response = await his.post("", json=bundle)
    assert response.status_code == 200, response.text
    answer = valid(body(response))
    assert answer["type"] == "transaction-response"
    by_type = {e["resource"]["resourceType"]: r for e, r in zip(bundle["entry"], answer["entry"], strict=True)}
    for kind in ("Patient", "Encounter", "Condition", "Observation"):
        assert by_type[kind]["response"]["status"] == "201 Created", (kind, by_type[kind])
    for kind in ("Immunization", "Procedure", "Claim"):
        response_of = by_type[kind]["response"]
        assert response_of["status"] == "200 OK" and "location" not in response_of
        [issue] = response_of["outcome"]["issue"]
        assert issue["severity"] == "information" and kind in issue["diagnostics"], issue
    # what was mapped reads back, Chinese intact, references resolved from urn:uuid
    patient_path = "/".join(by_type["Patient"]["response"]["location"].split("/")[:2])
    patient = valid(body(await his.get("/" + patient_path)))
    assert patient["name"][0]["text"] == "陈美玲" and patient["birthDate"] == "1968-04-11"
    found = body(await his.get("/Observation", params={"patient": patient["id"], "code": "http://loinc.org|85354-9"}))
    [observation] = [valid(e["resource"]) for e in found["entry"]]
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in observation["component"]}
    assert components["8480-6"]["value"] == 148 and components["8480-6"]["unit"] == "mm[Hg]"
    encounters = body(await his.get("/Encounter", params={"patient": patient["id"]}))
    assert encounters["total"] == 1
    async with server.services.store.read() as repo:
        [journaled] = (await repo.journal.search(channel="fhir", status=MessageStatus.PROCESSED)).items
    assert journaled[0].type == "Bundle/transaction"


async def test_the_capability_statement_is_valid_input(his: httpx.AsyncClient) -> None:
    """`CapabilityStatement.rest.resource` is an element, not a nested resource."""
    statement = body(await his.get("/metadata"))
    assert validate_resource(statement).resource_type == "CapabilityStatement"
    [issue] = outcome(await his.post("/CapabilityStatement", json=statement), 404)
    assert issue["code"] == "not-supported"  # valid, and refused only because Huizhen does not store it
    # a real nested resource is still checked where one may stand
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Nope"}}]}
    [issue] = outcome(await his.post("/Parameters", json=parameters), 400)
    assert issue["expression"] == ["Parameters.parameter[0].resource.resourceType"]


async def test_an_instance_registered_by_fhir_takes_its_first_dicom_content_without_conflict(
    server: RunningServer, his: httpx.AsyncClient
) -> None:
    patient = location_path(await his.put("/Patient/img1", json={"resourceType": "Patient", "id": "img1"}))
    image = synthetic("李^雷", "ISO_IR 192", PatientID="IMG-1")
    study_uid, series_uid, sop_uid = image.StudyInstanceUID, image.SeriesInstanceUID, image.SOPInstanceUID
    study = {
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
        "series": [{"uid": series_uid, "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                    "code": "OT"},
                    "instance": [{"uid": sop_uid, "sopClass": {"system": "urn:ietf:rfc:3986",
                                                               "code": f"urn:oid:{image.SOPClassUID}"}}]}],
    }
    assert (await his.post("/ImagingStudy", json=study)).status_code == 201
    port = server.ports["dicom"]
    assert await pynetdicom_store(port, image) == [0]
    assert await pynetdicom_store(port, image) == [0]  # the same bytes again: a duplicate
    other = synthetic("李^雷", "ISO_IR 192", PatientID="IMG-1", StudyInstanceUID=study_uid,
                      SeriesInstanceUID=series_uid, SOPInstanceUID=sop_uid, PixelData=bytes(range(16)))
    assert await pynetdicom_store(port, other) == [0]
    async with server.services.store.read() as repo:
        messages = (await repo.journal.search(channel="dicom", first=10)).items
        [found] = (await repo.clinical.studies_for_patients([patient.split("/")[1]]))[patient.split("/")[1]]
    errors = sorted(m.error or "" for m, _ in messages)
    assert [m.status for m, _ in messages].count(MessageStatus.DUPLICATE) == 1
    assert errors == ["", "", "conflict: this SOP Instance UID was stored before with other content"]
    instances = [i for s in found.series for i in s.instances]
    assert sorted(bool(i.conflict) for i in instances) == [False, True]  # the registration got the first content
    assert all(i.object_key for i in instances)
    # registering the study again by FHIR adds nothing and flags nothing
    assert (await his.post("/ImagingStudy", json=study)).status_code in (200, 201)
    async with server.services.store.read() as repo:
        [again] = (await repo.clinical.studies_for_patients([patient.split("/")[1]]))[patient.split("/")[1]]
    assert len([i for s in again.series for i in s.instances]) == 2


async def test_a_50_mb_body_is_refused_with_413_under_the_default_limit(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'huizhen.db'}"
    async with running_server(tmp_path / "data", db) as server, his_client(server) as his:
        limit = server.services.settings.fhir_max_body_bytes
        size = 50 * 1024 * 1024
        assert limit < size  # the default limit (fhir_max_body_bytes) is what refuses it

        async def body_of_50_mb() -> Any:  # streamed: the server counts bytes, it does not trust a length
            yield b'{"resourceType": "Patient", "text": {"status": "generated", "div": "<div>'
            for _ in range(size // (1024 * 1024)):
                yield b"x" * (1024 * 1024)

        [issue] = outcome(await his.post("/Patient", content=body_of_50_mb()), 413)
        assert issue["code"] == "too-costly" and str(limit) in issue["diagnostics"]
        whole = b'{"resourceType": "Patient", "id": "' + b"x" * size + b'"}'  # with its Content-Length
        [issue] = outcome(await his.put("/Patient/x", content=whole), 413)
        assert (await his.get("/metadata")).status_code == 200  # and the server keeps serving
