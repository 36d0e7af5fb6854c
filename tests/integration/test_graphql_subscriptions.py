"""Subscriptions over real WebSockets against the real server, on both back ends:
both protocols, authentication in ``connection_init``, row-level filtering, replay by
cursor, token expiry, and the HL7 and DICOM edges feeding ``messageProcessed`` and
``studyReceived``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import free_port
from tests.dicom_support import PEERS, corpus, pynetdicom_store
from tests.graphql_seed import seed
from tests.helpers import GraphQLClient, RunningServer, running_server
from tests.ws_client import LEGACY_WS, SubscriptionEnded, graphql_socket

UPDATED = """subscription($id: ID, $since: String) { consultationUpdated(id: $id, since: $since) {
  cursor event { type actor } consultation { id number status facility { code } } } }"""
QUEUE = "subscription($d: String) { consultationQueue(department: $d) { id number status department } }"
MESSAGES = """subscription($since: String) { messageProcessed(channel: "mllp", since: $since) {
  channel type controlId status journalCursor } }"""
STUDIES = "subscription { studyReceived { studyInstanceUid modalities } }"

ADT = (
    "MSH|^~\\&|HIS|TWN001|HUIZHEN|HZ|20260301080000||ADT^A01^ADT_A01|CTRL-{n}|P|2.5\r"
    "EVN|A01|20260301080000\r"
    "PID|1||MRN{n}^^^TWN001^MR||张^三||19600101|M\r"
    "PV1|1|O\r"
)


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url, dicom_port=free_port(), dicom_peers=PEERS) as srv:
        await seed(srv.services.store, 6)
        yield srv


@pytest.fixture
async def coordinator(server: RunningServer) -> AsyncIterator[GraphQLClient]:
    # the setup actor of these tests: a platform coordinator who also requests and runs consultations
    client = server.client(server.token("coord1", "coordinator", "primary_doctor", "expert", facility="*"))
    yield client
    await client.aclose()


def bearer(server: RunningServer, sub: str, role: str, facility: str | None = None, ttl: int | None = None) -> dict:
    return {"Authorization": f"Bearer {server.token(sub, role, facility=facility, ttl=ttl)}"}


async def test_events_reach_only_viewers_who_may_read_them(server: RunningServer, coordinator: GraphQLClient) -> None:
    async with (
        graphql_socket(server.base_url) as twn,
        graphql_socket(server.base_url) as chc,
    ):
        assert (await twn.init(bearer(server, "doc1", "primary_doctor", "TWN001")))["type"] == "connection_ack"
        assert (await chc.init(bearer(server, "docB", "primary_doctor", "CHC002")))["type"] == "connection_ack"
        s_twn, s_chc = await twn.subscribe(UPDATED), await chc.subscribe(UPDATED)
        await asyncio.sleep(0.2)  # both subscriptions registered on the bus

        await coordinator.execute('mutation { assignExpert(id: "c00000", expertId: "exp1") { id } }')  # TWN001
        await coordinator.execute('mutation { cancelConsultation(id: "c00003", reason: "重复申请") { id } }')  # CHC002
        await coordinator.execute('mutation { startConsultation(id: "c00000") { id } }')  # TWN001

        first = (await twn.next(s_twn))["consultationUpdated"]
        assert first["event"] == {"type": "ASSIGNED", "actor": "coord1"}
        assert first["consultation"] == {"id": "c00000", "number": "HZ-20260301-00000", "status": "ASSIGNED",
                                         "facility": {"code": "TWN001"}}
        # the CHC002 cancellation never reaches TWN001; the next TWN001 event does
        assert (await twn.next(s_twn))["consultationUpdated"]["event"]["type"] == "STARTED"
        other = (await chc.next(s_chc))["consultationUpdated"]
        assert other["consultation"]["id"] == "c00003" and other["event"]["type"] == "CANCELLED"


NESTED = """subscription { consultationUpdated { event { type }
  consultation { id status patient { id name { text } } expert { id } } } }"""


async def test_each_event_is_answered_for_each_subscriber_with_its_own_reads_audited(
    server: RunningServer, coordinator: GraphQLClient
) -> None:
    """Events one after another on one subscription (its selection collected once, its loaders
    renewed after an event that used them): each answers its own consultation, patient and expert;
    the objects built once per event reach only the viewers who may read the consultation, and
    each viewer's patient reads are audited under its own name."""
    async with (
        graphql_socket(server.base_url) as twn,
        graphql_socket(server.base_url) as platform,
    ):
        await twn.init(bearer(server, "doc1", "primary_doctor", "TWN001"))
        await platform.init(bearer(server, "coord2", "coordinator"))
        in_progress = await coordinator.execute('{ consultation(id: "c00002") { expert { id } } }')
        s_twn, s_all = await twn.subscribe(NESTED), await platform.subscribe(NESTED)
        await asyncio.sleep(0.2)  # both subscriptions registered on the bus

        await coordinator.execute('mutation { assignExpert(id: "c00000", expertId: "exp1") { id } }')  # TWN001
        await coordinator.execute('mutation { cancelConsultation(id: "c00003", reason: "重复申请") { id } }')  # CHC002
        await coordinator.execute('mutation { cancelConsultation(id: "c00002", reason: "患者转院") { id } }')  # TWN001

        def seen(doc: dict) -> tuple:
            c = doc["consultationUpdated"]["consultation"]
            return (doc["consultationUpdated"]["event"]["type"], c["id"], c["status"], c["patient"]["id"],
                    c["patient"]["name"]["text"], (c["expert"] or {}).get("id"))

        expected = {
            "c00000": ("ASSIGNED", "c00000", "ASSIGNED", "pat0", "吴桂兰0", "exp1"),
            "c00003": ("CANCELLED", "c00003", "CANCELLED", "pat3", "吴桂兰3", None),
            "c00002": ("CANCELLED", "c00002", "CANCELLED", "pat2", "吴桂兰2",
                       in_progress["consultation"]["expert"]["id"]),
        }
        assert [seen(await platform.next(s_all)) for _ in range(3)] == list(expected.values())
        assert [seen(await twn.next(s_twn)) for _ in range(2)] == [expected["c00000"], expected["c00002"]]
        await twn.nothing_for(s_twn, 0.3)  # the CHC002 cancellation never reaches TWN001

    def patient_reads(events: list, actor: str) -> set[str]:
        return {e.entity_id for e in events if e.actor == actor and e.action == "read" and e.entity_type == "Patient"}

    # a subscription's reads are written when it ends
    for _ in range(100):
        async with server.services.store.read() as repo:
            events = [e async for e in repo.audit.all()]
        if patient_reads(events, "doc1") and patient_reads(events, "coord2"):
            break
        await asyncio.sleep(0.1)
    assert patient_reads(events, "doc1") == {"pat0", "pat2"}
    assert patient_reads(events, "coord2") == {"pat0", "pat2", "pat3"}


