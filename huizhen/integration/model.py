"""The canonical consultation model.

Typed entities that every wire format maps into and out of. Nothing here knows
about HL7, FHIR, DICOM, GraphQL or a database: mappings build these objects,
the store persists them, the edges render them.

Ids are opaque strings (UUID hex: random, or time-ordered for rows appended in
bulk) given by Huizhen; every external identifier a source sent is kept in
``identifiers`` with its system (assigning authority, FHIR identifier system,
DICOM issuer).
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` writes it.

    Taken from a pool filled by one read of the OS's randomness per
    :data:`_ID_POOL` ids: every HL7 message takes a dozen ids, and a
    ``urandom`` call each cost more than the rest of the id's making.
    """
    try:
        return _ids.pop()
    except IndexError:  # empty (or emptied meanwhile by another thread): refill
        _ids.extend(_fresh_ids(_ID_POOL))
        return _ids.pop()


_ID_POOL = 256


def new_time_ordered_id() -> str:
    """A version 7 UUID (RFC 9562) as 32 hex digits: the Unix time in milliseconds, then random.

    For rows appended in bulk (the audit trail: some 150 per page of a work-list), so that the
    unique index on ``id`` grows at its end: random ids put each row of a batch on another
    index page, and every such page is written to the WAL again at each commit.
    """
    global _stamp
    ms = time.time_ns() // 1_000_000
    at, prefix = _stamp
    if ms != at:  # the millisecond's hex, written once for the ids made in it (a page's 150 audit events)
        prefix = f"{ms:012x}7"
        _stamp = (ms, prefix)  # one tuple, swapped whole: threads see an old pair or a new one
    return prefix + new_id()[13:]  # new_id's variant bits stay


_stamp: tuple[int, str] = (-1, "")  # (Unix milliseconds, the ids' first 13 hex digits for it)


def _fresh_ids(n: int) -> list[str]:
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes([(b & 0x0F) | 0x40 for b in raw[6::16]])  # version 4
    raw[8::16] = bytes([(b & 0x3F) | 0x80 for b in raw[8::16]])  # RFC 4122 variant
    hexed = raw.hex()
    return [hexed[i : i + 32] for i in range(0, 32 * n, 32)]


_ids: list[str] = []
if hasattr(os, "register_at_fork"):  # a forked child must never hand out its parent's ids
    os.register_at_fork(after_in_child=_ids.clear)


