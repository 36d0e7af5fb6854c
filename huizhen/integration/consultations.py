"""The consultation service: load → workflow transition → save → audit → publish.

Every operation runs in one write transaction; the event goes on the bus only
after the commit, so a subscriber never sees a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from huizhen.integration import workflow
from huizhen.integration.errors import BadInput, Conflict, NotFound
from huizhen.integration.events import Event, EventBus
from huizhen.integration.matching import ExpertMatch, rank_experts
from huizhen.integration.model import (
    Actor,
    AuditEvent,
    Consultation,
    ConsultationStatus,
    TimelineEvent,
    Urgency,
)
from huizhen.integration.repo import Repository
from huizhen.integration.store import Store
from huizhen.integration.teaching import LEARNING_POINTS
from huizhen.integration.workflow import Transition

TOPIC = "consultation"
_NOTE_ATTEMPTS = 5


@dataclass(frozen=True)
class ConsultationRequest:
    patient_id: str
    department: str
    urgency: Urgency
    chief_complaint: str
    disease_code: str | None = None
    disease_name: str | None = None
    question: str | None = None
    expert_id: str | None = None
    requester_id: str | None = None
    facility_code: str | None = None


CompletionHook = Callable[[Repository, Consultation, datetime], Awaitable[None]]


class ConsultationService:
    """``on_complete`` runs inside the transaction that completes a consultation
    (the report back to the requesting HIS is queued there, so it is never lost)."""

    def __init__(
        self, store: Store, bus: EventBus, tz: tzinfo, clock: Callable[[], datetime] | None = None,
        on_complete: CompletionHook | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.tz = tz
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_complete = on_complete

    async def request(self, req: ConsultationRequest, actor: Actor) -> Consultation:
        """Create a DRAFT consultation with a fresh ``HZ-YYYYMMDD-NNNN`` number."""
        if not req.chief_complaint.strip():
            raise BadInput("chiefComplaint must not be empty")
        if not req.department.strip():
            raise BadInput("department must not be empty")
        at = self.clock()
        async with self.store.write() as repo:
            patient = await repo.patients.get(req.patient_id)
            if patient is None:
                raise NotFound("Patient", req.patient_id)
            if req.expert_id and await repo.directory.practitioner(req.expert_id) is None:
                raise NotFound("Practitioner", req.expert_id)
            if req.requester_id and await repo.directory.practitioner(req.requester_id) is None:
                raise NotFound("Practitioner", req.requester_id)
            facility_id = None
            if req.facility_code:
                facility = await repo.directory.facility_by_code(req.facility_code)
                facility_id = facility.id if facility else None
            c = Consultation(
                patient_id=patient.id, department=req.department.strip(), urgency=req.urgency,
                chief_complaint=req.chief_complaint.strip(), disease_code=req.disease_code,
                disease_name=req.disease_name, question=req.question,
                preferred_expert_id=req.expert_id, requester_id=req.requester_id,
                facility_id=facility_id or patient.facility_id,
            )
            event = await create_in(repo, c, actor=actor, at=at, tz=self.tz)
        await self.publish(c, event)
        return c

    async def match_experts(
        self, department: str, disease_code: str | None, urgency: Urgency, limit: int | None = 3
    ) -> list[ExpertMatch]:
        async with self.store.read() as repo:
            return await match_in(repo, department, disease_code, urgency, limit=limit)

    async def submit(self, cid: str, actor: Actor) -> Consultation:
        return await self._transition(cid, Transition.SUBMIT, actor)

    async def assign(self, cid: str, actor: Actor, expert_id: str | None = None) -> Consultation:
        return await self._transition(cid, Transition.ASSIGN, actor, expert_id=expert_id)

    async def decline(self, cid: str, actor: Actor, reason: str) -> Consultation:
        return await self._transition(cid, Transition.DECLINE, actor, detail=reason)

    async def start(self, cid: str, actor: Actor) -> Consultation:
        return await self._transition(cid, Transition.START, actor)

    async def complete(
        self, cid: str, actor: Actor, diagnosis: str, treatment_plan: str, learning_flags: Sequence[str] = (),
    ) -> Consultation:
        unknown = sorted(set(learning_flags) - set(LEARNING_POINTS))
        if unknown:
            raise BadInput(f"unknown learning flag(s) {', '.join(unknown)}; known: {', '.join(LEARNING_POINTS)}")
        return await self._transition(
            cid, Transition.COMPLETE, actor, diagnosis=diagnosis, treatment_plan=treatment_plan,
            learning_flags=list(dict.fromkeys(learning_flags)),
        )

    async def cancel(self, cid: str, actor: Actor, reason: str) -> Consultation:
        return await self._transition(cid, Transition.CANCEL, actor, detail=reason)

    async def note(
        self, cid: str, actor: Actor, event_type: str, detail: str | None = None, *, start: bool = False,
    ) -> Consultation:
        """Append a timeline event that is no transition (a call join or leave, a network check).

        With ``start``, an ASSIGNED consultation first moves to IN_PROGRESS in the same
        transaction (the expert's first join of the call). A concurrent update is retried.
        """
        for attempt in range(_NOTE_ATTEMPTS):
            at = self.clock()
            events: list[TimelineEvent] = []
            try:
                async with self.store.write() as repo:
                    c = await repo.consultations.get(cid)
                    if c is None:
                        raise NotFound("Consultation", cid)
                    if start and c.status is ConsultationStatus.ASSIGNED:
                        events.append(workflow.apply(c, Transition.START, at=at, actor=actor.id))
                        await self._audit(repo, actor, Transition.START.value, c, at)
                    event = TimelineEvent(at=at, type=event_type, actor=actor.id, detail=detail)
                    c.timeline.append(event)
                    events.append(event)
                    await repo.consultations.save(c)
                    await self._audit(repo, actor, event_type.lower(), c, at)
            except Conflict:
                if attempt == _NOTE_ATTEMPTS - 1:
                    raise
                continue
            for e in events:
                await self.publish(c, e)
            return c
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transition(
        self, cid: str, transition: Transition, actor: Actor, *, detail: str | None = None,
        expert_id: str | None = None, diagnosis: str | None = None, treatment_plan: str | None = None,
        learning_flags: list[str] | None = None,
    ) -> Consultation:
        at = self.clock()
        async with self.store.write() as repo:
            c = await repo.consultations.get(cid)
            if c is None:
                raise NotFound("Consultation", cid)
            if transition is Transition.ASSIGN:
                expert_id = expert_id or c.preferred_expert_id
                if not expert_id:  # no expert named: the best match of the department
                    best = await match_in(repo, c.department, c.disease_code, c.urgency, limit=1)
                    if not best:
                        raise BadInput(
                            f"no online expert of {c.department} treats {c.disease_code or 'this disease'}; "
                            "name an expertId"
                        )
                    expert_id = best[0].expert.id
                elif await repo.directory.practitioner(expert_id) is None:
                    raise NotFound("Practitioner", expert_id)
            event = workflow.apply(
                c, transition, at=at, actor=actor.id, detail=detail, expert_id=expert_id,
                diagnosis=diagnosis, treatment_plan=treatment_plan,
            )
            if learning_flags is not None:
                c.learning_flags = learning_flags
            await repo.consultations.save(c)
            await self._audit(repo, actor, transition.value, c, at)
            if transition is Transition.COMPLETE and self.on_complete is not None:
                await self.on_complete(repo, c, at)
        await self.publish(c, event)
        return c

    async def set_symptoms(self, cid: str, actor: Actor, symptoms: list[dict[str, object]]) -> Consultation:
        """Store structured symptoms (from the complaint analysis) on the consultation, as a timeline event."""
        at = self.clock()
        async with self.store.write() as repo:
            c = await repo.consultations.get(cid)
            if c is None:
                raise NotFound("Consultation", cid)
            c.symptoms = symptoms
            present = sum(1 for s in symptoms if s.get("present"))
            event = TimelineEvent(at=at, type="SYMPTOMS_RECORDED", actor=actor.id,
                                  detail=f"{present} present, {len(symptoms) - present} absent")
            c.timeline.append(event)
            await repo.consultations.save(c)
            await self._audit(repo, actor, "symptoms", c, at)
        await self.publish(c, event)
        return c

    async def _audit(self, repo: Repository, actor: Actor, action: str, c: Consultation, at: datetime) -> None:
        await audit_write(repo, actor, action, c, at)

    async def publish(self, c: Consultation, event: TimelineEvent) -> None:
        await self.bus.publish(consultation_event(c, event))


async def match_in(
    repo: Repository, department: str, disease_code: str | None, urgency: Urgency, *, limit: int | None
) -> list[ExpertMatch]:
    """Online experts of ``department`` ranked for the disease (see :mod:`.matching`)."""
    experts = await repo.directory.experts(department=department, online=True)
    load = await repo.consultations.active_counts([e.id for e in experts]) if experts else {}
    return rank_experts(experts, load, disease_code, urgency, limit)


async def create_in(repo: Repository, c: Consultation, *, actor: Actor, at: datetime, tz: tzinfo) -> TimelineEvent:
    """Number, timeline and insert a new consultation inside the caller's transaction."""
    c.number = await repo.consultations.next_number(at.astimezone(tz).strftime("%Y%m%d"))
    event = workflow.created(c, at=at, actor=actor.id)
    await repo.consultations.insert(c)
    await audit_write(repo, actor, "create", c, at)
    return event


async def audit_write(repo: Repository, actor: Actor, action: str, c: Consultation, at: datetime) -> None:
    await repo.audit.append(
        AuditEvent(
            at=at, actor=actor.id, roles=list(actor.roles), action=action, outcome="success",
            entity_type="Consultation", entity_id=c.id, detail=c.number, source=actor.source,
        )
    )


def consultation_event(c: Consultation, event: TimelineEvent) -> Event:
    """The bus event of a consultation change; published only after the commit."""
    return Event(
        topic=TOPIC,
        type=event.type,
        data={
            "id": c.id, "number": c.number, "status": c.status.value, "department": c.department,
            "urgency": c.urgency.value, "facility_id": c.facility_id, "expert_id": c.expert_id,
            "patient_id": c.patient_id, "requester_id": c.requester_id,
            "seq": len(c.timeline),  # the event's place in the timeline: with id, a replay cursor
            "event": {"at": event.at.isoformat(), "type": event.type, "actor": event.actor, "detail": event.detail},
        },
    )
