"""Indexing received imaging instances into the canonical store.

The DICOM adapter checks and stores the bytes, maps the header to canonical
objects and hands them here as a :class:`ReceivedInstance`. One write
transaction then:

1. finds the study by StudyInstanceUID, or creates it: the patient is found
   by any of the header's identifiers (PatientID under IssuerOfPatientID, the
   same identifier mapping HL7 uses) or created from the header; a header
   without PatientID gives a patient with no identifier, found again through
   the study for the study's later instances;
2. adds the series and the instance (one row per distinct content: a repeat
   of the same bytes is a DUPLICATE, other bytes under the same SOP Instance
   UID are kept and flagged as a conflict);
3. attaches a new study to the consultation whose source order is its
   (facility code, AccessionNumber), its StudyInstanceUID under the facility
   or under ``urn:dicom:uid`` (see :func:`_order_keys`), and appends a
   STUDY_RECEIVED timeline event;
4. journals the C-STORE as a Message (a JSON summary, never the pixel data).

Events (``study`` RECEIVED, ``message``, ``consultation``) are published only
after the commit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from huizhen.integration.consultations import consultation_event
from huizhen.integration.engine import MESSAGE_TOPIC
from huizhen.integration.errors import Conflict, NotFound
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import (
    Consultation,
    EntityRef,
    Identifier,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Message,
    MessageStatus,
    Patient,
    TimelineEvent,
    new_id,
)
from huizhen.integration.repo import Repository
from huizhen.integration.repo.imaging import InstanceOutcome, StudyRef
from huizhen.integration.store import Store

log = logging.getLogger(__name__)

CHANNEL = "dicom"
STUDY_TOPIC = "study"
STUDY_RECEIVED = "STUDY_RECEIVED"  # consultation timeline event type
PRIORS_REQUESTED = "PRIORS_REQUESTED"  # prior studies asked of the facility's PACS
PRIORS_RETRIEVED = "PRIORS_RETRIEVED"  # … and every one found was retrieved
PRIORS_FAILED = "PRIORS_FAILED"  # … and the PACS could not be asked, or some studies did not come
DICOM_UID_SYSTEM = "urn:dicom:uid"  # the identifier system of DICOM UIDs (FHIR ImagingStudy, ServiceRequest)
_ATTEMPTS = 3  # concurrent first instances of one new patient or study: the loser retries
_KNOWN_SERIES = 4096  # series whose rows are committed: their next instances skip two statements


@dataclass(frozen=True)
class ReceivedInstance:
    """One stored instance, mapped: ``study`` holds one series holding this one instance."""

    patient: Patient
    study: ImagingStudy
    calling_ae: str
    received_at: datetime
    peer: str | None = None  # remote address
    facility_code: str | None = None  # of the calling AE (HUIZHEN_DICOM_PEERS)

    @property
    def series(self) -> ImagingSeries:
        return self.study.series[0]

    @property
    def instance(self) -> ImagingInstance:
        return self.study.series[0].instances[0]


@dataclass(frozen=True)
class Indexed:
    outcome: InstanceOutcome
    study_id: str
    patient_id: str
    message_id: str
    new_study: bool
    consultation_id: str | None = None


class ImagingIndexer:
    def __init__(self, store: Store, bus: EventBus, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock or (lambda: datetime.now(UTC))
        # series UID -> its study, for series already committed (rows are never deleted)
        self._known: OrderedDict[str, StudyRef] = OrderedDict()

    async def index(self, item: ReceivedInstance) -> Indexed:
        """Index one instance (its bytes already durable in the object store) in a committed transaction."""
        if not item.study.series or len(item.study.series[0].instances) != 1:
            raise ValueError("a ReceivedInstance holds exactly one series with one instance")
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                indexed, events = await self._index_once(item)
            except (IntegrityError, Conflict):
                if attempt == _ATTEMPTS:
                    raise
                log.info("imaging index: concurrent writer won, retrying", extra={"attempt": attempt})
                continue
            for event in events:
                await self.bus.publish(event)
            return indexed
        raise AssertionError("unreachable")  # the loop returns or raises

    async def record_failure(
        self, *, calling_ae: str, peer: str | None, sop_instance_uid: str | None, error: str, answer: str,
        received_at: datetime,
    ) -> Message:
        """Journal a C-STORE that was refused (nothing of it indexed) for the integration admins."""
        msg = Message(
            channel=CHANNEL, type="C-STORE", sender=calling_ae, peer=peer, control_id=sop_instance_uid,
            raw=_summary(error=error), received_at=received_at, status=MessageStatus.ERROR, error=error,
            ack=answer, processed_at=self.clock(),
        )
        async with self.store.write() as repo:
            await repo.journal.add(msg)
        await self.bus.publish(_message_event(msg))
        return msg

    async def _index_once(self, item: ReceivedInstance) -> tuple[Indexed, list[Event]]:
        # group commit: the instances of every association arriving meanwhile share one transaction
        # and one commit (fsync); this one's answer still waits for that commit
        indexed, events, ref = await self.store.batched(lambda repo: self._apply(repo, item))
        self._remember(item.series.series_instance_uid, ref)
        return indexed, events

    async def _apply(self, repo: Repository, item: ReceivedInstance) -> tuple[Indexed, list[Event], StudyRef]:
        """Everything of one instance inside the transaction ``repo`` is in (may run again)."""
        events: list[Event] = []
        inst = dataclasses.replace(item.instance)
        series_uid = item.series.series_instance_uid
        ref, new_study = self._known.get(series_uid), False
        if ref is None:
            ref = await repo.imaging.study_ref(item.study.study_instance_uid)
            if ref is None:
                ref, new_study = await self._add_study(repo, item)
            await repo.imaging.add_series(ref.id, item.series)
        outcome = await repo.imaging.add_instance(series_uid, inst)
        if new_study:
            ref = dataclasses.replace(ref, consultation_id=await self._attach_to_consultation(repo, item, ref, events))
        msg = Message(
            channel=CHANNEL, type="C-STORE", sender=item.calling_ae, peer=item.peer,
            control_id=inst.sop_instance_uid, raw=_summary(item, inst, outcome),
            received_at=item.received_at, processed_at=self.clock(),
            status=MessageStatus.DUPLICATE if outcome is InstanceOutcome.DUPLICATE else MessageStatus.PROCESSED,
            error="conflict: this SOP Instance UID was stored before with other content"
            if outcome is InstanceOutcome.CONFLICT else None,
            effects=[EntityRef("Patient", ref.patient_id), EntityRef("ImagingStudy", ref.id)],
        )
        await repo.journal.add(msg)
        if outcome is not InstanceOutcome.DUPLICATE:
            events.insert(0, _study_event(item, inst, ref, new_study, ref.consultation_id))
        events.append(_message_event(msg))
        return Indexed(outcome, ref.id, ref.patient_id, msg.id, new_study, ref.consultation_id), events, ref

    def _remember(self, series_uid: str, ref: StudyRef) -> None:
        self._known[series_uid] = ref
        self._known.move_to_end(series_uid)
        if len(self._known) > _KNOWN_SERIES:
            self._known.popitem(last=False)

    async def _add_study(self, repo: Repository, item: ReceivedInstance) -> tuple[StudyRef, bool]:
        facility = await repo.directory.facility_or_register(item.facility_code) if item.facility_code else None
        facility_id = facility.id if facility else None
        patient = await _find_patient(repo, item.patient.identifiers)
        if patient is None:
            patient = dataclasses.replace(item.patient, id=new_id(), facility_id=facility_id)
            await repo.patients.save(patient)
        study = dataclasses.replace(
            item.study, id=new_id(), patient_id=patient.id, facility_id=facility_id, series=[]
        )
        ref, created = await repo.imaging.add_study(study)
        if not created:  # another writer created it since study_ref(): start again, finding theirs
            raise Conflict(f"study {study.study_instance_uid} was created concurrently")
        return ref, created

    async def _attach_to_consultation(
        self, repo: Repository, item: ReceivedInstance, ref: StudyRef, events: list[Event]
    ) -> str | None:
        c = None
        for order in _order_keys(item):
            c = await repo.consultations.by_source_order(order)
            if c is not None:
                break
        if c is None:
            return None
        await repo.imaging.link_consultation(ref.id, c.id)
        if ref.id not in c.study_ids:
            c.study_ids.append(ref.id)
        event = TimelineEvent(
            at=item.received_at, type=STUDY_RECEIVED, actor=f"{CHANNEL}:{item.calling_ae}",
            detail=item.study.study_instance_uid,
        )
        c.timeline.append(event)
        await repo.consultations.save(c)
        events.append(consultation_event(c, event))
        return c.id


async def note_on_consultation(
    store: Store, bus: EventBus, consultation_id: str, type: str, actor: str, detail: str, *,
    attach: Sequence[str] = (), at: datetime | None = None,
) -> Consultation:
    """Append a timeline event (and attach the studies ``attach`` names that no consultation holds yet)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with store.write() as repo:
                c = await repo.consultations.get(consultation_id)
                if c is None:
                    raise NotFound("Consultation", consultation_id)
                for uid in attach:
                    ref = await repo.imaging.study_ref(uid)
                    if ref is not None and ref.consultation_id is None and ref.id not in c.study_ids:
                        await repo.imaging.link_consultation(ref.id, c.id)
                        c.study_ids.append(ref.id)
                event = TimelineEvent(at=at or datetime.now(UTC), type=type, actor=actor, detail=detail)
                c.timeline.append(event)
                await repo.consultations.save(c)
        except Conflict:  # the consultation changed meanwhile (a study arrived, a transition): read it again
            if attempt == _ATTEMPTS:
                raise
            continue
        await bus.publish(consultation_event(c, event))
        return c
    raise AssertionError("unreachable")  # the loop returns or raises


