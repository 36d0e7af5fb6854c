"""Teaching cases archived on completion, and SLA escalation that fires once, on both back ends."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from huizhen.integration.casebook import CaseArchiver, chain, recommended
from huizhen.integration.consultations import ConsultationRequest, ConsultationService
from huizhen.integration.errors import BadInput
from huizhen.integration.events import InProcessBus
from huizhen.integration.model import Actor, Urgency
from huizhen.integration.sla import SlaTargets
from huizhen.integration.sla_watch import ESCALATED, SlaWatcher
from huizhen.integration.store import Store
from tests.integration.test_store import DOCTOR, TZ, seed

KEY = b"k" * 32
TARGETS = SlaTargets.minutes(assign={"CRITICAL": 5, "URGENT": 15, "ROUTINE": 1440},
                             start={"CRITICAL": 10, "URGENT": 60, "ROUTINE": 2880})


def pseudonym(patient_id: str) -> str:
    return "PSN-" + hmac.new(KEY, patient_id.encode(), hashlib.sha256).hexdigest()[:16]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _completed(store: Store, svc: ConsultationService, complaint: str, code: str, flags: list[str]) -> str:
    patient, expert = await seed(store)
    c = await svc.request(ConsultationRequest(
        patient_id=patient.id, department="心血管内科", urgency=Urgency.URGENT, chief_complaint=complaint,
        disease_code=code, expert_id=expert.id, requester_id=None, facility_code="TWN001"), DOCTOR)
    await svc.submit(c.id, DOCTOR)
    expert_actor = Actor(expert.id, ("expert",), "HOSP001")
    await svc.assign(c.id, expert_actor)
    await svc.start(c.id, expert_actor)
    await svc.complete(c.id, expert_actor, "急性下壁心肌梗死，欧阳志远先生需PCI", "转上级医院PCI，电话13800000004",
                       learning_flags=flags)
    return c.id


async def test_completion_archives_a_deidentified_case_once(store: Store) -> None:
    svc = ConsultationService(store, InProcessBus(), TZ, on_complete=chain(None, CaseArchiver(pseudonym)))
    cid = await _completed(store, svc, "欧阳志远，男，胸痛3小时，住东城区1号，身份证ID77", "I21.1",
                           ["MISDIAGNOSIS_RISK", "EMERGENCY_HANDLING"])
    async with store.read() as repo:
        page = await repo.cases.search(department="心血管内科")
        patient = (await repo.consultations.get(cid))
        assert patient is not None
        stored = await repo.patients.get(patient.patient_id)
    assert page.total == 1
    case = page.items[0][0]
    assert case.consultation_id == cid and case.pseudonym == pseudonym(stored.id)  # type: ignore[union-attr]
    text = repr(asdict(case))
    for secret in ("欧阳", "志远", "13800000004", "东城区1号", "M001", "ID77", "1949"):
        assert secret not in text, secret
    assert case.age_band == "70-79" and case.sex == "male" and "胸痛3小时" in case.chief_complaint
    assert len(case.learning_points) == 2
    async with store.write() as repo:  # archiving again is a no-op, not a second case
        assert await repo.cases.insert(case) is False


async def test_cases_filter_by_code_prefix_and_recommend_by_own_history(store: Store) -> None:
    svc = ConsultationService(store, InProcessBus(), TZ, on_complete=CaseArchiver(pseudonym))
    await _completed(store, svc, "胸痛", "I21.1", [])
    async with store.read() as repo:
        assert (await repo.cases.search(diagnosis_code="I21")).total == 1
        assert (await repo.cases.search(diagnosis_code="I2")).total == 0  # a code or its subcodes, not any prefix
        assert (await repo.cases.search(diagnosis_code="J18")).total == 0
        expert_id = (await repo.directory.experts())[0].id
        ranked = await recommended(repo, expert_id, 5)
    assert [c.diagnosis_code for c in ranked] == ["I21.1"]


async def test_unknown_learning_flag_is_bad_input(store: Store) -> None:
    svc = ConsultationService(store, InProcessBus(), TZ, on_complete=CaseArchiver(pseudonym))
    with pytest.raises(BadInput, match="unknown learning flag"):
        await _completed(store, svc, "胸痛", "I21.1", ["BOGUS"])


async def test_overdue_consultation_escalates_once_across_instances_and_restarts(store: Store) -> None:
    clock = Clock()
    bus = InProcessBus()
    svc = ConsultationService(store, bus, TZ, clock=clock)
    patient, _ = await seed(store)
    c = await svc.request(ConsultationRequest(patient_id=patient.id, department="心血管内科",
                                              urgency=Urgency.CRITICAL, chief_complaint="胸痛"), DOCTOR)
    await svc.submit(c.id, DOCTOR)
    a = SlaWatcher(store, bus, svc, TARGETS, clock=clock)
    b = SlaWatcher(store, bus, svc, TARGETS, clock=clock)  # a second instance on the same store
    events = bus.subscribe("consultation")
    clock.now += timedelta(minutes=4)
    assert await a.tick() == [] and await b.tick() == []
    clock.now += timedelta(minutes=2)
    first, second = await a.tick(), await b.tick()
    assert (first, second) == ([c.id], [])
    restarted = SlaWatcher(store, bus, svc, TARGETS, clock=clock)
    clock.now += timedelta(minutes=30)
    assert await restarted.tick() == []
    async with store.read() as repo:
        stored = await repo.consultations.get(c.id)
        flags = await repo.escalations.for_consultations([c.id])
    assert stored is not None and [e.type for e in stored.timeline].count(ESCALATED) == 1
    assert [p for p, _ in flags[c.id]] == ["assignment"]
    event = events.queue.get_nowait()
    assert event.type == ESCALATED and event.data["id"] == c.id
    events.close()


async def test_expert_response_minutes_come_from_history(store: Store) -> None:
    clock = Clock()
    svc = ConsultationService(store, InProcessBus(), TZ, clock=clock)
    patient, expert = await seed(store)
    expert_actor = Actor(expert.id, ("expert",), "HOSP001")
    for wait in (10, 30):
        c = await svc.request(ConsultationRequest(patient_id=patient.id, department="心血管内科",
                                                  urgency=Urgency.ROUTINE, chief_complaint="胸闷",
                                                  expert_id=expert.id), DOCTOR)
        await svc.submit(c.id, DOCTOR)
        await svc.assign(c.id, expert_actor)
        clock.now += timedelta(minutes=wait)
        await svc.start(c.id, expert_actor)
    await SlaWatcher(store, InProcessBus(), svc, TARGETS, clock=clock).tick()
    async with store.read() as repo:
        refreshed = await repo.directory.practitioner(expert.id)
    assert refreshed is not None and refreshed.avg_response_minutes == 20.0
