"""Apply mapped commands to the store, inside the caller's write transaction.

Mappings name everything by external identifiers; this is where those
identifiers become internal ids. Upserts merge: a value the message leaves
empty keeps what is stored, identifiers add to the known ones. Bus events
are collected, not published: the engine publishes them after the commit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime, tzinfo

from huizhen.integration import workflow
from huizhen.integration.commands import (
    AddDocument,
    AddImagingStudy,
    AddObservations,
    BindPatientAlias,
    CancelConsultation,
    Command,
    DischargeEncounter,
    EntityLink,
    LinkAcknowledgement,
    Linked,
    MergePatients,
    PatientRef,
    RequestConsultation,
    ScheduleConsultation,
    UpsertEncounter,
    UpsertFacility,
    UpsertPatient,
    UpsertPractitioner,
)
from huizhen.integration.consultations import audit_write, consultation_event, create_in
from huizhen.integration.errors import NotFound
from huizhen.integration.events import Event
from huizhen.integration.model import (
    Actor,
    Consultation,
    EntityRef,
    Identifier,
    Patient,
    TimelineEvent,
    new_id,
)
from huizhen.integration.repo import Repository
from huizhen.integration.repo.records import records_of
from huizhen.integration.workflow import Transition

log = logging.getLogger(__name__)


class Applier:
    """One message's worth of commands against one transaction."""

    def __init__(
        self, repo: Repository, *, actor: Actor, at: datetime, tz: tzinfo,
        committed_facilities: Mapping[str, str] | None = None,
    ) -> None:
        """``committed_facilities``: facility ids by code known to be committed (a code never
        changes its facility, so the caller may keep them from earlier transactions)."""
        self.repo = repo
        self.actor = actor
        self.at = at
        self.tz = tz
        self.effects: list[EntityRef] = []
        self._effects: set[EntityRef] = set()
        self.events: list[Event] = []
        self.facilities: dict[str, str] = {}  # found or registered here: committed with this transaction
        # What this message already resolved, so the next command naming it costs no query.
        # Kept for one message only: nothing read here outlives its transaction.
        self._known: dict[Identifier, Patient] = {}
        self._committed_facilities = committed_facilities or {}

    async def apply_all(self, commands: tuple[Command, ...] | list[Command]) -> None:
        for command in commands:
            await self.apply(command)

    async def apply(self, command: Command) -> None:
        if not isinstance(command, _KEEPS_PATIENT_IDENTITY):
            self._known.clear()  # it may merge patients or move identifiers
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
            case UpsertFacility():
                self._touched("Facility", (await self.repo.directory.save_facility(command.facility)).id)
            case UpsertPractitioner():
                await self._upsert_practitioner(command)
            case AddImagingStudy():
                await self._study(command)
            case AddDocument():
                await self._document(command)
            case BindPatientAlias():
                await self._bind_alias(command)
            case LinkAcknowledgement():
                await self._link_acknowledgement(command)
            case Linked():
                await self._linked(command)

    def _touched(self, kind: str, entity_id: str) -> None:
        ref = EntityRef(kind, entity_id)
        if ref not in self._effects:  # a set beside the list: an ORU^R01 touches a dozen entities
            self._effects.add(ref)
            self.effects.append(ref)

    async def _facility_id(self, code: str | None) -> str | None:
        if not code:
            return None
        known = self._committed_facilities.get(code) or self.facilities.get(code)
        if known is not None:
            return known
        facility = await self.repo.directory.facility_or_register(code)
        self.facilities[code] = facility.id
        return facility.id

    async def find_patient(self, ref: PatientRef) -> Patient | None:
        """The patient the first held identifier of ``ref`` names (merges followed)."""
        if ref and all(ident in self._known for ident in ref):
            return self._known[ref[0]]
        return await self.repo.patients.find(ref)

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
        before: Patient | None = None
        if stored is None:
            patient = dataclasses.replace(incoming, id=new_id())
            patient.facility_id = incoming.facility_id or facility_id
        else:
            patient = stored
            before = dataclasses.replace(stored, identifiers=list(stored.identifiers))
            if incoming.name.text or incoming.name.family:
                patient.name = incoming.name
            for attr in ("gender", "birth_date", "phone", "address"):
                value = getattr(incoming, attr)
                if value not in (None, ""):
                    setattr(patient, attr, value)
            known = set(patient.identifiers)
            patient.identifiers += [i for i in incoming.identifiers if i not in known]
            patient.facility_id = patient.facility_id or facility_id
        if before is None:
            await self.repo.patients.add(patient)  # find_patient saw none of its identifiers held
        else:
            await self.repo.patients.update(patient, before)
        self._known.update(dict.fromkeys(patient.identifiers, patient))
        self._touched("Patient", patient.id)

    async def _upsert_encounter(self, cmd: UpsertEncounter) -> None:
        patient = await self._patient(cmd.patient)
        enc = cmd.encounter
        if len(enc.identifiers) == 1:  # one visit number (HL7 PV1-19): one statement merges it
            own = bool(enc.facility_id)
            facility = enc.facility_id if own else await self._facility_id(cmd.facility_code)
            one = dataclasses.replace(enc, patient_id=patient.id, facility_id=facility)
            self._touched("Encounter", await self.repo.clinical.merge_encounter(one, own_facility=own))
            return
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
        # stored with the ids resolved here; the mapped command stays untouched, should the job run again
        observations = cmd.observations
        await self.repo.clinical.add_observations(
            observations, patient_id=patient.id, consultation_id=consultation.id if consultation else None
        )
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

    async def _upsert_practitioner(self, cmd: UpsertPractitioner) -> None:
        incoming = cmd.practitioner
        stored = await self.repo.directory.practitioner(incoming.id)
        for ident in incoming.identifiers:
            stored = stored or await self.repo.directory.practitioner_by_identifier(ident.system, ident.value)
        if stored is None and not cmd.create:
            raise NotFound("Practitioner", ", ".join(f"{i.system}|{i.value}" for i in incoming.identifiers))
        if stored is None:
            stored = dataclasses.replace(incoming, identifiers=list(dict.fromkeys(incoming.identifiers)))
        else:
            for field in ("department", "title", "years_experience", "avg_response_minutes"):
                if (value := getattr(incoming, field)) is not None:
                    setattr(stored, field, value)
            if incoming.name.text or incoming.name.family:
                stored.name = incoming.name
            stored.identifiers += [i for i in incoming.identifiers if i not in stored.identifiers]
            stored.specialties += [x for x in incoming.specialties if x not in stored.specialties]
            stored.expertise += [x for x in incoming.expertise if x not in stored.expertise]
        stored.facility_id = incoming.facility_id or stored.facility_id or await self._facility_id(cmd.facility_code)
        self._touched("Practitioner", (await self.repo.directory.save_practitioner(stored)).id)

    async def _study(self, cmd: AddImagingStudy) -> None:
        """Study metadata without images (a FHIR ImagingStudy): what is new is added, what is known stays."""
        patient = await self._patient(cmd.patient)
        consultation = await self.repo.consultations.by_source_order(cmd.order) if cmd.order else None
        study = dataclasses.replace(
            cmd.study, patient_id=patient.id,
            facility_id=cmd.study.facility_id or await self._facility_id(cmd.facility_code) or patient.facility_id,
        )
        ref, _ = await self.repo.imaging.add_study(study)
        for series in study.series:
            await self.repo.imaging.add_series(ref.id, series)
            for instance in series.instances:
                await self.repo.imaging.add_instance(series.series_instance_uid, instance)
        self._touched("ImagingStudy", ref.id)
        if consultation is not None and ref.id not in consultation.study_ids:
            await self.repo.imaging.link_consultation(ref.id, consultation.id)
            consultation.study_ids.append(ref.id)
            await self._note(consultation, "STUDY_RECEIVED", study.study_instance_uid)

    async def _document(self, cmd: AddDocument) -> None:
        patient = await self._patient(cmd.patient)
        records = records_of(self.repo)
        consultation = await self.repo.consultations.by_source_order(cmd.order) if cmd.order else None
        stored = await records.document_with_identifier(patient.id, cmd.document.identifiers)
        doc = dataclasses.replace(
            cmd.document, id=stored.id if stored else cmd.document.id, patient_id=patient.id,
            consultation_id=consultation.id if consultation else cmd.document.consultation_id,
            created_at=cmd.document.created_at or (stored.created_at if stored else None) or self.at,
        )
        await records.save_document(doc)
        self._touched("Document", doc.id)
        if consultation is not None and doc.id not in consultation.document_ids:
            consultation.document_ids.append(doc.id)
            await self._note(consultation, "DOCUMENT_RECEIVED", doc.title)

    async def _bind_alias(self, cmd: BindPatientAlias) -> None:
        alias = cmd.alias
        if await self.repo.patients.by_identifier(alias.system, alias.value, follow_merge=False) is not None:
            return
        patient = await self.repo.patients.get(cmd.patient_id)
        if patient is not None:
            patient.identifiers.append(alias)
            await self.repo.patients.save(patient)

    async def _link_acknowledgement(self, cmd: LinkAcknowledgement) -> None:
        sent = await self.repo.outbox.ids_by_control_id(cmd.control_id)
        preferred = [i for i, destination in sent if destination == cmd.destination] or [i for i, _ in sent]
        if preferred:
            self._touched("OutboundMessage", preferred[-1])
        else:
            log.info("an inbound acknowledgement names no outbound message", extra={"control_id": cmd.control_id})

    async def _linked(self, cmd: Linked) -> None:
        entities = _entities(cmd.command)
        for link in cmd.links:
            found = await self._link_target(link)
            for entity in entities:
                if found is not None and hasattr(entity, link.field):
                    setattr(entity, link.field, found)
        await self.apply(cmd.command)

    async def _link_target(self, link: EntityLink) -> str | None:
        """The Huizhen id an :class:`EntityLink` names, if anything has it."""
        directory, records = self.repo.directory, records_of(self.repo)
        for ident in link.identifiers:
            found: str | None
            if link.target == "Practitioner":
                practitioner = await directory.practitioner_by_identifier(ident.system, ident.value)
                found = practitioner.id if practitioner else None
            elif link.target == "Encounter":
                encounter = await self.repo.clinical.encounter_by_visit(ident)
                found = encounter.id if encounter else None
            else:
                facility = await directory.facility_by_code(ident.value)
                found = facility.id if facility else None
            if found is not None:
                return found
        for entity_id in link.ids:
            finders = {"Practitioner": directory.practitioner, "Encounter": records.encounter,
                       "Organization": directory.facility}
            finder = finders.get(link.target)
            if finder is not None and await finder(entity_id) is not None:
                return entity_id
        return None


# Commands that never merge patients nor move an identifier between them: an identifier
# resolved earlier in the message still names the same patient after them.
_KEEPS_PATIENT_IDENTITY = (
    UpsertPatient, UpsertEncounter, DischargeEncounter, AddObservations, RequestConsultation,
    CancelConsultation, ScheduleConsultation,
)


def _entities(command: Command) -> list[object]:
    """The canonical entities a command carries, whose id fields a :class:`Linked` fills."""
    match command:
        case UpsertPatient():
            return [command.patient]
        case UpsertEncounter():
            return [command.encounter]
        case AddObservations():
            return list(command.observations)
        case RequestConsultation():
            return [command.consultation]
        case UpsertPractitioner():
            return [command.practitioner]
        case AddDocument():
            return [command.document]
        case AddImagingStudy():
            return [command.study]
    return []
