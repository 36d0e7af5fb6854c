"""What the FHIR integration tests share: a server with a FHIR client, and checks on answers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from huizhen.mappings.fhir.validate import validate_resource
from tests.helpers import RunningServer, running_server

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
FHIR_JSON = "application/fhir+json"
BODY_LIMIT = 256 * 1024
CONSULT_CODE = {"coding": [{"system": "http://his.example.cn/order-code", "code": "HZCONSULT"}]}


@contextlib.asynccontextmanager
async def fhir_server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url, fhir_max_body_bytes=BODY_LIMIT) as srv:
        yield srv


def his_client(server: RunningServer) -> httpx.AsyncClient:
    """A HIS system account of facility QSWSY."""
    return client(server, "his-qswsy", facility="QSWSY")


def client(server: RunningServer, sub: str, facility: str | None = None) -> httpx.AsyncClient:
    token = server.token(sub, "his_system", facility=facility)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    return httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=headers, timeout=60)


def body(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.content)
    return data


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, after checking it is valid R4."""
    return validate_resource(json.loads(json.dumps(resource))).data


def outcome(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    """The issues of an OperationOutcome answer with that status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    data = body(response)
    assert data["resourceType"] == "OperationOutcome", data
    valid(data)
    issues: list[dict[str, Any]] = data["issue"]
    return issues


def location_path(response: httpx.Response) -> str:
    """``Type/id`` of the Location header."""
    location = response.headers["location"]
    return "/".join(location.split("/")[-2:])


def corpus(name: str) -> bytes:
    path = next(CORPUS.glob(f"fhir/*/{name}"), None)
    if path is None:
        pytest.skip("test corpus not present")
    return path.read_bytes()


def corpus_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(corpus(name).decode("utf-8-sig"))
    return data


def idents(resource: dict[str, Any]) -> set[tuple[str | None, str]]:
    return {(i.get("system"), i["value"]) for i in resource.get("identifier", []) if i.get("value")}
