"""GraphQL over real HTTP against the real app (uvicorn on a free port), on both back ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from huizhen.integration.model import Facility, FacilityLevel, HumanName, Identifier, Patient, Practitioner
from tests.helpers import GraphQLClient, RunningServer, running_server

CONSULTATION = """
  id number status urgency department chiefComplaint diseaseCode
  patient { id name { text } }
  expert { id name { text } }
  facility { code level }
  timeline { at type actor detail }
  diagnosis treatmentPlan
"""


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        async with srv.services.store.write() as repo:
            f = await repo.directory.save_facility(Facility("TWN001", "石桥镇卫生院", FacilityLevel.PRIMARY))
            await repo.directory.save_practitioner(
                Practitioner(
                    id="doc1",
                    name=HumanName.of("孙", ("丽",)),
                    identifiers=[Identifier("s", "D1")],
                    facility_id=f.id,
                    department="全科",
                )
            )
            await repo.directory.save_practitioner(
                Practitioner(
                    id="exp1",
                    name=HumanName.of("王", ("建国",)),
                    identifiers=[Identifier("s", "E1")],
                    department="心血管内科",
                    online=True,
                )
            )
            await repo.patients.save(
                Patient(
                    id="pat1",
                    name=HumanName.of("吴", ("桂兰",)),
                    identifiers=[Identifier("mrn", "M1")],
                    facility_id=f.id,
                )
            )
        yield srv


@pytest.fixture
async def doctor(server: RunningServer) -> AsyncIterator[GraphQLClient]:
    client = server.client(server.token("doc1", "primary_doctor", facility="TWN001"))
    yield client
    await client.aclose()


async def test_health_and_readiness(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": "ok"}


@pytest.mark.parametrize("kind", ["none", "garbage", "other-key", "expired", "basic"])
async def test_unauthenticated_requests_are_refused(server: RunningServer, kind: str) -> None:
    from huizhen.rbac.identity import TokenService

    headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer abc.def.ghi"},
        "other-key": {"Authorization": "Bearer " + TokenService(b"k" * 64).issue("doc1", ["security_officer"])},
        "expired": {"Authorization": "Bearer " + server.token("doc1", "primary_doctor", ttl=-120)},
        "basic": {"Authorization": "Basic ZG9jMTpwdw=="},
    }[kind]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert r.json()["data"] is None


async def test_body_of_unauthenticated_request_is_not_parsed(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.post(
            "/graphql", content=b"\x00\xff not json at all", headers={"content-type": "application/json"}
        )
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_me(doctor: GraphQLClient) -> None:
    data = await doctor.execute("{ me { id roles facility practitioner { name { text } } patient { id } } }")
    assert data["me"] == {
        "id": "doc1",
        "roles": ["primary_doctor"],
        "facility": "TWN001",
        "practitioner": {"name": {"text": "孙丽"}},
        "patient": None,
    }


async def test_full_workflow_over_http(server: RunningServer, doctor: GraphQLClient) -> None:
    created = (
        await doctor.execute(
            f"""mutation($input: ConsultationInput!) {{ requestConsultation(input: $input) {{ {CONSULTATION} }} }}""",
            input={
                "patientId": "pat1",
                "department": "心血管内科",
                "urgency": "URGENT",
                "chiefComplaint": "胸闷三天",
                "diseaseCode": "I20.0",
                "question": "是否需要转诊？",
            },
        )
    )["requestConsultation"]
    cid = created["id"]
    assert created["status"] == "DRAFT" and created["number"].startswith("HZ-")
    assert created["patient"]["name"]["text"] == "吴桂兰" and created["facility"] == {
        "code": "TWN001",
        "level": "PRIMARY",
    }
    await doctor.execute("mutation($id: ID!) { submitConsultation(id: $id) { status } }", id=cid)
    coordinator = server.client(server.token("coord1", "coordinator"))
    expert = server.client(server.token("exp1", "expert"))
    try:
        assigned = (
            await coordinator.execute(
                "mutation($id: ID!, $e: ID) { assignExpert(id: $id, expertId: $e) { status expert { id } } }",
                id=cid,
                e="exp1",
            )
        )["assignExpert"]
        assert assigned == {"status": "ASSIGNED", "expert": {"id": "exp1"}}
        await expert.execute("mutation($id: ID!) { startConsultation(id: $id) { status } }", id=cid)
        done = (
            await expert.execute(
                "mutation($id: ID!) { completeConsultation(id: $id, diagnosis: \"不稳定型心绞痛\","
                f' treatmentPlan: "收住院") {{ {CONSULTATION} }} }}',
                id=cid,
            )
        )["completeConsultation"]
    finally:
        await coordinator.aclose()
        await expert.aclose()
    assert done["status"] == "COMPLETED" and done["diagnosis"] == "不稳定型心绞痛"
    assert [e["type"] for e in done["timeline"]] == ["CREATED", "SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    assert [e["actor"] for e in done["timeline"]] == ["doc1", "doc1", "coord1", "exp1", "exp1"]
    stamps = [e["at"] for e in done["timeline"]]
    assert stamps == sorted(stamps) and all(s.endswith("+08:00") for s in stamps)
    again = await doctor.execute(f"query($id: ID!) {{ consultation(id: $id) {{ {CONSULTATION} }} }}", id=cid)
    assert again["consultation"] == done


async def test_invalid_transition_answers_its_code(doctor: GraphQLClient) -> None:
    cid = (
        await doctor.execute(
            'mutation { requestConsultation(input: {patientId: "pat1", department: "心血管内科", urgency: ROUTINE,'
            ' chiefComplaint: "头晕"}) { id } }'
        )
    )["requestConsultation"]["id"]
    submit = "mutation($id: ID!) { submitConsultation(id: $id) { status } }"
    assert (await doctor.execute(submit, id=cid))["submitConsultation"]["status"] == "PENDING"
    body = (await doctor.raw(submit, id=cid)).json()  # a primary doctor may submit, but not twice
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INVALID_TRANSITION"
    assert "PENDING" in error["message"] and "submit" in error["message"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('mutation { submitConsultation(id: "nope") { id } }', "NOT_FOUND"),
        (
            'mutation { requestConsultation(input: {patientId: "nope", department: "x", urgency: URGENT,'
            ' chiefComplaint: "y"}) { id } }',
            "NOT_FOUND",
        ),
        (
            'mutation { requestConsultation(input: {patientId: "pat1", department: "x", urgency: URGENT,'
            ' chiefComplaint: "  "}) { id } }',
            "BAD_INPUT",
        ),
        (
            'mutation { requestConsultation(input: {patientId: "pat1", department: "x", urgency: SOON,'
            ' chiefComplaint: "y"}) { id } }',
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("{ consultations(first: 1000) { totalCount } }", "BAD_INPUT"),
        ('{ consultations(after: "!!notacursor") { totalCount } }', "BAD_INPUT"),
        ("{ me { id ", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_errors_carry_codes(doctor: GraphQLClient, query: str, code: str) -> None:
    assert await doctor.error_code(query) == code


async def test_missing_entities_read_as_null(doctor: GraphQLClient) -> None:
    data = await doctor.execute('{ consultation(id: "nope") { id } patient(id: "nope") { id } }')
    assert data == {"consultation": None, "patient": None}


async def test_consultations_connection_filters_and_pages(doctor: GraphQLClient) -> None:
    ids = []
    for i, urgency in enumerate(["ROUTINE", "URGENT", "CRITICAL", "URGENT", "ROUTINE"]):
        ids.append(
            (
                await doctor.execute(
                    "mutation($input: ConsultationInput!) { requestConsultation(input: $input) { id } }",
                    input={
                        "patientId": "pat1",
                        "department": "心血管内科" if i % 2 else "呼吸内科",
                        "urgency": urgency,
                        "chiefComplaint": f"c{i}",
                    },
                )
            )["requestConsultation"]["id"]
        )
    await doctor.execute("mutation($id: ID!) { submitConsultation(id: $id) { id } }", id=ids[1])
    q = """query($first: Int, $after: String, $status: [ConsultationStatus!], $dept: String, $urg: Urgency) {
      consultations(first: $first, after: $after, status: $status, department: $dept, urgency: $urg) {
        totalCount edges { cursor node { id status } }
        pageInfo { hasNextPage hasPreviousPage endCursor startCursor } } }"""
    page1 = (await doctor.execute(q, first=2))["consultations"]
    assert page1["totalCount"] == 5 and page1["pageInfo"]["hasNextPage"]
    assert [e["node"]["id"] for e in page1["edges"]] == ids[::-1][:2]  # newest first
    seen = [e["node"]["id"] for e in page1["edges"]]
    after = page1["pageInfo"]["endCursor"]
    while after:
        page = (await doctor.execute(q, first=2, after=after))["consultations"]
        assert page["pageInfo"]["hasPreviousPage"]
        seen += [e["node"]["id"] for e in page["edges"]]
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert seen == ids[::-1]
    assert (await doctor.execute(q, status=["PENDING"]))["consultations"]["totalCount"] == 1
    assert (await doctor.execute(q, dept="心血管内科"))["consultations"]["totalCount"] == 2
    assert (await doctor.execute(q, urg="URGENT", dept="心血管内科"))["consultations"]["totalCount"] == 2
    assert (await doctor.execute(q, status=["DRAFT", "PENDING"], urg="CRITICAL"))["consultations"]["totalCount"] == 1


async def test_patients_and_experts(doctor: GraphQLClient) -> None:
    data = await doctor.execute(
        '{ patients(search: "吴桂兰") { totalCount'
        " edges { node { id identifiers { system value } facility { code } } } }"
        ' byId: patients(identifier: "M1") { totalCount }'
        ' experts(department: "心血管内科", online: true) { id name { text } online } }'
    )
    assert data["patients"]["totalCount"] == 1
    assert data["patients"]["edges"][0]["node"] == {
        "id": "pat1",
        "identifiers": [{"system": "mrn", "value": "M1"}],
        "facility": {"code": "TWN001"},
    }
    assert data["byId"]["totalCount"] == 1
    assert data["experts"] == [{"id": "exp1", "name": {"text": "王建国"}, "online": True}]


async def test_query_depth_is_limited(doctor: GraphQLClient) -> None:
    levels = 10  # consultations/edges/node + 2 per level: far past the default limit of 12
    deep = "{ consultations { edges { node { " + "patient { consultations { " * levels + "id"
    deep += " }" * (2 * levels) + " } } } }"
    body = (await doctor.raw(deep)).json()
    assert "depth" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_several_operations_need_an_operation_name(doctor: GraphQLClient) -> None:
    """GraphQL GetOperation: no operationName with two operations is a request error, not the first one run."""
    two = "query A { me { id } } mutation B { cancelConsultation(id: \"x\", reason: \"r\") { id } }"
    body = (await doctor.raw(two)).json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "operationName" in body["errors"][0]["message"]
    named = await doctor.http.post("/graphql", json={"query": two, "operationName": "A"})
    assert named.json() == {"data": {"me": {"id": "doc1"}}}
    assert (await doctor.execute("query Only { me { id } }")) == {"me": {"id": "doc1"}}


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",  # a batch
        b'{"query": 5}',
        b'{"query": "{ me { id } }", "variables": "x"}',
        b'{"query": "query A { me { id } }", "operationName": "Z"}',
        b"\xff\xfe",  # not JSON
        b'{"variables": {}}',  # no query
    ],
)
async def test_requests_strawberry_refuses_are_coded_json(doctor: GraphQLClient, body: bytes) -> None:
    r = await doctor.http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_INPUT" and error["message"]
