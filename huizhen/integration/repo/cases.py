"""Teaching cases and SLA escalations: the stored side of the consultation services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from huizhen.integration import tables as t
from huizhen.integration.model import Consultation, ConsultationStatus, Urgency
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, keyset_after, page_size
from huizhen.integration.repo.base import RepoBase
from huizhen.integration.sla import Breach
from huizhen.integration.teaching import TeachingCase

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class TeachingCases(RepoBase):
    async def insert(self, case: TeachingCase) -> bool:
        """Archive ``case``; False when its consultation already has one (archiving is idempotent)."""
        body = asdict(case)
        body["completed_at"] = case.completed_at.isoformat() if case.completed_at else None
        stmt = (
            self.upsert_into(t.teaching_cases)
            .values(
                id=case.id, consultation_id=case.consultation_id, pseudonym=case.pseudonym,
                department=case.department, diagnosis_code=case.diagnosis_code, completed_at=case.completed_at,
                body_enc=self.keyring.encrypt_json(body),
            )
            .on_conflict_do_nothing(index_elements=[t.teaching_cases.c.consultation_id])
        )
        return (await self.conn.execute(stmt)).rowcount == 1

    async def set_study_uids(self, case_id: str, study_uids: Sequence[str]) -> bool:
        """Record the case's de-identified image copies (their remapped Study Instance UIDs)."""
        case = await self.get(case_id)
        if case is None:
            return False
        body = asdict(case)
        body["completed_at"] = case.completed_at.isoformat() if case.completed_at else None
        body["study_uids"] = list(study_uids)
        stmt = t.teaching_cases.update().where(t.teaching_cases.c.id == case_id)
        await self.conn.execute(stmt.values(body_enc=self.keyring.encrypt_json(body)))
        return True

    async def get(self, case_id: str) -> TeachingCase | None:
        row = (await self.conn.execute(select(t.teaching_cases).where(t.teaching_cases.c.id == case_id))).first()
        return self._case(row._mapping) if row else None

    async def search(
        self, *, department: str | None = None, diagnosis_code: str | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Page[TeachingCase]:
        """Newest first, keyset-paged; ``diagnosis_code`` matches the code or its subcodes (I21 → I21.1)."""
        c = t.teaching_cases.c
        q = select(t.teaching_cases)
        if department:
            q = q.where(c.department == department)
        if diagnosis_code:
            code = diagnosis_code.strip().upper().replace("%", "").replace("_", "")
            q = q.where((c.diagnosis_code == code) | c.diagnosis_code.like(code + ".%"))
        total = (await self.conn.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        size = page_size(first)
        if after:
            at, cid = decode_cursor(after, 2)
            q = q.where(keyset_after(func.coalesce(c.completed_at, _EPOCH), c.id, datetime.fromisoformat(at), cid,
                                     descending=True))
        rows = (await self.conn.execute(
            q.order_by(func.coalesce(c.completed_at, _EPOCH).desc(), c.id.desc()).limit(size + 1)
        )).all()
        items = [self._case(r._mapping) for r in rows[:size]]
        return Page(
            items=[(x, encode_cursor((x.completed_at or _EPOCH).isoformat(), x.id)) for x in items],
            total=total, has_next=len(rows) > size, has_previous=after is not None,
        )

    async def recent(self, limit: int = 500) -> list[TeachingCase]:
        """The newest cases, for ranking by relevance."""
        c = t.teaching_cases.c
        rows = await self.conn.execute(select(t.teaching_cases).order_by(c.completed_at.desc(), c.id).limit(limit))
        return [self._case(r._mapping) for r in rows]

    async def recent_codes_of(self, practitioner_id: str, limit: int = 50) -> list[str]:
        """Disease codes of the consultations a practitioner requested or took, newest first."""
        c = t.consultations.c
        rows = await self.conn.execute(
            select(c.disease_code)
            .where((c.expert_id == practitioner_id) | (c.requester_id == practitioner_id), c.disease_code.is_not(None))
            .order_by(c.created_at.desc()).limit(limit)
        )
        return [r[0] for r in rows]

    def _case(self, r: Any) -> TeachingCase:
        body = self.keyring.decrypt_json(r["body_enc"])
        body["completed_at"] = datetime.fromisoformat(body["completed_at"]) if body.get("completed_at") else None
        body["symptoms"] = tuple(body.get("symptoms") or ())
        body["learning_points"] = tuple(body.get("learning_points") or ())
        body["study_uids"] = tuple(body.get("study_uids") or ())
        return TeachingCase(**body)


class Escalations(RepoBase):
    async def claim(self, consultation_id: str, breach: Breach, now: datetime) -> bool:
        """Record an escalation; True only for the one caller (of any instance) whose insert won."""
        stmt = (
            self.upsert_into(t.sla_escalations)
            .values(consultation_id=consultation_id, phase=breach.phase, due_at=breach.due_at, escalated_at=now)
            .on_conflict_do_nothing(index_elements=[t.sla_escalations.c.consultation_id, t.sla_escalations.c.phase])
        )
        return (await self.conn.execute(stmt)).rowcount == 1

    async def for_consultations(self, ids: Sequence[str]) -> dict[str, list[tuple[str, datetime]]]:
        """Per consultation: its escalations as (phase, escalated at)."""
        c = t.sla_escalations.c
        out: dict[str, list[tuple[str, datetime]]] = {i: [] for i in ids}
        if ids:
            for cid, phase, at in await self.conn.execute(
                select(c.consultation_id, c.phase, c.escalated_at).where(c.consultation_id.in_(list(ids)))
                .order_by(c.escalated_at)
            ):
                out[cid].append((phase, at))
        return out

    async def open_clocks(self, statuses: Sequence[ConsultationStatus], limit: int = 1000) -> list[Consultation]:
        """Consultations whose clock runs (PENDING/ASSIGNED), oldest first, with their clocks only."""
        c = t.consultations.c
        q = _CLOCKS.where(c.status.in_([s.value for s in statuses])).order_by(c.created_at).limit(limit)
        return [_clock(r) for r in await self.conn.execute(q)]

    async def clocks(
        self, start: datetime, end: datetime, *, facility_id: str | None = None, department: str | None = None,
    ) -> list[Consultation]:
        """Consultations created in [start, end) with only what the figures need (no PHI is read)."""
        c = t.consultations.c
        q = _CLOCKS.where(c.created_at >= start, c.created_at < end)
        if facility_id is not None:
            q = q.where(c.facility_id == facility_id)
        if department is not None:
            q = q.where(c.department == department)
        return [_clock(r) for r in await self.conn.execute(q)]

    async def expert_response_minutes(self) -> dict[str, float]:
        """Per expert: the mean minutes from assignment to start over their history."""
        c = t.consultations.c
        rows = await self.conn.execute(
            select(c.expert_id, c.assigned_at, c.started_at)
            .where(c.expert_id.is_not(None), c.assigned_at.is_not(None), c.started_at.is_not(None))
        )
        sums: dict[str, list[float]] = {}
        for expert, assigned, started in rows:
            sums.setdefault(expert, []).append((started - assigned).total_seconds() / 60)
        return {e: round(sum(v) / len(v), 1) for e, v in sums.items()}


_C = t.consultations.c
# a consultation's clocks and grouping keys: what the SLA watcher and the figures read (no PHI, no timeline)
_CLOCKS = select(_C.id, _C.status, _C.urgency, _C.department, _C.facility_id, _C.patient_id, _C.created_at,
                 _C.submitted_at, _C.assigned_at, _C.started_at, _C.completed_at, _C.cancelled_at)


def _clock(r: Any) -> Consultation:
    return Consultation(
        id=r.id, status=ConsultationStatus(r.status), urgency=Urgency(r.urgency), department=r.department,
        facility_id=r.facility_id, patient_id=r.patient_id, chief_complaint="", created_at=r.created_at,
        submitted_at=r.submitted_at, assigned_at=r.assigned_at, started_at=r.started_at,
        completed_at=r.completed_at, cancelled_at=r.cancelled_at,
    )
