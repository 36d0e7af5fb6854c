"""The ORU^R01 report back to the requesting HIS: durable, retried, refused, and survives a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huizhen.adapters.mllp import MllpServer, PeerInfo, RejectReason
from huizhen.adapters.mllp_client import MllpClient
from huizhen.integration.model import Actor, OutboundStatus
from huizhen.mappings.hl7v2.parse import parse_message
from tests.conftest import free_port
from tests.helpers import RunningServer, running_server
from tests.integration.test_hl7_mllp import ORDER, msg

EXPERT = Actor("exp1", ("expert",))


class FakeHis:
    """A HIS's MLLP receiver: records what it gets and answers with a chosen ACK code."""

    def __init__(self, code: str = "AA") -> None:
        self.code = code
        self.received: list[bytes] = []
        self.arrived = asyncio.Event()

    async def on_frame(self, payload: bytes, peer: PeerInfo) -> bytes | None:
        self.received.append(payload)
        self.arrived.set()
        control = parse_message(payload).header.control_id
        return f"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127||ACK|A{control}|P|2.5\rMSA|{self.code}|{control}\r".encode()

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        return None


async def complete_an_hl7_consultation(server: RunningServer, control: str = "ORM-R1") -> str:
    client = MllpClient("127.0.0.1", server.ports["mllp"])
    try:
        await client.send(msg(*ORDER, type="ORM^O01^ORM_O01", control_id=control))
    finally:
        await client.close()
    svc = server.services.consultations
    async with server.services.store.write() as repo:
        from huizhen.integration.model import HumanName, Practitioner

        await repo.directory.save_practitioner(Practitioner(id="exp1", name=HumanName.of("王", ("建国",))))
        [(c, _)] = (await repo.consultations.search()).items
    await svc.assign(c.id, EXPERT, "exp1")
    await svc.start(c.id, EXPERT)
    await svc.complete(c.id, EXPERT, "不稳定型心绞痛", "收住院，冠脉造影")
    return c.id


async def outbox(server: RunningServer, cid: str) -> list:  # type: ignore[type-arg]
    async with server.services.store.read() as repo:
        return await repo.outbox.for_consultation(cid)


async def test_completed_hl7_consultation_is_reported(tmp_path: Path, db_url: str) -> None:
    his = FakeHis()
    receiver = MllpServer(his, "127.0.0.1", 0)
    await receiver.start()
    try:
        async with running_server(tmp_path / "d", db_url,
                                  hl7_report_endpoints=f"QSWSY=127.0.0.1:{receiver.port}") as server:
            cid = await complete_an_hl7_consultation(server)
            assert server.services.outbound is not None
            server.services.outbound.poke()
            await asyncio.wait_for(his.arrived.wait(), 30)
            report = parse_message(his.received[0])
            assert report.header.message_code.startswith("ORU^R01")
            assert "HZ-ORD-9^QSWSY" in report.text and "不稳定型心绞痛" in report.text
            for _ in range(100):  # the outcome is recorded right after the ACK
                [item] = await outbox(server, cid)
                if item.status is OutboundStatus.SENT:
                    break
                await asyncio.sleep(0.05)
            assert item.status is OutboundStatus.SENT and item.attempts == 1
            async with server.services.store.read() as repo:
                c = await repo.consultations.get(cid)
            assert c is not None and c.timeline[-1].type == "REPORT_SENT"
            admin = server.client(server.token("admin", "integration_admin"))
            channels = (await admin.execute("{ channels { name direction state received errors queued } }"))["channels"]
            await admin.aclose()
            assert {"name": "mllp-out", "direction": "outbound", "state": "running", "received": 1, "errors": 0,
                    "queued": 0} in channels
    finally:
        await receiver.stop()


async def test_unreachable_endpoint_is_retried_and_survives_restart(tmp_path: Path, db_url: str) -> None:
    port = free_port()  # nobody listens yet
    settings = {"hl7_report_endpoints": f"QSWSY=127.0.0.1:{port}"}
    async with running_server(tmp_path / "d", db_url, **settings) as server:
        assert server.services.outbound is not None
        await server.services.outbound.stop()  # drive attempts by hand, deterministically
        cid = await complete_an_hl7_consultation(server)
        assert await server.services.outbound.send_due() == 1
        [item] = await outbox(server, cid)
        assert item.status is OutboundStatus.PENDING and item.attempts == 1 and item.last_error
        assert item.next_attempt_at is not None and item.next_attempt_at > datetime.now(UTC)
        assert await server.services.outbound.send_due() == 0  # backing off
    his = FakeHis()
    receiver = MllpServer(his, "127.0.0.1", port)
    await receiver.start()
    try:
        async with running_server(tmp_path / "d", db_url, **settings) as server:
            sender = server.services.outbound
            assert sender is not None
            sender.clock = lambda: datetime.now(UTC) + timedelta(hours=1)  # past the backoff
            sender.poke()
            await asyncio.wait_for(his.arrived.wait(), 30)
            for _ in range(100):
                [item] = await outbox(server, cid)
                if item.status is OutboundStatus.SENT:
                    break
                await asyncio.sleep(0.05)
            assert item.status is OutboundStatus.SENT and item.attempts == 2
    finally:
        await receiver.stop()


@pytest.mark.parametrize(("code", "status"), [("AR", OutboundStatus.FAILED), ("AE", OutboundStatus.PENDING)])
async def test_refusal_fails_and_application_error_retries(
    tmp_path: Path, db_url: str, code: str, status: OutboundStatus
) -> None:
    his = FakeHis(code)
    receiver = MllpServer(his, "127.0.0.1", 0)
    await receiver.start()
    try:
        async with running_server(tmp_path / "d", db_url,
                                  hl7_report_endpoints=f"QSWSY=127.0.0.1:{receiver.port}") as server:
            assert server.services.outbound is not None
            await server.services.outbound.stop()
            cid = await complete_an_hl7_consultation(server)
            assert await server.services.outbound.send_due() == 1
            [item] = await outbox(server, cid)
            assert item.status is status and code in (item.ack or "")
    finally:
        await receiver.stop()


async def test_graphql_consultations_are_not_reported(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "d", db_url, hl7_report_endpoints="QSWSY=127.0.0.1:9") as server:
        from huizhen.integration.consultations import ConsultationRequest
        from huizhen.integration.model import Facility, HumanName, Patient, Practitioner, Urgency

        async with server.services.store.write() as repo:
            f = await repo.directory.save_facility(Facility("QSWSY", "青山镇卫生院"))
            p = await repo.patients.save(Patient(name=HumanName.of("吴", ("兰",)), facility_id=f.id))
            await repo.directory.save_practitioner(Practitioner(id="exp1", name=HumanName.of("王", ("建国",))))
        svc = server.services.consultations
        c = await svc.request(ConsultationRequest(p.id, "心血管内科", Urgency.ROUTINE, "头晕"), EXPERT)
        for step in (svc.submit, lambda i, a: svc.assign(i, a, "exp1"), svc.start):
            await step(c.id, EXPERT)
        await svc.complete(c.id, EXPERT, "x", "y")
        assert await outbox(server, c.id) == []
