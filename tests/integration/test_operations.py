"""Operations over the real server: /metrics, request ids, dashboard GraphQL fields, mapping reloads."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from huizhen.adapters.mllp_client import MllpClient
from huizhen.integration.model import Actor
from huizhen.rbac.policy import Rule
from tests.helpers import RunningServer, running_server
from tests.ops_support import CHINESE_TEXT, adt, booking, mappings_copy, order


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url, mappings_dir=mappings_copy(tmp_path),
                              mappings_poll_seconds=0.2) as srv:
        yield srv


async def send(server: RunningServer, *messages: bytes) -> list[bytes]:
    client = MllpClient("127.0.0.1", server.ports["mllp"], ack_timeout_s=30)
    await client.connect()
    try:
        return [await client.send(m) for m in messages]
    finally:
        await client.close()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_need_a_token_and_count_messages_without_patient_data(server: RunningServer) -> None:
    admin = server.token("ops-1", "integration_admin")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/metrics")).status_code == 401
        doctor = server.token("doc-1", "primary_doctor")
        assert (await http.get("/metrics", headers={"Authorization": f"Bearer {doctor}"})).status_code == 403
        await send(server, adt("M-1"), adt("M-2", mrn="OPS2"), booking("M-3"))
        gql = server.client(admin)
        await gql.execute("{ channels { name } }")
        await gql.aclose()
        r = await http.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "huizhen_messages_total", channel="mllp", type="ADT^A01", status="PROCESSED") == 2
    assert sample(text, "huizhen_messages_total", channel="mllp", type="SIU^S12", status="ERROR") == 1
    assert sample(text, "huizhen_ack_latency_seconds_count", channel="mllp") == 3
    assert sample(text, "huizhen_journal_messages", channel="mllp", status="PROCESSED") == 2
    assert sample(text, "huizhen_graphql_operations_total", operation="query", outcome="ok") >= 1
    assert sample(text, "huizhen_mllp_frames_received_total") == 3
    assert "huizhen_db_pool_connections" in text and "huizhen_outbound_queue_depth" in text
    assert "huizhen_graphql_subscriptions_active" in text and "huizhen_signaling_peers" in text
    assert CHINESE_TEXT not in text and "欧阳" not in text and "OPS1" not in text


async def test_scrape_token_setting(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "d", db_url, metrics_token="scrape-secret-for-tests") as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-for-tests"})
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert ok.status_code == 200 and "huizhen_messages" in ok.text
    assert wrong.status_code == 401


async def test_request_id_is_honoured_or_generated(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        given = await http.get("/healthz", headers={"X-Request-Id": "abc-123"})
        generated = await http.get("/healthz")
        hostile = await http.get("/healthz", headers={"X-Request-Id": "bad id <script>" * 20})
    assert given.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


async def test_dashboard_fields_rate_raw_board_and_audit(server: RunningServer) -> None:
    await send(server, adt("D-1"), booking("D-2"), order("D-3"))
    admin = server.client(server.token("ops-1", "integration_admin"))
    coordinator = server.client(server.token("coord-1", "coordinator", facility="*"))
    try:
        rate = (await admin.execute("{ messageRate(minutes: 60) { minute channel received errors } }"))["messageRate"]
        assert sum(p["received"] for p in rate) == 3 and sum(p["errors"] for p in rate) == 1
        assert all(p["channel"] == "mllp" and p["minute"].endswith("+08:00") for p in rate)
        assert await admin.error_code("{ messageRate(minutes: 0) { minute } }") == "BAD_INPUT"
        nodes = (await admin.execute("{ messages(status: ERROR) { edges { node { id } } } }"))["messages"]["edges"]
        failed = nodes[0]["node"]["id"]
        one = (await admin.execute("query($id: ID!) { message(id: $id) { id status ack raw effects { type } } }",
                                   id=failed))["message"]
        assert one["status"] == "ERROR" and "MSA|AE|D-2" in one["ack"] and one["raw"].startswith("MSH|")
        assert "王^大明" in one["raw"]  # Chinese survives the round trip
        assert await coordinator.error_code(
            "query($id: ID!) { message(id: $id) { id } }", id=failed) == "FORBIDDEN"
        board = (await coordinator.execute(
            "{ consultationBoard { department urgency pending assigned inProgress oldestWaitingSince } }"
        ))["consultationBoard"]
        assert board == [{"department": "心血管内科", "urgency": "CRITICAL", "pending": 1, "assigned": 0,
                          "inProgress": 0, "oldestWaitingSince": board[0]["oldestWaitingSince"]}]
        assert board[0]["oldestWaitingSince"]
        assert await admin.error_code("{ consultationBoard { department } }") == "FORBIDDEN"
    finally:
        await admin.aclose()
        await coordinator.aclose()
    async with server.services.store.read() as repo:
        events = [e async for e in repo.audit.all()]
    reads = [(e.actor, e.action, e.entity_id, e.outcome) for e in events if e.action == "read-raw"]
    assert reads == [("ops-1", "read-raw", failed, "success")]


async def test_raw_content_refused_and_audited_for_other_roles(server: RunningServer) -> None:
    await send(server, adt("R-1"))
    admin = server.client(server.token("ops-1", "integration_admin"))
    other = server.client(server.token("sec-1", "security_officer"))
    officer = Actor("sec-1", ("security_officer",), None)
    raw_rule = Rule("p", "integration_admin", "*", "message", "raw")
    try:
        [edge] = (await admin.execute("{ messages { edges { node { id } } } }"))["messages"]["edges"]
        # a role that may not read the journal at all is refused at the list, before any raw content
        body = (await other.raw("{ messages { edges { node { id raw } } } }")).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert CHINESE_TEXT not in str(body)
        # a policy that lets admins read the journal but not raw content refuses raw, and audits the attempt
        assert await server.services.policies.remove(raw_rule, officer)
        body = (await admin.raw("{ messages { edges { node { id raw } } } }")).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert CHINESE_TEXT not in str(body)
    finally:
        await server.services.policies.add(raw_rule, officer)
        await admin.aclose()
        await other.aclose()
    async with server.services.store.read() as repo:
        events = [e async for e in repo.audit.all()]
    assert [(e.actor, e.entity_id, e.outcome) for e in events if e.action == "read-raw"] == [
        ("ops-1", edge["node"]["id"], "denied")
    ]
    assert ("sec-1", "message", "denied") in [(e.actor, e.entity_type, e.outcome) for e in events]


async def test_mapping_tables_reload_on_change_and_reject_a_bad_row(server: RunningServer) -> None:
    tables_dir = server.services.settings.resolved_mappings_dir
    admin = {"Authorization": f"Bearer {server.token('ops-1', 'integration_admin')}"}

    def order_code(code: str) -> object:
        return server.services.codecs["mllp"].context.tables.consultation_orders.get(None, code)  # type: ignore[attr-defined]

    orders = tables_dir / "consultation_orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + ",OPS-NEURO,神经内科,test order\n", encoding="utf-8")
    for _ in range(100):  # the watcher polls every 0.2 s
        if order_code("OPS-NEURO") is not None:
            break
        await asyncio.sleep(0.1)
    assert order_code("OPS-NEURO") is not None
    priorities = tables_dir / "priorities.csv"
    good = priorities.read_text(encoding="utf-8")
    priorities.write_text(good + ",SOON,WHENEVER\n", encoding="utf-8")
    orders.write_text(orders.read_text(encoding="utf-8") + ",OPS-EYE,眼科,test order\n", encoding="utf-8")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.post("/admin/mappings/reload")).status_code == 401
        rejected = await http.post("/admin/mappings/reload", headers=admin)
        assert rejected.status_code == 422
        assert re.search(r"priorities\.csv:\d+: 'WHENEVER' is not a valid value", rejected.json()["detail"])
        assert order_code("OPS-EYE") is None and order_code("OPS-NEURO") is not None  # the old tables stay
        priorities.write_text(good, encoding="utf-8")
        accepted = await http.post("/admin/mappings/reload", headers=admin)
    assert accepted.status_code == 200 and accepted.json()["reloaded"] is True
    assert order_code("OPS-EYE") is not None
