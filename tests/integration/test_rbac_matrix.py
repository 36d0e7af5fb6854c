"""The authorization matrix: every built-in role × every existing query, mutation and FHIR interaction.

Conventions under test (huizhen/graphql/guard.py, huizhen/adapters/fhir_guard.py):
FORBIDDEN (FHIR 403) when the role may not do the operation at all; a row the
viewer may not see answers exactly like a row that does not exist (null, or
NOT_FOUND / FHIR 404), and lists count visible rows only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.rbac_support import ROLES, World, rbac_world

F, N, B = "FORBIDDEN", "NOT_FOUND", "BAD_INPUT"
CLINICAL = {"primary_doctor", "expert", "patient", "coordinator", "his_system"}


def only(allowed: set[str], yes: Any, no: Any = F) -> dict[str, Any]:
    return {role: yes if role in allowed else no for role in ROLES}


def patient_total() -> dict[str, Any]:
    return {**only(CLINICAL, 1), "coordinator": 2}


# (name, query, expected per role): "ok" = no error, "null" = the field is null, an int = totalCount
QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("me", "{ me { id roles } }", only(set(ROLES), "ok")),
    ("patient(own facility)", '{ patient(id: "pat1") { id name { text } } }', only(CLINICAL, "ok")),
    ("patient(other facility)", '{ patient(id: "pat2") { id name { text } } }',
     {**only(CLINICAL, "null"), "coordinator": "ok"}),
    ("patient(unknown)", '{ patient(id: "nope") { id } }', only(CLINICAL, "null")),
    ("patients", "{ patients { totalCount edges { node { id } } } }", patient_total()),
    ("consultation(visible)", "query($id: ID!) { consultation(id: $id) { id patient { id } } }",
     only(CLINICAL, "ok")),
    ("consultation(hidden)", "query($hid: ID!) { consultation(id: $hid) { id } }",
     {**only(CLINICAL, "null"), "coordinator": "ok"}),
    ("consultations", "{ consultations { totalCount } }", {**only(CLINICAL, 1), "coordinator": 2}),
    ("experts", "{ experts { id } }", only(CLINICAL | {"integration_admin"}, "ok")),
    ("imagingStudies(visible)", '{ imagingStudies(patientId: "pat1") { id } }', only(CLINICAL, "ok")),
    ("imagingStudies(hidden)", '{ imagingStudies(patientId: "pat2") { id } }',
     {**only(CLINICAL, N), "coordinator": "ok"}),
    ("patient.observations", '{ patient(id: "pat1") { observations { id } consultations { id } } }',
     only(CLINICAL, "ok")),
    ("messages", "{ messages { totalCount } }", only({"integration_admin"}, "ok")),
    ("channels", "{ channels { name } }", only({"integration_admin"}, "ok")),
    ("policies", "{ policies { subject } }", only({"security_officer", "auditor"}, "ok")),
    ("roleAssignments", "{ roleAssignments { user } }", only({"security_officer", "auditor"}, "ok")),
    ("explainAccess", '{ explainAccess(user: "doc1", domain: "TWN001", object: "patient", action: "read")'
     " { allowed reasons } }", only({"security_officer", "auditor"}, "ok")),
    ("auditEvents", "{ auditEvents { totalCount } }", only({"security_officer", "auditor"}, "ok")),
    # consultation services (huizhen/graphql/services.py)
    ("analyzeComplaint", '{ analyzeComplaint(text: "发热三天") { findings { code } } }', only(CLINICAL, "ok")),
    ("cases", "{ cases { totalCount } }", only({"primary_doctor", "expert", "coordinator"}, 0)),
    ("recommendedCases", "{ recommendedCases { id } }", only({"primary_doctor", "expert", "coordinator"}, "ok")),
    ("coverageEstimate(visible)", "query($id: ID!) { coverageEstimate(consultationId: $id) { fee } }",
     only(CLINICAL, "ok")),
    ("coverageEstimate(hidden)", "query($hid: ID!) { coverageEstimate(consultationId: $hid) { fee } }",
     {**only(CLINICAL, N), "coordinator": "ok"}),
    ("platformStats", '{ platformStats(from: "2026-01-01", to: "2026-12-31") { overall { total } } }',
     only({"coordinator"}, "ok")),
]

# mutations on an unknown id or with invalid input: the role layer answers first (FORBIDDEN), then the row
MUTATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("requestConsultation(hidden patient)",
     'mutation { requestConsultation(input: {patientId: "pat2", department: "x", urgency: ROUTINE,'
     ' chiefComplaint: "y"}) { id } }', only({"primary_doctor"}, N)),
    ("submitConsultation", 'mutation { submitConsultation(id: "nope") { id } }',
     only({"primary_doctor", "coordinator"}, N)),
    ("assignExpert", 'mutation { assignExpert(id: "nope") { id } }', only({"coordinator"}, N)),
    ("declineConsultation", 'mutation { declineConsultation(id: "nope", reason: "r") { id } }',
     only({"expert"}, N)),
    ("startConsultation", 'mutation { startConsultation(id: "nope") { id } }', only({"expert"}, N)),
    ("completeConsultation",
     'mutation { completeConsultation(id: "nope", diagnosis: "d", treatmentPlan: "t") { id } }', only({"expert"}, N)),
    ("cancelConsultation", 'mutation { cancelConsultation(id: "nope", reason: "r") { id } }',
     only({"primary_doctor", "coordinator"}, N)),
    ("reprocessMessage", 'mutation { reprocessMessage(id: "nope") { id } }', only({"integration_admin"}, N)),
    ("saveSymptoms", 'mutation { saveSymptoms(id: "nope") { id } }', only({"primary_doctor"}, N)),
    ("saveSymptoms(hidden)", 'mutation($hid: ID!) { saveSymptoms(id: $hid) { id } }', only({"primary_doctor"}, N)),
    ("addPolicy", 'mutation { addPolicy(input: {subject: "nobody", domain: "*", object: "patient",'
     ' action: "read"}) { subject } }', only({"security_officer"}, B)),
    ("removePolicy", 'mutation { removePolicy(input: {subject: "nobody", domain: "*", object: "patient",'
     ' action: "read"}) }', only({"security_officer"}, B)),
    ("assignRole", 'mutation { assignRole(user: "u1", role: "nobody", domain: "*") { user } }',
     only({"security_officer"}, B)),
    ("revokeRole", 'mutation { revokeRole(user: "u1", role: "nobody", domain: "*") }', only({"security_officer"}, B)),
]


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    async with rbac_world(tmp_path / "data", db_url) as w:
        yield w


async def _gql(w: World, role: str, query: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=w.server.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {w.token(role)}"}) as http:
        variables = {k: v for k, v in (("id", w.c1), ("hid", w.c2)) if f"${k}" in query}
        r = await http.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _outcome(body: dict[str, Any]) -> Any:
    if body.get("errors"):
        return body["errors"][0]["extensions"]["code"]
    (value,) = body["data"].values()
    if value is None:
        return "null"
    if isinstance(value, dict) and "totalCount" in value:
        return value["totalCount"]
    return "ok"


async def test_graphql_matrix(world: World) -> None:
    got: dict[str, dict[str, Any]] = {}
    for name, query, _ in QUERIES + MUTATIONS:
        got[name] = {role: _outcome(await _gql(world, role, query)) for role in ROLES}
    expected = {name: want for name, _, want in QUERIES + MUTATIONS}
    wrong = {
        name: {r: (got[name][r], want[r]) for r in ROLES
               if got[name][r] != want[r] and not (want[r] == "ok" and isinstance(got[name][r], int))}
        for name, want in expected.items()
    }
    assert not {k: v for k, v in wrong.items() if v}, "role: (got, expected)"


async def test_a_hidden_row_answers_like_a_missing_one(world: World) -> None:
    doctor = "primary_doctor"
    hidden = await _gql(world, doctor, f'mutation {{ cancelConsultation(id: "{world.c2}", reason: "r") {{ id }} }}')
    missing = await _gql(world, doctor, 'mutation { cancelConsultation(id: "nope", reason: "r") { id } }')
    assert _outcome(hidden) == _outcome(missing) == N
    assert hidden["errors"][0]["message"].replace(world.c2, "X") == missing["errors"][0]["message"].replace("nope", "X")
    assert hidden["data"] == missing["data"] is None


async def test_a_token_for_another_facility_sees_nothing_of_this_one(world: World) -> None:
    token = world.server.token("doc2", "primary_doctor", facility="TWN002")  # a doctor of the other facility
    async with httpx.AsyncClient(base_url=world.server.base_url, headers={"Authorization": f"Bearer {token}"}) as h:
        body = (await h.post("/graphql", json={"query": '{ patient(id: "pat1") { id } patients { edges { node'
                                                         " { id } } } }"})).json()
    assert body["data"]["patient"] is None
    assert [e["node"]["id"] for e in body["data"]["patients"]["edges"]] == ["pat2"]


async def test_a_forged_role_claim_is_refused_and_audited(world: World) -> None:
    from huizhen.rbac.identity import TokenService

    forged = TokenService(b"k" * 64).issue("sec1", ["security_officer"])  # valid signature, wrong key
    async with httpx.AsyncClient(base_url=world.server.base_url, headers={"Authorization": f"Bearer {forged}"}) as h:
        r = await h.post("/graphql", json={"query": "{ policies { subject } }"})
        fhir = await h.get("/fhir/Patient/pat1")
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert fhir.status_code == 401
    body = await _gql(world, "auditor", '{ auditEvents(actor: "anonymous") { edges { node { action outcome'
                                        " detail source } } } }")
    events = [e["node"] for e in body["data"]["auditEvents"]["edges"]]
    assert len(events) == 2 and all(e["action"] == "login" and e["outcome"] == "failure" for e in events)
    assert all(e["source"].startswith("127.0.0.1:") for e in events)


@pytest.mark.parametrize("evil", ["' OR 1=1 --", '") { id } } { x', "%", "吴' UNION SELECT * FROM patients --"])
async def test_injection_in_filters_matches_nothing(world: World, evil: str) -> None:
    coordinator = "coordinator"
    q = ("query($s: String!) { patients(search: $s) { totalCount } consultations(department: $s) { totalCount } }")
    async with httpx.AsyncClient(base_url=world.server.base_url,
                                 headers={"Authorization": f"Bearer {world.token(coordinator)}"}) as h:
        body = (await h.post("/graphql", json={"query": q, "variables": {"s": evil}})).json()
    assert body["data"] == {"patients": {"totalCount": 0}, "consultations": {"totalCount": 0}}
    audit = await _gql(world, "auditor", "query($a: String!) { auditEvents(actor: $a) { totalCount } }"
                       .replace("$a: String!", "$a: String = " + json.dumps(evil)))
    assert audit["data"]["auditEvents"]["totalCount"] == 0


# FHIR: (name, method, path, body, expected status per role)
FHIR: list[tuple[str, str, str, str | None, dict[str, int]]] = [
    ("read Patient", "GET", "/fhir/Patient/pat1", None, only(CLINICAL, 200, 403)),
    ("read hidden Patient", "GET", "/fhir/Patient/pat2", None, {**only(CLINICAL, 404, 403), "coordinator": 200}),
    ("search Patient", "GET", "/fhir/Patient?identifier=M-pat1", None, only(CLINICAL, 200, 403)),
    ("search ServiceRequest", "GET", "/fhir/ServiceRequest?patient=pat1", None, only(CLINICAL, 200, 403)),
    ("read Organization", "GET", "/fhir/Organization/nope", None, only(CLINICAL | {"integration_admin"}, 404, 403)),
    ("create Patient", "POST", "/fhir/Patient", "{}", only({"his_system"}, 400, 403)),
    ("update Observation", "PUT", "/fhir/Observation/o1", "{}", only({"his_system"}, 400, 403)),
    ("transaction Bundle", "POST", "/fhir", "{}", only({"his_system"}, 400, 403)),
    ("metadata", "GET", "/fhir/metadata", None, only(set(ROLES), 200)),
]


async def test_fhir_matrix(world: World) -> None:
    wrong = {}
    for name, method, path, content, expected in FHIR:
        for role in ROLES:
            async with httpx.AsyncClient(base_url=world.server.base_url, timeout=30, headers={
                "Authorization": f"Bearer {world.token(role)}", "Content-Type": "application/fhir+json",
            }) as h:
                r = await h.request(method, path, content=content)
            if r.status_code != expected[role]:
                wrong[(name, role)] = (r.status_code, expected[role], r.text[:200])
    assert not wrong


async def test_fhir_hidden_read_leaks_nothing_and_search_counts_only_visible(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.token('his_system')}"}
    async with httpx.AsyncClient(base_url=world.server.base_url, headers=headers) as h:
        hidden = await h.get("/fhir/Patient/pat2")
        missing = await h.get("/fhir/Patient/nope")
        search = (await h.get("/fhir/Patient?identifier=M-pat2")).json()
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace("pat2", "X") == missing.text.replace("nope", "X")
    assert search["total"] == 0 and not search.get("entry")


async def test_reads_and_denials_are_audited(world: World) -> None:
    await _gql(world, "primary_doctor", '{ patient(id: "pat1") { id } }')
    await _gql(world, "auditor", '{ patient(id: "pat1") { id } }')
    body = await _gql(world, "auditor", '{ auditEvents(entityId: "pat1") { edges { node { actor action outcome'
                                        " entityType roles } } } }")
    events = [e["node"] for e in body["data"]["auditEvents"]["edges"]]
    assert {"actor": "doc1", "action": "read", "outcome": "success", "entityType": "Patient",
            "roles": ["primary_doctor"]} in events
    denied = await _gql(world, "auditor", '{ auditEvents(actor: "aud1") { edges { node { action outcome'
                                          " entityType detail } } } }")
    nodes = [e["node"] for e in denied["data"]["auditEvents"]["edges"]]
    assert {"action": "read", "outcome": "denied", "entityType": "patient", "detail": "patient"} in nodes
