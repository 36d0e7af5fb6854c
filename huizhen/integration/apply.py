"""Apply mapped commands to the store, inside the caller's write transaction.

Mappings name everything by external identifiers; this is where those
identifiers become internal ids. Upserts merge: a value the message leaves
empty keeps what is stored, identifiers add to the known ones. Bus events
are collected, not published: the engine publishes them after the commit.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, tzinfo

from huizhen.integration import workflow
from huizhen.integration.commands import (
    AddObservations,
    CancelConsultation,
    Command,
    DischargeEncounter,
    MergePatients,
    PatientRef,
    RequestConsultation,
    ScheduleConsultation,
    UpsertEncounter,
    UpsertPatient,
)
from huizhen.integration.consultations import audit_write, consultation_event, create_in
from huizhen.integration.errors import NotFound
from huizhen.integration.events import Event
from huizhen.integration.model import (
    Actor,
    Consultation,
    EntityRef,
    Facility,
    Identifier,
    Patient,
    TimelineEvent,
    new_id,
)
from huizhen.integration.repo import Repository
from huizhen.integration.workflow import Transition

log = logging.getLogger(__name__)


class Applier:
    """One message's worth of commands against one transaction."""

    def __init__(self, repo: Repository, *, actor: Actor, at: datetime, tz: tzinfo) -> None:
        self.repo = repo
        self.actor = actor
        self.at = at
        self.tz = tz
        self.effects: list[EntityRef] = []
        self.events: list[Event] = []

    async def apply_all(self, commands: tuple[Command, ...] | list[Command]) -> None:
        for command in commands:
            await self.apply(command)

    async def apply(self, command: Command) -> None:
        match command:
            case UpsertPatient():
                await self._upsert_patient(command)
            case UpsertEncounter():
                await self._upsert_encounter(command)
            case DischargeEncounter():
                await self._discharge(command)
            case MergePatients():
                await self._merge(command)
            case AddObservations():
                await self._observations(command)
            case RequestConsultation():
                await self._request(command)
            case CancelConsultation():
                await self._cancel(command)
            case ScheduleConsultation():
                await self._schedule(command)

    def _touched(self, kind: str, entity_id: str) -> None:
        ref = EntityRef(kind, entity_id)
        if ref not in self.effects:
            self.effects.append(ref)

    async def _facility_id(self, code: str | None) -> str | None:
        if not code:
            return None
        facility = await self.repo.directory.facility_by_code(code)
        if facility is None:
            # a sender we have no directory entry for: register it by code so nothing is lost
            facility = await self.repo.directory.save_facility(Facility(code=code, name=code))
            log.info("registered unknown facility from an inbound message", extra={"facility": code})
        return facility.id

    async def find_patient(self, ref: PatientRef) -> Patient | None:
        for ident in ref:
            found = await self.repo.patients.by_identifier(ident.system, ident.value)
            if found is not None:
                return found
        return None

    async def _patient(self, ref: PatientRef) -> Patient:
        found = await self.find_patient(ref)
        if found is None:
            shown = ", ".join(f"{i.system}|{i.value}" for i in ref) or "(no identifier)"
            raise NotFound("Patient", shown)
        return found

    async def _upsert_patient(self, cmd: UpsertPatient) -> None:
        incoming = cmd.patient
        stored = await self.find_patient(tuple(incoming.identifiers))
        facility_id = await self._facility_id(cmd.facility_code)
        if stored is None:
            patient = dataclasses.replace(incoming, id=new_id())
            patient.facility_id = incoming.facility_id or facility_id
        else:
            patient = stored
            if incoming.name.text or incoming.name.family:
                patient.name = incoming.name
            for attr in ("gender", "birth_date", "phone", "address"):
                value = getattr(incoming, attr)
                if value not in (None, ""):
                    setattr(patient, attr, value)
            known = set(patient.identifiers)
            patient.identifiers += [i for i in incoming.identifiers if i not in known]
            patient.facility_id = patient.facility_id or facility_id
        await self.repo.patients.save(patient)
        self._touched("Patient", patient.id)

    async def _upsert_encounter(self, cmd: UpsertEncounter) -> None:
        patient = await self._patient(cmd.patient)
        enc = cmd.encounter
        stored = None
        for visit in enc.identifiers:
            stored = await self.repo.clinical.encounter_by_visit(visit)
            if stored is not None:
                break
        if stored is None:
            stored = dataclasses.replace(enc, id=enc.id or new_id())
        else:
            for field in dataclasses.fields(enc):
                value = getattr(enc, field.name)
                if field.name not in ("id", "patient_id", "identifiers") and value not in (None, ""):
                    setattr(stored, field.name, value)
        stored.patient_id = patient.id
        stored.facility_id = stored.facility_id or await self._facility_id(cmd.facility_code)
        await self.repo.clinical.save_encounter(stored)
        self._touched("Encounter", stored.id)

    async def _discharge(self, cmd: DischargeEncounter) -> None:
        patient = await self._patient(cmd.patient)
        for visit in cmd.visit:
            enc = await self.repo.clinical.encounter_by_visit(visit)
            if enc is not None and enc.patient_id == patient.id:
                enc.status, enc.end = "finished", cmd.end or enc.end or self.at
                await self.repo.clinical.save_encounter(enc)
                self._touched("Encounter", enc.id)
                return
        raise NotFound("Encounter", ", ".join(f"{v.system}|{v.value}" for v in cmd.visit) or "(no visit number)")

    async def _merge(self, cmd: MergePatients) -> None:
        survivor = await self._patient(cmd.survivor)
        merged = None
        for ident in cmd.merged:
            merged = await self.repo.patients.by_identifier(ident.system, ident.value, follow_merge=False)
            if merged is not None:
                break
        if merged is None:
            raise NotFound("Patient", ", ".join(f"{i.system}|{i.value}" for i in cmd.merged))
        if merged.id != survivor.id:
            merged.merged_into = survivor.id
            await self.repo.patients.save(merged)
            self._touched("Patient", merged.id)
        self._touched("Patient", survivor.id)

    async def _observations(self, cmd: AddObservations) -> None:
        patient = await self._patient(cmd.patient)
        # results of an ordinary lab order attach to the patient; of a consultation's order, to it too
        consultation = await self.repo.consultations.by_source_order(cmd.order) if cmd.order else None
        observations = [
            dataclasses.replace(
                o, patient_id=patient.id, consultation_id=consultation.id if consultation else o.consultation_id
            )
            for o in cmd.observations
        ]
        await self.repo.clinical.add_observations(observations)
        for o in observations:
            self._touched("Observation", o.id)
        if consultation is not None:
            consultation.observation_ids += [o.id for o in observations]
            detail = f"{len(observations)} result(s)"
            await self._note(consultation, "RESULTS_RECEIVED", detail)

    async def _request(self, cmd: RequestConsultation) -> None:
        c = cmd.consultation
        if c.source_order is not None:
            existing = await self.repo.consultations.by_source_order(c.source_order)
            if existing is not None:  # the same order again: nothing to do
                self._touched("Consultation", existing.id)
                return
        patient = await self._patient(cmd.patient)
        requester_id = None
        if cmd.requester is not None and cmd.requester.identifiers:
            requester = await self.repo.directory.save_practitioner(cmd.requester)
            requester_id = requester.id
        new = dataclasses.replace(
            c, patient_id=patient.id, requester_id=requester_id or c.requester_id or None,
            facility_id=await self._facility_id(cmd.facility_code) or patient.facility_id, timeline=[],
            status=workflow.S.DRAFT,
        )
        created = await create_in(self.repo, new, actor=self.actor, at=self.at, tz=self.tz)
        self.events.append(consultation_event(new, created))
        submitted = workflow.apply(new, Transition.SUBMIT, at=self.at, actor=self.actor.id)
        await self.repo.consultations.save(new)
        await audit_write(self.repo, self.actor, Transition.SUBMIT.value, new, self.at)
        self.events.append(consultation_event(new, submitted))
        self._touched("Consultation", new.id)

    async def _cancel(self, cmd: CancelConsultation) -> None:
        c = await self._by_order(cmd.order)
        if c.status.terminal:
            self._touched("Consultation", c.id)
            return
        event = workflow.apply(c, Transition.CANCEL, at=self.at, actor=self.actor.id, detail=cmd.reason)
        await self.repo.consultations.save(c)
        await audit_write(self.repo, self.actor, Transition.CANCEL.value, c, self.at)
        self.events.append(consultation_event(c, event))
        self._touched("Consultation", c.id)

    async def _schedule(self, cmd: ScheduleConsultation) -> None:
        c = await self._by_order(cmd.order)
        c.scheduled_at = cmd.start
        await self._note(c, "SCHEDULED", cmd.start.astimezone(self.tz).isoformat())

    async def _by_order(self, order: Identifier) -> Consultation:
        c = await self.repo.consultations.by_source_order(order)
        if c is None:
            raise NotFound("Consultation", f"order {order.system}|{order.value}")
        return c

    async def _note(self, c: Consultation, kind: str, detail: str) -> None:
        event = TimelineEvent(at=self.at, type=kind, actor=self.actor.id, detail=detail)
        c.timeline.append(event)
        await self.repo.consultations.save(c)
        self.events.append(consultation_event(c, event))
        self._touched("Consultation", c.id)
