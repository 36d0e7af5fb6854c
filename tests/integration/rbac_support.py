"""A server with two facilities, their doctors, patients and consultations, and a token per built-in role."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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
from tests.helpers import RunningServer, running_server

# role -> (sub, facility claim)
VIEWERS: dict[str, tuple[str, str | None]] = {
    "primary_doctor": ("doc1", "TWN001"),
    "expert": ("exp1", None),
    "patient": ("pat1", "TWN001"),
    "coordinator": ("coord1", None),
    "integration_admin": ("admin1", None),
    "security_officer": ("sec1", None),
    "auditor": ("aud1", None),
    "his_system": ("his1", "TWN001"),
}
ROLES = list(VIEWERS)


@dataclass
class World:
    server: RunningServer
    c1: str  # pat1's consultation at TWN001, PENDING in 心血管内科 (exp1's department)
    c2: str  # pat2's consultation at TWN002, PENDING in 神经内科

    def token(self, role: str) -> str:
        sub, facility = VIEWERS[role]
        return self.server.token(sub, role, facility=facility)


@contextlib.asynccontextmanager
async def rbac_world(data_dir: Path, db_url: str) -> AsyncIterator[World]:
    async with running_server(data_dir, db_url) as srv:
        async with srv.services.store.write() as repo:
            f1 = await repo.directory.save_facility(Facility("TWN001", "石桥镇卫生院", FacilityLevel.PRIMARY))
            f2 = await repo.directory.save_facility(Facility("TWN002", "河口镇卫生院", FacilityLevel.PRIMARY))
            for pid, fac, dept in (("doc1", f1, "全科"), ("doc2", f2, "全科"), ("exp1", None, "心血管内科")):
                await repo.directory.save_practitioner(Practitioner(
                    id=pid, name=HumanName.of("王", (pid,)), identifiers=[Identifier("s", pid)],
                    facility_id=fac.id if fac else None, department=dept, online=True,
                ))
            for pid, fac, family in (("pat1", f1, "吴"), ("pat2", f2, "李")):
                await repo.patients.save(Patient(
                    id=pid, name=HumanName.of(family, ("桂兰",)), identifiers=[Identifier("mrn", f"M-{pid}")],
                    facility_id=fac.id,
                ))
        ids = []
        for patient, doctor, facility, dept in (("pat1", "doc1", "TWN001", "心血管内科"),
                                                ("pat2", "doc2", "TWN002", "神经内科")):
            actor = Actor(doctor, ("primary_doctor",), facility)
            c = await srv.services.consultations.request(ConsultationRequest(
                patient_id=patient, department=dept, urgency=Urgency.ROUTINE, chief_complaint="头晕三天",
                requester_id=doctor, facility_code=facility,
            ), actor)
            await srv.services.consultations.submit(c.id, actor)
            ids.append(c.id)
        yield World(srv, ids[0], ids[1])
