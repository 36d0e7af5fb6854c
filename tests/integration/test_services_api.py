"""The consultation services over real HTTP and WebSocket, on SQLite and PostgreSQL.

analyzeComplaint, saveSymptoms, teaching cases after consultations completed
through the API (learning flags included), coverageEstimate, platformStats,
and an SLA escalation reaching a coordinator's ``consultationQueue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    Facility,
    FacilityLevel,
    Gender,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    PractitionerTitle,
    Urgency,
)
from huizhen.mappings.complaint import MAX_TEXT
from tests.helpers import GraphQLClient, RunningServer, running_server
from tests.ws_client import graphql_socket

# what must never appear in a teaching case: pat1's name, identifiers, phone, address, exact birth date
SECRETS = ("欧阳", "志远", "李桂兰", "李先生", "M-0001", "110101195003071234", "13800000004", "东城区和平路1号",
           "1950-03-07")

REQUEST = """mutation($p: ID!, $d: String!, $u: Urgency!, $cc: String!, $code: String) {
  requestConsultation(input: {patientId: $p, department: $d, urgency: $u, chiefComplaint: $cc,
                              diseaseCode: $code}) { id } }"""
COMPLETE = """mutation($id: ID!, $flags: [LearningFlag!], $dx: String! = "急性下壁心肌梗死，欧阳志远需PCI") {
  completeConsultation(id: $id, diagnosis: $dx, treatmentPlan: "转上级医院，电话13800000004",
                       learningFlags: $flags) { id status } }"""
CASE_FIELDS = ("id pseudonym department diagnosisCode diagnosis ageBand sex chiefComplaint expertOpinion "
               "treatmentPlan learningPoints completedAt symptoms { code text present }")


@dataclass
class World:
    server: RunningServer
    doctor: GraphQLClient  # doc1, TWN001 (青山县)
    other_doctor: GraphQLClient  # doc2, TWN002
    expert: GraphQLClient  # exp1, 心血管内科, CHIEF
    coordinator: GraphQLClient  # platform-wide

    async def consultation(self, complaint: str = "胸痛3小时，伴大汗", code: str | None = "I21.1",
                           urgency: str = "URGENT", patient: str = "pat1") -> str:
        doctor = self.doctor if patient == "pat1" else self.other_doctor
        data = await doctor.execute(REQUEST, p=patient, d="心血管内科", u=urgency, cc=complaint, code=code)
        cid: str = data["requestConsultation"]["id"]
        await doctor.execute("mutation($id: ID!) { submitConsultation(id: $id) { id } }", id=cid)
        return cid

    async def completed(self, code: str, flags: list[str] | None = None, patient: str = "pat1") -> str:
        cid = await self.consultation(code=code, patient=patient)
        await self.coordinator.execute('mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { id } }', id=cid)
        await self.expert.execute("mutation($id: ID!) { startConsultation(id: $id) { id } }", id=cid)
        # the diagnosis names the consultation's own patient (pat2's is 李桂兰), as a careless expert might
        dx = "急性下壁心肌梗死，欧阳志远需PCI" if patient == "pat1" else "社区获得性肺炎，李桂兰先生需住院"
        done = await self.expert.execute(COMPLETE, id=cid, flags=flags, dx=dx)
        assert done["completeConsultation"]["status"] == "COMPLETED"
        return cid


async def _seed(srv: RunningServer) -> None:
    async with srv.services.store.write() as repo:
        f1 = await repo.directory.save_facility(Facility("TWN001", "石桥镇卫生院", FacilityLevel.PRIMARY, "青山县"))
        f2 = await repo.directory.save_facility(Facility("TWN002", "河口镇卫生院", FacilityLevel.PRIMARY))
        people = (("doc1", f1, "全科", None), ("doc2", f2, "全科", None), ("doc3", f2, "全科", None),
                  ("exp1", None, "心血管内科", PractitionerTitle.CHIEF))
        for pid, fac, dept, title in people:
            await repo.directory.save_practitioner(Practitioner(
                id=pid, name=HumanName.of("王", (pid,)), facility_id=fac.id if fac else None, department=dept,
                title=title, online=True,
            ))
        await repo.patients.save(Patient(
            id="pat1", name=HumanName.of("欧阳", ("志远",)), gender=Gender.MALE, birth_date=date(1950, 3, 7),
            identifiers=[Identifier("urn:mrn", "M-0001"), Identifier("urn:cn-id", "110101195003071234")],
            phone="13800000004", address="东城区和平路1号", facility_id=f1.id,
        ))
        await repo.patients.save(Patient(id="pat2", name=HumanName.of("李", ("桂兰",)), facility_id=f2.id))


@contextlib.asynccontextmanager
async def _world(data_dir: Path, db_url: str, **settings: Any) -> AsyncIterator[World]:
    async with running_server(data_dir, db_url, **settings) as srv:
        await _seed(srv)
        clients = [srv.client(srv.token("doc1", "primary_doctor", facility="TWN001")),
                   srv.client(srv.token("doc2", "primary_doctor", facility="TWN002")),
                   srv.client(srv.token("exp1", "expert")),
                   srv.client(srv.token("coord1", "coordinator"))]
        try:
            yield World(srv, *clients)
        finally:
            for c in clients:
                await c.aclose()


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    async with _world(tmp_path / "data", db_url) as w:
        yield w


ANALYZE = """query($t: String!) { analyzeComplaint(text: $t) {
  findings { code text present durationDays value unit } suggestedDepartments questions } }"""


async def test_analyze_complaint_bounds_and_mixed_text(world: World) -> None:
    d = world.doctor
    assert await d.error_code(ANALYZE, t="") == "BAD_INPUT"
    assert await d.error_code(ANALYZE, t="   ") == "BAD_INPUT"
    assert await d.error_code(ANALYZE, t="咳" * (MAX_TEXT + 1)) == "BAD_INPUT"
    assert (await d.execute(ANALYZE, t="咳嗽三天。" + "的" * (MAX_TEXT - 5)))["analyzeComplaint"]["findings"]
    found = (await d.execute(ANALYZE, t="发热 fever 3 days，咳嗽三天，无胸痛，体温38.5度，BP 血压160/100mmHg"))
    findings = found["analyzeComplaint"]["findings"]
    by_code = {f["code"]: f for f in findings}
    assert by_code["R50.9"]["present"] is True
    assert by_code["R07.4"]["present"] is False  # 无胸痛: absent, not present
    assert any(f["durationDays"] == 3 for f in findings)
    assert any(f["value"] == "38.5" for f in findings) and any(f["value"] == "160/100" for f in findings)
    assert found["analyzeComplaint"]["suggestedDepartments"]
    # the server keeps serving after bad input, and other roles follow the policy
    assert await world.coordinator.execute(ANALYZE, t="胸闷") is not None
    admin = world.server.client(world.server.token("admin1", "integration_admin"))
    try:
        assert await admin.error_code(ANALYZE, t="胸闷") == "FORBIDDEN"
    finally:
        await admin.aclose()


SAVE = "mutation($id: ID!, $t: String) { saveSymptoms(id: $id, text: $t) { id symptoms { code text present } } }"


async def test_save_symptoms_on_a_visible_consultation_only(world: World) -> None:
    cid = await world.consultation(complaint="胸痛3小时，不发热")
    saved = (await world.doctor.execute(SAVE, id=cid))["saveSymptoms"]["symptoms"]
    assert {(s["code"], s["present"]) for s in saved} >= {("R07.4", True), ("R50.9", False)}
    again = (await world.doctor.execute(SAVE, id=cid, t="咳嗽两天，否认胸痛"))["saveSymptoms"]["symptoms"]
    assert ("R07.4", False) in {(s["code"], s["present"]) for s in again}
    read = await world.doctor.execute("query($id: ID!) { consultation(id: $id) { symptoms { code } } }", id=cid)
    assert [s["code"] for s in read["consultation"]["symptoms"]] == [s["code"] for s in again]
    assert await world.other_doctor.error_code(SAVE, id=cid) == "NOT_FOUND"  # another facility's: hidden
    assert await world.doctor.error_code(SAVE, id="nope") == "NOT_FOUND"
    assert await world.expert.error_code(SAVE, id=cid) == "FORBIDDEN"  # experts do not request
    assert await world.doctor.error_code(SAVE, id=cid, t="") == "BAD_INPUT"


CASES = "query($dept: String, $code: String) { cases(department: $dept, diseaseCode: $code) { totalCount " \
        f"edges {{ node {{ {CASE_FIELDS} }} }} }} }}"
RECOMMENDED = f"{{ recommendedCases(first: 10) {{ {CASE_FIELDS} }} }}"


async def test_completed_consultations_become_deidentified_cases_with_learning_points(world: World) -> None:
    await world.completed("I21.1", ["MISDIAGNOSIS_RISK", "EMERGENCY_HANDLING"])
    await world.completed("J18.9", patient="pat2")  # completed later: newer

    page = (await world.doctor.execute(CASES, dept="心血管内科"))["cases"]
    assert page["totalCount"] == 2
    mi = next(e["node"] for e in page["edges"] if e["node"]["diagnosisCode"] == "I21.1")
    assert len(mi["learningPoints"]) == 2 and mi["ageBand"] == "70-79" and mi["sex"] == "male"
    assert mi["pseudonym"] and "胸痛3小时" in mi["chiefComplaint"]
    text = json.dumps(page, ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in text, secret
    assert (await world.doctor.execute(CASES, code="I21"))["cases"]["totalCount"] == 1

    # doc3 recently asked about I21.9: the I21 case first although the J18 case is newer
    doc3 = world.server.client(world.server.token("doc3", "primary_doctor", facility="TWN002"))
    try:
        await doc3.execute(REQUEST, p="pat2", d="心血管内科", u="ROUTINE", cc="胸闷", code="I21.9")
        ranked = (await doc3.execute(RECOMMENDED))["recommendedCases"]
        assert [c["diagnosisCode"] for c in ranked] == ["I21.1", "J18.9"]
    finally:
        await doc3.aclose()
    fresh = world.server.client(world.server.token("doc9", "primary_doctor", facility="TWN001"))
    try:  # no history: newest first
        assert [c["diagnosisCode"] for c in (await fresh.execute(RECOMMENDED))["recommendedCases"]] == \
            ["J18.9", "I21.1"]
    finally:
        await fresh.aclose()
    assert await world.expert.error_code("{ recommendedCases(first: 0) { id } }") == "BAD_INPUT"


async def test_an_unknown_learning_flag_is_refused(world: World) -> None:
    cid = await world.consultation()
    await world.coordinator.execute('mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { id } }', id=cid)
    await world.expert.execute("mutation($id: ID!) { startConsultation(id: $id) { id } }", id=cid)
    body = (await world.expert.raw(COMPLETE, id=cid, flags=["GUESSWORK"])).json()
    assert body["errors"] and body.get("data") is None
    status = await world.expert.execute("query($id: ID!) { consultation(id: $id) { status } }", id=cid)
    assert status["consultation"]["status"] == "IN_PROGRESS"


COVERAGE = "query($id: ID!) { coverageEstimate(consultationId: $id) { fee covered patientShare region reasons } }"


async def test_coverage_estimate_in_decimal_yuan(world: World) -> None:
    cid = await world.consultation(urgency="URGENT")
    await world.coordinator.execute('mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { id } }', id=cid)
    est = (await world.doctor.execute(COVERAGE, id=cid))["coverageEstimate"]
    # a CHIEF expert (300.00) + the URGENT surcharge (50.00); 青山县 residents: 60 %, capped at 150.00
    assert (est["fee"], est["covered"], est["patientShare"]) == ("350.00", "150.00", "200.00")
    assert Decimal(est["covered"]) + Decimal(est["patientShare"]) == Decimal(est["fee"])
    assert est["region"] == "青山县"
    assert await world.other_doctor.error_code(COVERAGE, id=cid) == "NOT_FOUND"  # hidden like missing
    assert await world.doctor.error_code(COVERAGE, id="nope") == "NOT_FOUND"
    await world.doctor.execute('mutation($id: ID!) { cancelConsultation(id: $id, reason: "病人已转院") { id } }',
                               id=cid)
    assert await world.doctor.error_code(COVERAGE, id=cid) == "BAD_INPUT"


STATS = """query($from: String!, $to: String!, $f: String) { platformStats(from: $from, to: $to, facility: $f) {
  overall { total byStatus { status count } medianMinutesToAssign medianMinutesToComplete completionRate
            withinSlaShare }
  byFacility { key total } byDepartment { key total } } }"""
DAY = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai


async def _history(srv: RunningServer) -> None:
    """Four consultations on 2026-03-01: assigned after 10, 20 and 30 minutes; one completed, one cancelled."""
    async with srv.services.store.read() as repo:
        f1 = await repo.directory.facility_by_code("TWN001")
        f2 = await repo.directory.facility_by_code("TWN002")
    assert f1 is not None and f2 is not None
    S = ConsultationStatus
    rows = [  # (facility, status, minutes to assignment, minutes to completion)
        (f1, S.COMPLETED, 10, 90), (f1, S.ASSIGNED, 20, None),
        (f2, S.ASSIGNED, 30, None), (f2, S.CANCELLED, None, None),
    ]
    async with srv.services.store.write() as repo:
        for i, (fac, status, assign, complete) in enumerate(rows):
            await repo.consultations.insert(Consultation(
                id=f"h{i}", number=f"HZ-20260301-9{i:04d}", patient_id="pat1" if fac is f1 else "pat2",
                department="心血管内科", urgency=Urgency.ROUTINE, chief_complaint="胸闷", status=status,
                facility_id=fac.id, created_at=DAY, submitted_at=DAY,
                assigned_at=DAY + timedelta(minutes=assign) if assign else None,
                expert_id="exp1" if assign else None,
                completed_at=DAY + timedelta(minutes=complete) if complete else None,
                cancelled_at=DAY + timedelta(minutes=5) if status is S.CANCELLED else None,
            ))


async def test_platform_stats_match_a_seeded_history(world: World) -> None:
    await _history(world.server)
    c = world.coordinator
    assert await c.error_code(STATS, **{"from": "2026-03-02", "to": "2026-03-01"}) == "BAD_INPUT"
    assert await c.error_code(STATS, **{"from": "yesterday", "to": "2026-03-01"}) == "BAD_INPUT"
    stats = (await c.execute(STATS, **{"from": "2026-03-01", "to": "2026-03-01"}))["platformStats"]
    overall = stats["overall"]
    assert overall["total"] == 4
    counts = {s["status"]: s["count"] for s in overall["byStatus"] if s["count"]}
    assert counts == {"COMPLETED": 1, "ASSIGNED": 2, "CANCELLED": 1}
    assert overall["medianMinutesToAssign"] == 20
    assert overall["medianMinutesToComplete"] == 90
    assert overall["completionRate"] == 0.5
    assert overall["withinSlaShare"] == 1.0  # ROUTINE: 24 h to assign
    assert {f["key"]: f["total"] for f in stats["byFacility"]} == {"TWN001": 2, "TWN002": 2}
    assert (await c.execute(STATS, **{"from": "2026-03-02", "to": "2026-03-03"}))["platformStats"]["overall"][
        "total"] == 0

    bound = world.server.client(world.server.token("coord2", "coordinator", facility="TWN002"))
    try:  # a facility's coordinator: that facility's figures only
        own = (await bound.execute(STATS, **{"from": "2026-03-01", "to": "2026-03-01"}))["platformStats"]
        assert own["overall"]["total"] == 2 and [f["key"] for f in own["byFacility"]] == ["TWN002"]
        assert await bound.error_code(STATS, **{"from": "2026-03-01", "to": "2026-03-01", "f": "TWN001"}) == \
            "FORBIDDEN"
    finally:
        await bound.aclose()
    assert await world.doctor.error_code(STATS, **{"from": "2026-03-01", "to": "2026-03-01"}) == "FORBIDDEN"


QUEUE = "subscription { consultationQueue { id status overdue escalations { phase escalatedAt } } }"


async def test_an_escalation_reaches_the_coordinators_queue(tmp_path: Path, db_url: str) -> None:
    # CRITICAL must be assigned within 0.6 s here; the watcher looks every 0.2 s
    async with _world(tmp_path / "data", db_url, sla_assign_minutes="CRITICAL=0.01,URGENT=15,ROUTINE=1440",
                      sla_check_interval_seconds=0.2) as w:
        async with graphql_socket(w.server.base_url) as sock:
            assert (await sock.init({"token": w.server.token("coord1", "coordinator")}))["type"] == "connection_ack"
            sid = await sock.subscribe(QUEUE)
            await asyncio.sleep(0.2)  # the subscription is registered on the bus before the work arrives
            cid = await w.consultation(urgency="CRITICAL")
            seen = []
            while not any(c["escalations"] for c in seen):
                seen.append((await sock.next(sid, timeout=20))["consultationQueue"])
        escalated = seen[-1]
        assert escalated["id"] == cid and escalated["overdue"] is True
        assert [e["phase"] for e in escalated["escalations"]] == ["assignment"]
        read = await w.coordinator.execute(
            "query($id: ID!) { consultation(id: $id) { overdue timeline { type } } }", id=cid)
        assert read["consultation"]["overdue"] and "ESCALATED" in [e["type"] for e in read["consultation"]["timeline"]]
        board = (await w.coordinator.execute("{ consultationBoard { urgency pending overdue } }"))["consultationBoard"]
        assert {"urgency": "CRITICAL", "pending": 1, "overdue": 1} in board
        # assigned: no longer waiting for assignment, so no longer overdue (the escalation stays on record)
        await w.coordinator.execute('mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { id } }', id=cid)
        after = await w.coordinator.execute("query($id: ID!) { consultation(id: $id) { overdue escalations "
                                            "{ phase } } }", id=cid)
        assert after["consultation"] == {"overdue": False, "escalations": [{"phase": "assignment"}]}


async def test_a_case_gets_deidentified_image_copies_after_the_commit(tmp_path: Path, db_url: str) -> None:
    from pydicom import dcmread

    from huizhen.integration.casebook import IMAGES_CHANNEL
    from huizhen.integration.consultations import ConsultationRequest
    from huizhen.integration.model import Actor
    from tests.conftest import free_port
    from tests.dicom_support import corpus, pynetdicom_store

    async with _world(tmp_path / "data", db_url, dicom_port=free_port()) as w:
        images = w.server.services.case_images
        assert images is not None
        await images.stop()  # this test drives the rounds itself
        original = dcmread(corpus("CT_small.dcm"))
        assert await pynetdicom_store(w.server.ports["dicom"], original) == [0]
        services = w.server.services
        async with services.store.read() as repo:
            ref = await repo.imaging.study_ref(str(original.StudyInstanceUID))
        assert ref is not None
        coordinator = Actor("coord1", ("coordinator",))
        c = await services.consultations.request(ConsultationRequest(
            patient_id=ref.patient_id, department="心血管内科", urgency=Urgency.URGENT, chief_complaint="胸痛",
            disease_code="I21.1", expert_id="exp1"), coordinator)
        async with services.store.write() as repo:  # the study linked to the consultation
            stored = await repo.consultations.get(c.id)
            assert stored is not None
            stored.study_ids = [ref.id]
            await repo.consultations.save(stored)
        await services.consultations.submit(c.id, coordinator)
        await services.consultations.assign(c.id, coordinator, "exp1")
        await w.expert.execute("mutation($id: ID!) { startConsultation(id: $id) { id } }", id=c.id)

        real_dir, images.out_dir = images.out_dir, tmp_path / "not-a-dir"
        images.out_dir.write_text("a file where the copies should go")
        await w.expert.execute(COMPLETE, id=c.id, flags=["RARE_DISEASE"], dx="罕见病")
        assert await images.run_due() == 1  # fails: recorded on the job, retried later
        async with services.store.read() as repo:
            [job] = [j for j in await repo.outbox.for_consultation(c.id) if j.channel == IMAGES_CHANNEL]
        assert job.status.value == "PENDING" and job.attempts == 1 and job.last_error
        assert job.next_attempt_at is not None
        case = (await w.expert.execute("{ cases { edges { node { id studyUids learningPoints } } } }"))
        [node] = [e["node"] for e in case["cases"]["edges"]]
        assert node["studyUids"] == [] and len(node["learningPoints"]) == 1

        images.out_dir = real_dir
        later = job.next_attempt_at + timedelta(seconds=1)
        images.clock = lambda: later
        assert await images.run_due() == 1
        assert await images.run_due() == 0  # done once: nothing left to do
        [uid] = (await w.expert.execute("{ cases { edges { node { studyUids } } } }"))["cases"]["edges"][0][
            "node"]["studyUids"]
        assert uid != str(original.StudyInstanceUID)
        [copy] = [dcmread(f) for f in (real_dir / node["id"]).rglob("*.dcm")]
        assert copy.StudyInstanceUID == uid and copy.PatientID != original.PatientID
        assert str(copy.PatientName) != str(original.PatientName)