class FacilityLevel(enum.StrEnum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"
    TERTIARY = "TERTIARY"


class Gender(enum.StrEnum):
    """FHIR administrative-gender; HL7 table 0001 maps onto it."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class PractitionerTitle(enum.StrEnum):
    CHIEF = "CHIEF"  # 主任医师
    ASSOCIATE_CHIEF = "ASSOCIATE_CHIEF"  # 副主任医师
    ATTENDING = "ATTENDING"  # 主治医师
    RESIDENT = "RESIDENT"  # 住院医师


class Urgency(enum.StrEnum):
    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    CRITICAL = "CRITICAL"


class ConsultationStatus(enum.StrEnum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (ConsultationStatus.COMPLETED, ConsultationStatus.CANCELLED)


class MessageStatus(enum.StrEnum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    DUPLICATE = "DUPLICATE"
    FILTERED = "FILTERED"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class Identifier:
    """An external identifier: ``system`` is the assigning authority or URI."""

    system: str
    value: str


@dataclass(frozen=True, slots=True)
class Coding:
    """A code with the system it belongs to (LOINC, ICD-10, a local table…)."""

    code: str
    system: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class HumanName:
    family: str | None = None
    given: tuple[str, ...] = ()
    text: str = ""

    @classmethod
    def of(cls, family: str | None, given: tuple[str, ...] = (), text: str | None = None) -> HumanName:
        """Build a name; without ``text``, derive the display form.

        Chinese names are written family-first without a space (张三); names
        in Latin script are written given-first with spaces.
        """
        if text is None:
            parts = [p for p in (family, *given) if p]
            cjk = any(_is_cjk(p) for p in parts)
            text = "".join(parts) if cjk else " ".join([*given, family] if family else list(given))
        return cls(family=family or None, given=tuple(given), text=text)


def _is_cjk(s: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in s)


@dataclass(slots=True)
class Facility:
    code: str
    name: str
    level: FacilityLevel = FacilityLevel.PRIMARY
    region: str | None = None
    id: str = field(default_factory=new_id)


@dataclass(slots=True)
class Patient:
    name: HumanName
    identifiers: list[Identifier] = field(default_factory=list)
    gender: Gender | None = None
    birth_date: date | None = None
    phone: str | None = None
    address: str | None = None
    facility_id: str | None = None
    merged_into: str | None = None  # id of the survivor after a merge (ADT^A40)
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class Practitioner:
    name: HumanName
    identifiers: list[Identifier] = field(default_factory=list)
    facility_id: str | None = None
    department: str | None = None
    title: PractitionerTitle | None = None
    specialties: list[str] = field(default_factory=list)
    expertise: list[str] = field(default_factory=list)  # ICD-10 codes the expert treats
    years_experience: int | None = None
    online: bool = False
    avg_response_minutes: float | None = None
    id: str = field(default_factory=new_id)


@dataclass(slots=True)
class Encounter:
    patient_id: str
    identifiers: list[Identifier] = field(default_factory=list)  # visit numbers (PV1-19)
    status: str = "in-progress"  # FHIR encounter-status words
    class_code: str | None = None  # AMB, IMP, EMER… (PV1-2 mapped)
    facility_id: str | None = None
    department: str | None = None
    location: str | None = None
    attending_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    id: str = field(default_factory=new_id)


@dataclass(slots=True)
class ReferenceRange:
    low: Decimal | None = None
    high: Decimal | None = None
    text: str | None = None


@dataclass(slots=True)
class Observation:
    patient_id: str
    code: Coding
    status: str = "final"
    value_type: str | None = None  # HL7 OBX-2 style: NM, ST, TX, CWE, SN…
    value_quantity: Decimal | None = None
    value_string: str | None = None
    value_coding: Coding | None = None
    unit: str | None = None
    reference_range: ReferenceRange | None = None
    interpretation: str | None = None  # H, L, N, A… (HL7 table 0078 / FHIR v3 codes)
    effective_at: datetime | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    encounter_id: str | None = None
    consultation_id: str | None = None
    id: str = field(default_factory=new_time_ordered_id)  # appended in bulk (an ORU^R01's ten)
    # The rest of what a source said, kept so that nothing it sent is lost (most results carry none):
    alternate_codes: tuple[Coding, ...] = ()  # ``code`` in other systems: the local code a table
    # translated, OBX-3's alternate triplet, a FHIR code's further codings
    code_text: str | None = None  # FHIR ``code.text`` where it is not the display
    category: tuple[Coding, ...] = ()  # FHIR ``category`` (laboratory, vital-signs…)
    issued: datetime | None = None  # when the result was released (FHIR ``issued``)
    value_alternates: tuple[Coding, ...] = ()  # a coded value's further codings

    @property
    def display_value(self) -> str | None:
        if self.value_quantity is not None:
            # a quantity without an exponent is written as format(q, "f") writes it, five times faster
            text = str(self.value_quantity)
            return text if "E" not in text else format(self.value_quantity, "f")
        if self.value_coding is not None:
            return self.value_coding.display or self.value_coding.code
        return self.value_string


@dataclass(slots=True)
class ImagingInstance:
    sop_instance_uid: str
    sop_class_uid: str | None = None
    number: int | None = None
    object_key: str | None = None  # where the object store keeps the bytes
    size: int | None = None
    sha256: str | None = None
    conflict: bool = False  # same SOP Instance UID arrived with different content
    transfer_syntax_uid: str | None = None  # as stored (C-MOVE/C-GET propose it to the receiver)


@dataclass(slots=True)
class ImagingSeries:
    series_instance_uid: str
    modality: str | None = None
    number: int | None = None
    description: str | None = None
    body_site: str | None = None
    instances: list[ImagingInstance] = field(default_factory=list)
    # a summary read (the API's lists) counts the instances instead of loading them: a CT series
    # holds hundreds; then ``instances`` is empty and this is their number
    counted: int | None = None

    @property
    def instance_count(self) -> int:
        """Distinct SOP instances (a conflicting second content is the same instance)."""
        if self.counted is not None:
            return self.counted
        return len({i.sop_instance_uid for i in self.instances})


@dataclass(slots=True)
class ImagingStudy:
    patient_id: str
    study_instance_uid: str
    accession_number: str | None = None
    description: str | None = None
    started_at: datetime | None = None
    facility_id: str | None = None
    consultation_id: str | None = None
    series: list[ImagingSeries] = field(default_factory=list)
    study_id: str | None = None  # DICOM StudyID (SH), the modality's own number for the study
    referring_physician: str | None = None  # DICOM ReferringPhysicianName, a PN value as sent
    # the header's StudyDate and StudyTime as sent (DA, TM): the date written on the images, in
    # the modality's zone; None for studies indexed before they were kept (then: started_at)
    study_date: str | None = None
    study_time: str | None = None
    id: str = field(default_factory=new_id)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series if s.modality})

    @property
    def series_count(self) -> int:
        return len(self.series)

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)


@dataclass(slots=True)
class Document:
    patient_id: str
    title: str
    content_type: str = "text/plain"
    text: str | None = None
    object_key: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    consultation_id: str | None = None
    created_at: datetime | None = None
    id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime
    type: str
    actor: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class Consultation:
    patient_id: str
    department: str
    urgency: Urgency
    chief_complaint: str
    number: str = ""  # HZ-YYYYMMDD-NNNN, given by the store on insert
    status: ConsultationStatus = ConsultationStatus.DRAFT
    requester_id: str | None = None
    facility_id: str | None = None
    disease_code: str | None = None
    disease_name: str | None = None
    question: str | None = None
    symptoms: list[dict[str, object]] = field(default_factory=list)
    learning_flags: list[str] = field(default_factory=list)  # the expert's teaching flags (teaching.LEARNING_POINTS)
    expert_id: str | None = None
    preferred_expert_id: str | None = None  # the expert the requester asked for, if any
    diagnosis: str | None = None
    treatment_plan: str | None = None
    cancel_reason: str | None = None
    source_order: Identifier | None = None  # ORC-2 / ServiceRequest identifier: idempotency key
    order_codes: tuple[Coding, ...] = ()  # the order's own code as the HIS sent it (OBR-4, ServiceRequest.code)
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    observation_ids: list[str] = field(default_factory=list)
    study_ids: list[str] = field(default_factory=list)
    document_ids: list[str] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    version: int = 0  # optimistic concurrency: bumped on every save
    id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class EntityRef:
    """What a message touched: ``("Patient", id)``."""

    type: str
    id: str


@dataclass(slots=True)
class Message:
    channel: str  # "mllp", "fhir", "dicom", "mllp-out"…
    raw: bytes
    received_at: datetime
    status: MessageStatus = MessageStatus.RECEIVED
    peer: str | None = None  # remote address or AE title
    sender: str | None = None  # MSH-3^MSH-4, FHIR client, calling AE
    control_id: str | None = None
    type: str | None = None  # ADT^A01, Bundle/transaction, C-STORE…
    error: str | None = None
    ack: str | None = None
    effects: list[EntityRef] = field(default_factory=list)
    processed_at: datetime | None = None
    id: str = field(default_factory=new_time_ordered_id)  # the journal grows at its end


@dataclass(slots=True)
class AuditEvent:
    at: datetime
    actor: str
    action: str  # read, create, update, delete, login, policy-change…
    outcome: str  # success, denied, failure
    roles: list[str] = field(default_factory=list)
    entity_type: str | None = None
    entity_id: str | None = None
    detail: str | None = None
    source: str | None = None  # remote address
    prev_hash: str | None = None
    hash: str | None = None
    id: str = field(default_factory=new_time_ordered_id)
    domain: str | None = None  # the RBAC domain (facility code, ``*``) the decision was made in; None before 0007


@dataclass
class BreakGlassGrant:
    """A clinician's own emergency access to one patient: reasoned, audited, expiring by itself."""

    user_id: str
    roles: list[str]
    domain: str
    patient_id: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    id: str = field(default_factory=new_id)

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a user from a token, or a system channel (``mllp:FAC001``)."""

    id: str
    roles: tuple[str, ...] = ()
    facility: str | None = None
    source: str | None = None  # remote address

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(id=name, roles=("system",))


class OutboundStatus(enum.StrEnum):
    PENDING = "PENDING"  # waiting for its (next) attempt
    SENT = "SENT"  # the receiver acknowledged it
    FAILED = "FAILED"  # the receiver refused it (AR/CR): retrying would not help


@dataclass(slots=True)
class OutboundMessage:
    """A message Huizhen owes another system, kept until that system acknowledges it."""

    channel: str  # "mllp-out"
    destination: str  # facility code the endpoint is configured for
    payload: bytes
    created_at: datetime
    control_id: str | None = None
    type: str | None = None
    consultation_id: str | None = None
    status: OutboundStatus = OutboundStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    ack: str | None = None
    sent_at: datetime | None = None
    id: str = field(default_factory=new_id)