async def test_connection_init_authenticates(server: RunningServer) -> None:
    for payload in (None, {}, {"Authorization": "Bearer not.a.token"}, {"token": "garbage"}):
        async with graphql_socket(server.base_url) as ws:
            await ws.send({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
            with pytest.raises(websockets.ConnectionClosed):
                await ws.receive()
            assert ws.ws.close_code == 4403, payload
    # subscribing before connection_init: 4401 (graphql-transport-ws)
    async with graphql_socket(server.base_url) as ws:
        await ws.subscribe(UPDATED)
        with pytest.raises(websockets.ConnectionClosed):
            await ws.receive()
        assert ws.ws.close_code == 4401
    # a bad token in the handshake itself is refused there
    async with graphql_socket(server.base_url, query="token=bad") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.receive()
        assert ws.ws.close_code == 4401
    # the legacy protocol answers connection_error
    async with graphql_socket(server.base_url, LEGACY_WS) as ws:
        answer = await ws.init({"token": "garbage"})
        assert answer["type"] == "connection_error"
        assert answer["payload"]["code"] == "UNAUTHENTICATED"
    # and a token in the handshake header is enough
    async with graphql_socket(server.base_url, headers=bearer(server, "doc1", "primary_doctor", "TWN001")) as ws:
        assert (await ws.init({}))["type"] == "connection_ack"


async def test_legacy_protocol_queue_for_an_experts_department(
    server: RunningServer, coordinator: GraphQLClient
) -> None:
    token = server.token("exp1", "expert")
    async with graphql_socket(server.base_url, LEGACY_WS) as ws:
        assert (await ws.init({"token": token}))["type"] == "connection_ack"
        sid = await ws.subscribe(QUEUE)  # no department: the expert's own (心血管内科)
        await asyncio.sleep(0.2)
        for dept in ("呼吸内科", "心血管内科"):
            created = await coordinator.execute(
                """mutation($i: ConsultationInput!) { requestConsultation(input: $i) { id } }""",
                i={"patientId": "pat0", "department": dept, "urgency": "URGENT", "chiefComplaint": "胸痛两小时"},
            )
            cid = created["requestConsultation"]["id"]
            await coordinator.execute("mutation($id: ID!) { submitConsultation(id: $id) { id } }", id=cid)
        queued = (await ws.next(sid))["consultationQueue"]
        assert queued["id"] == cid and queued["status"] == "PENDING" and queued["department"] == "心血管内科"


async def test_reconnect_with_since_loses_nothing_and_repeats_nothing(
    server: RunningServer, coordinator: GraphQLClient
) -> None:
    auth = bearer(server, "doc1", "primary_doctor", "TWN001")
    async with graphql_socket(server.base_url) as ws:
        await ws.init(auth)
        sid = await ws.subscribe(UPDATED)
        await asyncio.sleep(0.2)
        await coordinator.execute('mutation { assignExpert(id: "c00000", expertId: "exp1") { id } }')
        cursor = (await ws.next(sid))["consultationUpdated"]["cursor"]
    # disconnected: two changes happen
    await coordinator.execute('mutation { startConsultation(id: "c00000") { id } }')
    await coordinator.execute(
        'mutation { completeConsultation(id: "c00000", diagnosis: "稳定型心绞痛", treatmentPlan: "阿司匹林") { id } }'
    )
    async with graphql_socket(server.base_url) as ws:
        await ws.init(auth)
        sid = await ws.subscribe(UPDATED, since=cursor)
        replayed = [(await ws.next(sid))["consultationUpdated"] for _ in range(2)]
        assert [(e["consultation"]["id"], e["event"]["type"]) for e in replayed] == [
            ("c00000", "STARTED"), ("c00000", "COMPLETED")]
        await coordinator.execute('mutation { cancelConsultation(id: "c00002", reason: "患者转院") { id } }')
        live = (await ws.next(sid))["consultationUpdated"]
        assert (live["consultation"]["id"], live["event"]["type"]) == ("c00002", "CANCELLED")
        assert live["cursor"] not in {e["cursor"] for e in replayed}
    async with graphql_socket(server.base_url) as ws:
        await ws.init(auth)
        sid = await ws.subscribe(UPDATED, since="not-a-cursor")
        with pytest.raises(SubscriptionEnded) as ended:
            await ws.next(sid)
        assert "BAD_INPUT" in json.dumps(ended.value.doc)


async def test_token_expiry_ends_the_subscription(server: RunningServer) -> None:
    async with graphql_socket(server.base_url) as ws:
        await ws.init(bearer(server, "doc1", "primary_doctor", "TWN001", ttl=2))
        sid = await ws.subscribe(UPDATED)
        with pytest.raises(SubscriptionEnded) as ended:
            await ws.next(sid, timeout=30)
        assert "UNAUTHENTICATED" in json.dumps(ended.value.doc)


async def test_message_processed_for_integration_admins(server: RunningServer) -> None:
    async with graphql_socket(server.base_url) as admin, graphql_socket(server.base_url) as doctor:
        await admin.init(bearer(server, "ops1", "integration_admin", "*"))
        await doctor.init(bearer(server, "doc1", "primary_doctor", "TWN001"))
        s_admin, s_doctor = await admin.subscribe(MESSAGES), await doctor.subscribe(MESSAGES)
        with pytest.raises(SubscriptionEnded) as refused:
            await doctor.next(s_doctor)
        assert "FORBIDDEN" in json.dumps(refused.value.doc)
        await asyncio.sleep(0.2)
        assert b"MSA|AA|CTRL-1" in await send_hl7(server, 1)
        msg = (await admin.next(s_admin, timeout=30))["messageProcessed"]
        cursor = msg.pop("journalCursor")
        assert msg == {"channel": "mllp", "type": "ADT^A01", "controlId": "CTRL-1", "status": "PROCESSED"}
    # two more while nobody listens; a reconnect with the cursor replays them, then goes live
    for n in (2, 3):
        assert b"MSA|AA" in await send_hl7(server, n)
    async with graphql_socket(server.base_url) as admin:
        await admin.init(bearer(server, "ops1", "integration_admin", "*"))
        sid = await admin.subscribe(MESSAGES, since=cursor)
        assert [(await admin.next(sid))["messageProcessed"]["controlId"] for _ in range(2)] == ["CTRL-2", "CTRL-3"]
        assert b"MSA|AA" in await send_hl7(server, 4)
        assert (await admin.next(sid, timeout=30))["messageProcessed"]["controlId"] == "CTRL-4"


@pytest.mark.parametrize("role", ["auditor", "integration_admin", "security_officer"])
async def test_subscriptions_the_policy_denies_are_forbidden_not_silent(server: RunningServer, role: str) -> None:
    """The roles without `consultation read` / `study read` get FORBIDDEN, as the queries answer
    (and as messageProcessed answers a doctor), over both protocols; not an open, silent stream."""
    for protocol in ("graphql-transport-ws", LEGACY_WS):
        async with graphql_socket(server.base_url, protocol=protocol) as ws:
            await ws.init(bearer(server, f"{role}-1", role, "*"))
            for query in (UPDATED, QUEUE, STUDIES):
                sid = await ws.subscribe(query)
                with pytest.raises(SubscriptionEnded) as refused:
                    await ws.next(sid)
                assert "FORBIDDEN" in json.dumps(refused.value.doc), (protocol, query)


async def send_hl7(server: RunningServer, n: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["mllp"])
    try:
        writer.write(b"\x0b" + ADT.format(n=n).encode() + b"\x1c\r")
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
    finally:
        writer.close()


async def test_study_received_from_a_dicom_modality(server: RunningServer) -> None:
    async with graphql_socket(server.base_url) as ws:
        await ws.init(bearer(server, "coord1", "coordinator", "*"))
        sid = await ws.subscribe(STUDIES)
        await asyncio.sleep(0.2)
        assert await pynetdicom_store(server.ports["dicom"], corpus("CT_small.dcm")) == [0]
        study = (await ws.next(sid, timeout=30))["studyReceived"]
        assert study["modalities"] == ["CT"] and study["studyInstanceUid"]



async def test_open_subscriptions_are_counted_in_metrics(server: RunningServer) -> None:
    admin = {"Authorization": f"Bearer {server.token('ops1', 'integration_admin', facility='*')}"}

    async def active() -> str:
        async with httpx.AsyncClient(base_url=server.base_url, headers=admin) as http:
            text = (await http.get("/metrics")).text
        return next(line for line in text.splitlines() if line.startswith("huizhen_graphql_subscriptions_active "))

    async with graphql_socket(server.base_url) as ws:
        await ws.init(bearer(server, "doc1", "primary_doctor", "TWN001"))
        await ws.subscribe(UPDATED)
        for _ in range(50):  # the subscribe message reaches the server
            if await active() == "huizhen_graphql_subscriptions_active 1.0":
                break
            await asyncio.sleep(0.1)
        assert await active() == "huizhen_graphql_subscriptions_active 1.0"
    for _ in range(50):
        if await active() == "huizhen_graphql_subscriptions_active 0.0":
            break
        await asyncio.sleep(0.1)
    assert await active() == "huizhen_graphql_subscriptions_active 0.0"
