"""The GraphQL contract over real HTTP on both back ends: work-list, batching, matching,
provenance, guard rails (introspection, body size, persisted queries), request ids, CORS."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import event

from huizhen.integration.model import EntityRef, Message, MessageStatus
from tests.graphql_seed import Seeded, seed
from tests.helpers import GraphQLClient, RunningServer, running_server
from tests.ws_client import graphql_socket

WORKLIST = """
query($first: Int, $after: String, $status: [ConsultationStatus!], $department: String, $urgency: Urgency,
      $facility: String, $from: String, $to: String, $sort: ConsultationSort) {
  consultations(status: $status, department: $department, urgency: $urgency, first: $first, after: $after,
                facility: $facility, createdFrom: $from, createdTo: $to, sort: $sort) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id number status urgency department createdAt
      patient { id age name { text } observations(first: 5) { code value effectiveAt } }
      expert { id name { text } title online }
      imagingStudies { studyInstanceUid modalities seriesCount }
      observations { id }
    } }
  }
}
"""


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        yield srv


@pytest.fixture
async def seeded(server: RunningServer) -> Seeded:
    return await seed(server.services.store, 60)


@pytest.fixture
async def coordinator(server: RunningServer) -> AsyncIterator[GraphQLClient]:
    # the actor of these tests: a platform coordinator who may also request consultations (setup)
    client = server.client(server.token("coord1", "coordinator", "primary_doctor", facility="*"))
    yield client
    await client.aclose()


class StatementCounter:
    def __init__(self, server: RunningServer) -> None:
        self.engine = server.services.store.engine.sync_engine
        self.count = 0

    def _on(self, *_: Any) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)


async def test_worklist_page_costs_the_same_statements_for_10_and_50(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    counts = {}
    for size in (10, 50):
        with StatementCounter(server) as counter:
            data = await coordinator.execute(WORKLIST, first=size)
        page = data["consultations"]
        assert len(page["edges"]) == size and page["totalCount"] == 60
        node = page["edges"][0]["node"]
        assert len(node["patient"]["observations"]) == 5 and node["imagingStudies"][0]["modalities"] == ["CT"]
        times = [o["effectiveAt"] for o in node["patient"]["observations"]]
        assert times == sorted(times, reverse=True) and times[0] == "2026-03-01T22:00:00+08:00"  # the latest 5 of 7
        counts[size] = counter.count
    assert counts[10] == counts[50], counts
    # measured 18 on SQLite (23 before the read-ahead): one read transaction (BEGIN) for the page (count,
    # rows, links; no timeline: not selected) and the relations it selects, read ahead (patients
    # +identifiers, latest observations, experts, studies +series +instances, attached observations),
    # plus the one batched audit write of the request's reads
    assert counts[50] <= 20, counts


ROW = """fragment Row on Consultation {
  id timeline { type }
  patient { id observations(first: 2) { code effectiveAt } imagingStudies { studyInstanceUid } facility { code } }
  expert { id } requester { id } facility { code } imagingStudies { studyInstanceUid } observations { id }
}"""


async def test_worklist_read_ahead_answers_as_each_consultation_alone(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    """The work-list reads its rows' relations ahead (huizhen.graphql.prefetch), through fragments,
    literal arguments and inline fragments; every row must read exactly as the same consultation
    asked for on its own, which resolves each relation through the DataLoaders."""
    listed = await coordinator.execute(
        "query { consultations(first: 12) { edges { node { ... on Consultation { ...Row } } } } } " + ROW
    )
    nodes = [e["node"] for e in listed["consultations"]["edges"]]
    assert len(nodes) == 12
    assert all(n["timeline"] for n in nodes)  # selected: the page's timelines are read
    assert all(len(n["patient"]["observations"]) == 2 for n in nodes)
    assert any(n["expert"] for n in nodes) and all(n["imagingStudies"] for n in nodes)
    for node in nodes:
        alone = await coordinator.execute("query($id: ID!) { consultation(id: $id) { ...Row } } " + ROW, id=node["id"])
        assert alone["consultation"] == node


CLINICAL = """fragment Clinical on Consultation {
  id number complaint: chiefComplaint question diagnosis treatmentPlan cancelReason symptoms { text present }
}"""


async def test_worklist_reads_the_clinical_record_when_a_field_asks(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    """The work-list decrypts the clinical record only when its selection names one of its fields
    (records.CLINICAL_FIELDS), through fragments and aliases; then every row reads as the same
    consultation alone, and a page without them lists the same rows."""
    listed = await coordinator.execute(
        "query { consultations(first: 8) { edges { node { ... on Consultation { ...Clinical } } } } } " + CLINICAL
    )
    nodes = [e["node"] for e in listed["consultations"]["edges"]]
    assert len(nodes) == 8 and all(n["complaint"] == "胸闷三天" for n in nodes)
    for node in nodes:
        alone = await coordinator.execute(
            "query($id: ID!) { consultation(id: $id) { ...Clinical } } " + CLINICAL, id=node["id"]
        )
        assert alone["consultation"] == node
    plain = await coordinator.execute("query { consultations(first: 8) { edges { node { id number status } } } }")
    assert [(e["node"]["id"], e["node"]["number"]) for e in plain["consultations"]["edges"]] == [
        (n["id"], n["number"]) for n in nodes
    ]


async def test_worklist_filters_sort_and_stable_cursors(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    urgent = await coordinator.execute(WORKLIST, first=100, sort="MOST_URGENT")
    ranks = [{"CRITICAL": 0, "URGENT": 1, "ROUTINE": 2}[e["node"]["urgency"]] for e in urgent["consultations"]["edges"]]
    assert ranks == sorted(ranks)
    # page through most-urgent-first 7 at a time: the same order, no gaps, no repeats
    seen: list[str] = []
    after = None
    while True:
        page = (await coordinator.execute(WORKLIST, first=7, after=after, sort="MOST_URGENT"))["consultations"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [e["node"]["id"] for e in urgent["consultations"]["edges"]]

    newest = (await coordinator.execute(WORKLIST, first=3))["consultations"]["edges"]
    assert [e["node"]["id"] for e in newest] == ["c00059", "c00058", "c00057"]

    pending = await coordinator.execute(
        WORKLIST, first=100, status=["PENDING"], department="心血管内科", facility="TWN001", urgency="ROUTINE"
    )
    nodes = [e["node"] for e in pending["consultations"]["edges"]]
    assert nodes and all(n["status"] == "PENDING" and n["department"] == "心血管内科" for n in nodes)
    assert pending["consultations"]["totalCount"] == len(nodes)

    window = await coordinator.execute(
        WORKLIST, first=100, **{"from": "2026-03-01T16:10:00+08:00", "to": "2026-03-01T16:20:00+08:00"}
    )
    assert window["consultations"]["totalCount"] == 10  # minutes 10..19 after 08:00 UTC

    assert await coordinator.error_code(WORKLIST, first=5, **{"from": "yesterday"}) == "BAD_INPUT"
    assert await coordinator.error_code(WORKLIST, first=5, facility="NOPE") == "NOT_FOUND"
    assert await coordinator.error_code(WORKLIST, first=5, after="garbage", sort="MOST_URGENT") == "BAD_INPUT"


async def test_contract_fields_of_consultation_and_practitioner(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    data = await coordinator.execute(
        """query($id: ID!) { consultation(id: $id) {
             number requester { id } facility { code name } diseaseCode symptoms { text } documents { id }
             createdAt assignedAt timeline { type } sources { channel }
             expert { title department specialties expertise online yearsExperience avgResponseMinutes }
             patient { age birthDate consultations { id } imagingStudies { accessionNumber } } } }""",
        id="c00001",
    )
    c = data["consultation"]
    assert c["number"] == "HZ-20260301-00001" and c["requester"] == {"id": "doc2"}
    assert c["facility"] == {"code": "CHC002", "name": "东城社区卫生服务中心"}
    assert c["expert"]["title"] == "CHIEF" and c["expert"]["online"] is True
    assert c["expert"]["expertise"] == ["J18.9"] and c["expert"]["avgResponseMinutes"] == 11.0
    assert c["patient"]["age"] >= 60 and c["patient"]["consultations"] == [{"id": "c00001"}]
    assert c["timeline"] == [{"type": "CREATED"}] and c["sources"] == []


async def test_match_experts_and_assign_best(server: RunningServer, seeded: Seeded, coordinator: GraphQLClient) -> None:
    data = await coordinator.execute(
        """{ matchExperts(department: "心血管内科", diseaseCode: "I20.0", urgency: CRITICAL, limit: 5) {
             expert { id } score reasons activeConsultations } }"""
    )
    matches = data["matchExperts"]
    assert [m["expert"]["id"] for m in matches] == ["exp1", "exp3"]  # the J18.9 experts do not treat I20.0
    assert matches[0]["score"] > matches[1]["score"]
    assert any(r.startswith("title CHIEF") for r in matches[0]["reasons"])
    assert any("CRITICAL weight 2" in r for r in matches[0]["reasons"])
    assert await coordinator.error_code(
        '{ matchExperts(department: "x", diseaseCode: "y", urgency: ROUTINE, limit: 0) { score } }'
    ) == "BAD_INPUT"

    # c00000 is PENDING in 心血管内科 and names no expert: assignExpert without expertId takes the best
    assigned = await coordinator.execute('mutation { assignExpert(id: "c00000") { status expert { id } } }')
    assert assigned["assignExpert"] == {"status": "ASSIGNED", "expert": {"id": matches[0]["expert"]["id"]}}
    # nobody online treats it: a clear error, and the consultation stays in the queue
    created = await coordinator.execute(
        """mutation($i: ConsultationInput!) { requestConsultation(input: $i) { id } }""",
        i={"patientId": "pat0", "department": "皮肤科", "urgency": "ROUTINE", "chiefComplaint": "皮疹一周",
           "diseaseCode": "L30.9"},
    )
    cid = created["requestConsultation"]["id"]
    await coordinator.execute("mutation($id: ID!) { submitConsultation(id: $id) { id } }", id=cid)
    assert await coordinator.error_code("mutation($id: ID!) { assignExpert(id: $id) { id } }", id=cid) == "BAD_INPUT"
    assert (await coordinator.execute("query($id: ID!) { consultation(id: $id) { status } }", id=cid)) == {
        "consultation": {"status": "PENDING"}}


async def test_sources_name_the_journaled_messages(
    server: RunningServer, seeded: Seeded, coordinator: GraphQLClient
) -> None:
    async with server.services.store.write() as repo:
        for n, refs in enumerate(([EntityRef("Patient", "pat3"), EntityRef("Observation", "obs3-0")],
                                  [EntityRef("Consultation", "c00003"), EntityRef("ImagingStudy", "study3")])):
            await repo.journal.add(Message(
                channel="hl7v2", peer="127.0.0.1:5000", sender="HIS^TWN001", control_id=f"MSG{n}",
                type="ORU^R01", raw=b"MSH|...", status=MessageStatus.PROCESSED, effects=refs,
                received_at=datetime(2026, 3, 1, 9, n, tzinfo=UTC),
            ))
    data = await coordinator.execute(
        """{ consultation(id: "c00003") { sources { channel type controlId sender receivedAt }
             imagingStudies { sources { controlId } }
             patient { sources { controlId } observations(first: 7) { id sources { controlId } } } } }"""
    )
    c = data["consultation"]
    assert c["sources"] == [{"channel": "hl7v2", "type": "ORU^R01", "controlId": "MSG1", "sender": "HIS^TWN001",
                             "receivedAt": "2026-03-01T17:01:00+08:00"}]
    assert c["imagingStudies"][0]["sources"] == [{"controlId": "MSG1"}]
    assert c["patient"]["sources"] == [{"controlId": "MSG0"}]
    by_id = {o["id"]: o["sources"] for o in c["patient"]["observations"]}
    assert by_id["obs3-0"] == [{"controlId": "MSG0"}] and by_id["obs3-1"] == []


@pytest.fixture
def production_server(tmp_path: Path, db_url: str) -> Any:
    doc = "{ me { id } }"
    manifest = tmp_path / "allowed.json"
    manifest.write_text(json.dumps({hashlib.sha256(doc.encode()).hexdigest(): doc}))

    return running_server(
        tmp_path / "data", db_url, env="production", persisted_queries_file=manifest,
        persisted_queries_only=True, graphql_max_body_bytes=2048, cors_origins="https://app.example.org",
    )


async def test_production_guard_rails(production_server: Any) -> None:
    async with production_server as srv:
        token = srv.token("coord1", "coordinator", facility="*")
        auth = {"Authorization": f"Bearer {token}"}
        doc = "{ me { id } }"
        h = hashlib.sha256(doc.encode()).hexdigest()
        async with httpx.AsyncClient(base_url=srv.base_url, headers=auth) as http:
            # on the allow-list: by hash alone, and with the document
            r = await http.post("/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": h}}})
            assert r.json() == {"data": {"me": {"id": "coord1"}}}
            assert (await http.post("/graphql", json={"query": doc})).json()["data"] == {"me": {"id": "coord1"}}
            # anything else is refused before it runs, introspection included
            r = await http.post("/graphql", json={"query": "{ __schema { types { name } } }"})
            assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
            r = await http.post("/graphql", json={"extensions": {"persistedQuery": {"sha256Hash": "0" * 64}}})
            assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
            wrong = {"persistedQuery": {"sha256Hash": "1" * 64}}
            r = await http.post("/graphql", json={"query": doc, "extensions": wrong})
            assert r.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
            # the body limit, before parsing
            big = b"{" + b" " * 4096 + b"}"
            r = await http.post("/graphql", content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413 and r.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
            # no GraphiQL page
            r = await http.get("/graphql", headers={"accept": "text/html"})
            assert r.status_code != 200 or "graphiql" not in r.text.lower()
            # CORS: the allowed origin gets its preflight answered, another does not
            pre = {"origin": "https://app.example.org", "access-control-request-method": "POST",
                   "access-control-request-headers": "authorization,content-type"}
            r = await http.options("/graphql", headers=pre)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
            r = await http.options("/graphql", headers={**pre, "origin": "https://evil.example"})
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
            # WebSockets: the same origins (a page elsewhere cannot open one with the user's cookies)
            for origin, allowed in (("https://app.example.org", True), ("https://evil.example", False)):
                try:
                    async with graphql_socket(srv.base_url, headers={"Origin": origin}) as ws:
                        assert (await ws.init({"token": token}))["type"] == "connection_ack"
                    assert allowed, origin
                except websockets.InvalidStatus as exc:
                    assert not allowed and exc.response.status_code == 403, origin
            # still serving
            assert (await http.post("/graphql", json={"query": doc})).status_code == 200


async def test_development_allows_introspection_and_apq_registration(
    server: RunningServer, coordinator: GraphQLClient
) -> None:
    data = await coordinator.execute("{ __schema { queryType { name } } }")
    assert data == {"__schema": {"queryType": {"name": "Query"}}}
    doc = "{ me { roles } }"
    h = hashlib.sha256(doc.encode()).hexdigest()
    ext = {"persistedQuery": {"version": 1, "sha256Hash": h}}
    r = await coordinator.http.post("/graphql", json={"extensions": ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    r = await coordinator.http.post("/graphql", json={"query": doc, "extensions": ext})
    assert r.json() == {"data": {"me": {"roles": ["coordinator", "primary_doctor"]}}}
    r = await coordinator.http.post("/graphql", json={"extensions": ext})  # now known by its hash
    assert r.json() == {"data": {"me": {"roles": ["coordinator", "primary_doctor"]}}}
    # no CORS by default: a cross-origin preflight gets no allow-origin
    r = await coordinator.http.options(
        "/graphql", headers={"origin": "https://app.example.org", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture
def captured_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.ERROR, logger="huizhen.graphql.errors"):
        yield caplog


async def test_unexpected_error_is_internal_with_the_request_id(
    server: RunningServer, coordinator: GraphQLClient, captured_errors: pytest.LogCaptureFixture
) -> None:
    # a practitioner row with a title the model does not know: reading it raises ValueError
    await seed(server.services.store, 2)
    async with server.services.store.write() as repo:
        await repo.conn.exec_driver_sql("UPDATE practitioners SET title = 'BOGUS-TITLE' WHERE id = 'exp2'")
    r = await coordinator.http.post(
        "/graphql", json={"query": '{ consultation(id: "c00001") { expert { id } } }'},
        headers={"X-Request-Id": "trace-42"},
    )
    assert r.headers["x-request-id"] == "trace-42"
    err = r.json()["errors"][0]
    assert err["extensions"]["code"] == "INTERNAL" and "trace-42" in err["message"]
    assert "Traceback" not in r.text and "BOGUS" not in r.text
    assert any("trace-42" in rec.getMessage() for rec in captured_errors.records)
    # a generated id when the client sends none (or an unusable one)
    r = await coordinator.http.post("/graphql", json={"query": "{ me { id } }"}, headers={"X-Request-Id": "a b"})
    assert len(r.headers["x-request-id"]) == 32

