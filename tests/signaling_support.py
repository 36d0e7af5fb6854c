"""Signaling test support: a small client over a real WebSocket, and a consultation to call about."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from huizhen.app import Services
from huizhen.integration.consultations import ConsultationRequest
from huizhen.integration.model import (
    Actor,
    Facility,
    FacilityLevel,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    Urgency,
)

FACILITY = "TWN001"


class SignalingClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, base_url: str, token: str | None = None, *, first_message: bool = False) -> SignalingClient:
        url = base_url.replace("http://", "ws://") + "/signaling"
        if token and not first_message:
            url += f"?token={token}"
        client = cls(await websockets.connect(url, max_size=None))
        if token and first_message:
            await client.send(type="auth", token=token)
        return client

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message, ensure_ascii=False))

    async def expect(self, kind: str, within: float = 10) -> dict[str, Any]:
        """The next message of type ``kind``; others are kept for later ``expect`` calls."""
        for i, m in enumerate(self.backlog):
            if m["type"] == kind:
                return self.backlog.pop(i)
        async with asyncio.timeout(within):
            while True:
                m = json.loads(await self.ws.recv())
                if m["type"] == kind:
                    return m  # type: ignore[no-any-return]
                self.backlog.append(m)

    async def join(self, room: str) -> dict[str, Any]:
        await self.send(type="join", room=room)
        return await self.expect("joined")

    async def error(self, within: float = 10) -> str:
        return str((await self.expect("error", within))["code"])

    async def closed(self, within: float = 10) -> int | None:
        """Wait for the server to close the socket; its close code."""
        async with asyncio.timeout(within):
            try:
                while True:
                    self.backlog.append(json.loads(await self.ws.recv()))
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Cast:
    consultation: str
    doctor: str = "doc1"
    expert: str = "exp1"
    patient: str = "pat1"
    outsider: str = "doc2"


async def seed_directory(services: Services) -> None:
    async with services.store.write() as repo:
        f = await repo.directory.save_facility(Facility(FACILITY, "石桥镇卫生院", FacilityLevel.PRIMARY))
        other = await repo.directory.save_facility(Facility("TWN002", "白鹤镇卫生院", FacilityLevel.PRIMARY))
        for pid, family, given, facility, dept in (
            ("doc1", "孙", "丽", f.id, "全科"),
            ("doc2", "赵", "敏", other.id, "全科"),
            ("exp1", "王", "建国", None, "心血管内科"),
        ):
            await repo.directory.save_practitioner(
                Practitioner(id=pid, name=HumanName.of(family, (given,)), identifiers=[Identifier("s", pid)],
                             facility_id=facility, department=dept, online=True)
            )
        await repo.patients.save(
            Patient(id="pat1", name=HumanName.of("吴", ("桂兰",)), identifiers=[Identifier("mrn", "M1")],
                    facility_id=f.id)
        )


async def assigned_consultation(services: Services) -> str:
    """A consultation of doc1 for pat1, assigned to exp1: its room is open."""
    actor = Actor("doc1", ("primary_doctor",), FACILITY)
    svc = services.consultations
    c = await svc.request(
        ConsultationRequest(patient_id="pat1", department="心血管内科", urgency=Urgency.URGENT,
                            chief_complaint="胸闷三天", requester_id="doc1", expert_id="exp1",
                            facility_code=FACILITY),
        actor,
    )
    await svc.submit(c.id, actor)
    await svc.assign(c.id, Actor("coord", ("coordinator",), "*"))
    return c.id