def _order_keys(item: ReceivedInstance) -> list[Identifier]:
    """The source orders a new study may belong to, most specific first.

    A facility's HIS may place the order under the accession number the
    modality then writes (the system is the facility code, as HL7 gives an
    order number sent without a namespace) or under the Study Instance UID it
    requested (an IHE ZDS-1 / a ServiceRequest identifier ``urn:dicom:uid``).
    """
    study_uid = item.study.study_instance_uid
    keys = [Identifier(DICOM_UID_SYSTEM, study_uid), Identifier(DICOM_UID_SYSTEM, f"urn:oid:{study_uid}")]
    if item.facility_code:
        if item.study.accession_number:
            keys.insert(0, Identifier(item.facility_code, item.study.accession_number))
        keys.append(Identifier(item.facility_code, study_uid))
    return keys


async def _find_patient(repo: Repository, identifiers: list[Identifier]) -> Patient | None:
    for ident in identifiers:
        found = await repo.patients.by_identifier(ident.system, ident.value)
        if found is not None:
            return found
    return None


def _summary(
    item: ReceivedInstance | None = None, inst: ImagingInstance | None = None,
    outcome: InstanceOutcome | None = None, *, error: str | None = None,
) -> bytes:
    """The journaled "raw message": identifiers of what was stored, not the dataset."""
    doc: dict[str, object] = {"error": error} if error else {}
    if item is not None and inst is not None:
        doc = {
            "study_instance_uid": item.study.study_instance_uid,
            "series_instance_uid": item.series.series_instance_uid,
            "sop_instance_uid": inst.sop_instance_uid, "sop_class_uid": inst.sop_class_uid,
            "transfer_syntax_uid": inst.transfer_syntax_uid, "object_key": inst.object_key,
            "size": inst.size, "sha256": inst.sha256, "outcome": outcome.value if outcome else None,
        }
    return json.dumps(doc, sort_keys=True).encode()


def _study_event(
    item: ReceivedInstance, inst: ImagingInstance, ref: StudyRef, new_study: bool, consultation_id: str | None
) -> Event:
    return Event(
        topic=STUDY_TOPIC,
        type="RECEIVED",
        data={
            "id": ref.id, "patient_id": ref.patient_id, "study_instance_uid": item.study.study_instance_uid,
            "series_instance_uid": item.series.series_instance_uid, "sop_instance_uid": inst.sop_instance_uid,
            "modality": item.series.modality, "new_study": new_study, "conflict": inst.conflict,
            "consultation_id": consultation_id, "sender": item.calling_ae,
        },
    )


def _message_event(msg: Message) -> Event:
    return Event(
        topic=MESSAGE_TOPIC,
        type=msg.status.value,
        data={"id": msg.id, "channel": msg.channel, "status": msg.status.value, "type": msg.type,
              "sender": msg.sender, "control_id": msg.control_id},
    )
