"""Seed a work-list straight into the store: facilities, experts, patients with
observations and a study, and consultations in every status and urgency."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from huizhen.integration.model import (
    Coding,
    Consultation,
    ConsultationStatus,
    Facility,
    FacilityLevel,
    HumanName,
    Identifier,
    ImagingSeries,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
    PractitionerTitle,
    TimelineEvent,
    Urgency,
)
from huizhen.integration.repo import Repository
from huizhen.integration.store import Store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DEPARTMENTS = ("心血管内科", "呼吸内科")
URGENCIES = (Urgency.ROUTINE, Urgency.URGENT, Urgency.CRITICAL)


@dataclass
class Seeded:
    facilities: list[Facility] = field(default_factory=list)
    experts: list[Practitioner] = field(default_factory=list)
    doctor: Practitioner | None = None
    patients: list[Patient] = field(default_factory=list)
    consultations: list[Consultation] = field(default_factory=list)


async def seed(store: Store, n: int, *, observations: int = 7, start: int = 0) -> Seeded:
    out = Seeded()
    async with store.write() as repo:
        for code, name in (("TWN001", "石桥镇卫生院"), ("CHC002", "东城社区卫生服务中心")):
            out.facilities.append(await repo.directory.save_facility(Facility(code, name, FacilityLevel.PRIMARY)))
        out.doctor = await repo.directory.save_practitioner(Practitioner(
            id="doc1", name=HumanName.of("孙", ("丽",)), facility_id=out.facilities[0].id, department="全科",
        ))
        await repo.directory.save_practitioner(Practitioner(
            id="doc2", name=HumanName.of("赵", ("敏",)), facility_id=out.facilities[1].id, department="全科",
        ))
        for i, dept in enumerate(DEPARTMENTS * 2):
            out.experts.append(await repo.directory.save_practitioner(Practitioner(
                id=f"exp{i + 1}", name=HumanName.of("王", (f"专家{i + 1}",)), department=dept,
                title=PractitionerTitle.CHIEF if i < 2 else PractitionerTitle.ATTENDING,
                expertise=["I20.0", "I21"] if dept == DEPARTMENTS[0] else ["J18.9"],
                years_experience=20 - i, online=True, avg_response_minutes=10.0 + i,
            )))
    for start_at in range(start, start + n, 200):
        async with store.write() as repo:
            for i in range(start_at, min(start_at + 200, start + n)):
                await _one(repo, out, i, observations)
    return out


async def _one(repo: Repository, out: Seeded, i: int, observations: int) -> None:
    facility = out.facilities[i % 2]
    p = await repo.patients.save(Patient(
        id=f"pat{i}", name=HumanName.of("吴", (f"桂兰{i}",)), identifiers=[Identifier("urn:mrn", f"M{i}")],
        facility_id=facility.id, birth_date=(T0 - timedelta(days=365 * 60 + i)).date(),
    ))
    out.patients.append(p)
    await repo.clinical.add_observations([
        Observation(
            id=f"obs{i}-{k}", patient_id=p.id, code=Coding("8867-4", "http://loinc.org", "心率"),
            value_type="NM", value_quantity=Decimal(70 + k), unit="/min", effective_at=T0 + timedelta(hours=k),
        )
        for k in range(observations)
    ])
    study = ImagingStudy(
        id=f"study{i}", patient_id=p.id, study_instance_uid=f"1.2.826.0.1.{i}", accession_number=f"A{i}",
        started_at=T0, facility_id=facility.id,
        series=[ImagingSeries(series_instance_uid=f"1.2.826.0.1.{i}.1", modality="CT", number=1)],
    )
    ref, _ = await repo.imaging.add_study(study)
    await repo.imaging.add_series(ref.id, study.series[0])
    status = (ConsultationStatus.PENDING, ConsultationStatus.ASSIGNED, ConsultationStatus.IN_PROGRESS)[i % 3]
    expert = out.experts[i % len(out.experts)]
    at = T0 + timedelta(minutes=i)
    c = Consultation(
        id=f"c{i:05d}", number=f"HZ-20260301-{i:05d}", patient_id=p.id, department=expert.department or "",
        urgency=URGENCIES[i % 3], chief_complaint="胸闷三天", status=status, facility_id=facility.id,
        requester_id=f"doc{i % 2 + 1}", expert_id=None if status is ConsultationStatus.PENDING else expert.id,
        disease_code="I20.0", created_at=at, study_ids=[ref.id], observation_ids=[f"obs{i}-0"],
        timeline=[TimelineEvent(at=at, type="CREATED", actor="doc1", detail=f"HZ-20260301-{i:05d}")],
    )
    await repo.consultations.insert(c)
    out.consultations.append(c)
