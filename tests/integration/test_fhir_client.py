"""The FHIR client against real HTTP servers: Huizhen's own /fhir on another port (both back ends),
a SMART token endpoint, and a server that never answers; retry decisions on a transport function."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from huizhen.adapters.fhir_client import (
    BearerToken,
    FhirClient,
    FhirServerError,
    FhirUnavailable,
    Retry,
    SmartBackend,
)
from huizhen.integration.model import Actor, MessageStatus
from huizhen.mappings.fhir import systems
from tests.conftest import free_port
from tests.helpers import RunningServer
from tests.integration.fhir_support import CONSULT_CODE, fhir_server

MRN = "http://his.example.cn/mrn"


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with fhir_server(tmp_path, db_url) as srv:
        yield srv


def his_client(server: RunningServer, **kw: Any) -> FhirClient:
    token = server.token("his-remote", "his_system", facility="QSWSY")
    return FhirClient(f"{server.base_url}/fhir", BearerToken(token), **kw)


async def test_pull_patients_and_observations_following_next_links(server: RunningServer) -> None:
    async with his_client(server) as fhir:
        await fhir.put({"resourceType": "Patient", "id": "p9", "identifier": [{"system": MRN, "value": "M9"}],
                        "name": [{"text": "赵六"}]})
        for n in range(5):
            await fhir.create({
                "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p9"},
                "code": {"coding": [{"system": systems.LOINC, "code": "718-7"}]},
                "effectiveDateTime": f"2026-11-0{n + 1}T09:00:00+08:00",
                "valueQuantity": {"value": 120 + n, "unit": "g/L"},
            })
        [by_identifier] = await fhir.patients_by_identifier(MRN, "M9")
        assert (await fhir.patient(by_identifier["id"]) or {})["name"][0]["text"] == "赵六"
        assert await fhir.patient("no-such-patient") is None
        results = await fhir.observations(f"Patient/{by_identifier['id']}", "718-7", page_size=2)  # three pages
        assert sorted(r["valueQuantity"]["value"] for r in results) == [120, 121, 122, 123, 124]
        with pytest.raises(FhirServerError) as refused:
            await fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                               "subject": {"reference": "Patient/nobody"}})
        assert refused.value.status == 422 and fhir.health.state == "up"  # a refusal is not an outage


async def test_push_a_completed_consultation_back(server: RunningServer) -> None:
    async with his_client(server) as fhir:
        await fhir.put({"resourceType": "Patient", "id": "p1", "name": [{"text": "钱七"}]})
        expert = await fhir.put({"resourceType": "Practitioner", "id": "dr", "name": [{"text": "孙医生"}]}) or {}
        request = await fhir.put({
            "resourceType": "ServiceRequest", "id": "sr-9", "status": "active", "intent": "order",
            "code": CONSULT_CODE, "subject": {"reference": "Patient/p1"}, "performerType": {"text": "神经内科"},
        }) or {}
        services, actor = server.services, Actor("coordinator-1", ("coordinator",))
        await services.consultations.assign(request["id"], actor, expert["id"])
        await services.consultations.start(request["id"], actor)
        done = await services.consultations.complete(request["id"], actor, "偏头痛", "休息")
        encounter, report = await fhir.push_consultation(done, subject="Patient/p1")
    assert encounter is not None and encounter["resourceType"] == "Encounter"
    assert report is not None and report["conclusion"].split("\n") == ["偏头痛", "休息"]  # the plan is kept as text
    async with services.store.read() as repo:
        page = await repo.journal.search(channel="fhir", status=MessageStatus.PROCESSED, first=50)
    assert {"PUT Encounter", "PUT DiagnosticReport"} <= {m.type for m, _ in page.items}


@contextlib.asynccontextmanager
async def token_endpoint(server: RunningServer, public_key: Any) -> AsyncIterator[str]:
    """A SMART authorization server: checks the signed client assertion, grants a Huizhen token."""

    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        assert form["grant_type"] == "client_credentials"
        assertion = form["client_assertion"]
        try:
            claims = jwt.decode(assertion, public_key, algorithms=["RS384"], audience=str(request.url))
        except jwt.InvalidTokenError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": str(exc)}, status_code=401)
        granted = server.token(claims["sub"], "his_system", facility="QSWSY", ttl=600)
        return JSONResponse({"access_token": granted, "token_type": "bearer", "expires_in": 600})

    port = free_port()
    app = Starlette(routes=[Route("/token", token, methods=["POST"])])
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/token"
    finally:
        uv.should_exit = True
        await task


async def test_smart_backend_services_client_credentials(server: RunningServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    async with token_endpoint(server, key.public_key()) as token_url:
        smart = SmartBackend(token_url, "his-smart-client", pem)
        async with FhirClient(f"{server.base_url}/fhir", smart) as fhir:
            created = await fhir.put({"resourceType": "Patient", "id": "s1", "name": [{"text": "周八"}]}) or {}
            assert (await fhir.patient(created["id"]) or {})["id"] == created["id"]
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        async with FhirClient(f"{server.base_url}/fhir", SmartBackend(token_url, "his-smart-client", forged)) as bad:
            with pytest.raises(FhirServerError) as refused:
                await bad.patient(created["id"])
    assert refused.value.status == 401


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering from a script, recording what it was sent."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.MockTransport(answer), seen


async def test_retries_honour_retry_after_and_report_a_failing_server() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ok = httpx.Response(200, json={"resourceType": "Patient", "id": "1"})
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(503), ok)
    async with FhirClient("http://his.test/fhir", BearerToken("t"), transport=transport, sleep=sleep,
                          retry=Retry(attempts=4, base_delay=0.5)) as fhir:
        assert (await fhir.patient("1") or {})["id"] == "1"
    assert waits == [7.0, 1.0] and len(seen) == 3 and fhir.health.state == "up"

    waits.clear()
    transport, seen = scripted(httpx.Response(502))
    async with FhirClient("http://his.test/fhir", BearerToken("t"), transport=transport, sleep=sleep,
                          retry=Retry(attempts=3, base_delay=0.5)) as fhir:
        with pytest.raises(FhirUnavailable):
            await fhir.patient("1")
        assert (len(seen), waits) == (3, [0.5, 1.0])
        assert fhir.health.state == "failing" and "502" in (fhir.health.last_error or "")
        seen.clear()
        with pytest.raises(FhirUnavailable):  # a POST the server may have taken is not sent again
            await fhir.create({"resourceType": "Patient"})
        assert len(seen) == 1


async def test_a_server_that_never_answers_times_out() -> None:
    handled: list[asyncio.Task[None]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # hold the request unanswered until the client gives up
            pass
        writer.close()
        await writer.wait_closed()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append(asyncio.create_task(silent(reader, writer)))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with FhirClient(f"http://127.0.0.1:{port}/fhir", BearerToken("t"), timeout=0.2,
                              retry=Retry(attempts=2, base_delay=0.01)) as fhir:
            with pytest.raises(FhirUnavailable, match="ReadTimeout"):
                await fhir.patient("1")
        assert len(handled) == 2 and fhir.health.failures == 1  # a GET is tried again
    finally:
        listener.close()
        await listener.wait_closed()
        await asyncio.gather(*handled)
