"""Commands: the effects a mapping asks for, applied by the engine in order.

A mapping is a pure function from a message to a list of commands; it knows
no database, so it cannot know internal ids. Everything it refers to is named
by external identifiers (a patient by its identifiers, a consultation by its
source order number), and the engine resolves them when it applies the
command. Model objects inside a command carry ``UNRESOLVED`` in the id fields
the engine fills in (``Observation.patient_id``, ``Consultation.patient_id``…).

Upserts merge: a field left ``None`` or empty (an empty name, an empty list)
keeps what is stored; identifiers are added to those already known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from huizhen.integration.model import (
    Consultation,
    Document,
    Encounter,
    Facility,
    Identifier,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
)

UNRESOLVED = ""  # an internal id the engine resolves from the command's identifiers

PatientRef = tuple[Identifier, ...]  # any one of them finds the patient


@dataclass(frozen=True, slots=True)
class UpsertPatient:
    """Create the patient, or update the one any of ``patient.identifiers`` finds."""

    patient: Patient
    facility_code: str | None = None


@dataclass(frozen=True, slots=True)
class UpsertEncounter:
    """Create or update the visit that any of ``encounter.identifiers`` finds."""

    encounter: Encounter
    patient: PatientRef
    facility_code: str | None = None


@dataclass(frozen=True, slots=True)
class DischargeEncounter:
    """End the visit (status ``finished``); ``end`` is when, if the message says."""

    patient: PatientRef
    visit: tuple[Identifier, ...]
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class MergePatients:
    """The patient found by ``merged`` now links to the one found by ``survivor``."""

    survivor: PatientRef
    merged: PatientRef


@dataclass(frozen=True, slots=True)
class AddObservations:
    """Results for a patient; attached to the consultation whose source order is ``order``."""

    patient: PatientRef
    observations: tuple[Observation, ...]
    order: Identifier | None = None


@dataclass(frozen=True, slots=True)
class RequestConsultation:
    """A consultation requested by an order; idempotent on ``consultation.source_order``.

    The engine creates it as a DRAFT and submits it (DRAFT → PENDING) through the
    workflow, so the timeline records the request; a repeat of the same source
    order changes nothing.
    """

    consultation: Consultation
    patient: PatientRef
    requester: Practitioner | None = None
    facility_code: str | None = None


@dataclass(frozen=True, slots=True)
class CancelConsultation:
    """The order behind a consultation was cancelled by its placer."""

    order: Identifier
    reason: str


@dataclass(frozen=True, slots=True)
class ScheduleConsultation:
    """The consultation whose source order is ``order`` is booked for ``start``."""

    order: Identifier
    start: datetime
    end: datetime | None = None
    appointment: tuple[Identifier, ...] = ()


@dataclass(frozen=True, slots=True)
class UpsertFacility:
    """Create the facility, or update the one with the same ``facility.code``."""

    facility: Facility


@dataclass(frozen=True, slots=True)
class UpsertPractitioner:
    """Create or update the practitioner found by ``practitioner.id`` or any of its identifiers.

    Merges like the other upserts. ``create=False`` only updates: a practitioner
    found by nothing is a :class:`~huizhen.integration.errors.NotFound`
    (a FHIR PractitionerRole names one that must exist).
    """

    practitioner: Practitioner
    facility_code: str | None = None
    create: bool = True


@dataclass(frozen=True, slots=True)
class AddImagingStudy:
    """Study metadata for a patient, keyed by its Study Instance UID; series and instances add up."""

    study: ImagingStudy
    patient: PatientRef
    order: Identifier | None = None
    facility_code: str | None = None


@dataclass(frozen=True, slots=True)
class AddDocument:
    """A document (report, note) for a patient; attached to the consultation whose source order is ``order``.

    Idempotent on the document's identifiers: a document already holding one of
    them is updated in place.
    """

    document: Document
    patient: PatientRef
    order: Identifier | None = None


@dataclass(frozen=True, slots=True)
class BindPatientAlias:
    """Give the patient whose Huizhen id is ``patient_id`` the identifier ``alias``.

    For a sender that names a patient by the id Huizhen gave it (a FHIR client
    that read ``Patient/<id>`` back): after this, ``alias`` finds the patient
    like any identifier. Nothing happens when a patient already holds
    ``alias`` or no patient has that id.
    """

    alias: Identifier
    patient_id: str


@dataclass(frozen=True, slots=True)
class LinkAcknowledgement:
    """An acknowledgement that arrived inbound: link it to the outbound message it answers.

    ``control_id`` is the acknowledged message's control id (HL7 MSA-2),
    ``destination`` the facility that sent the acknowledgement (a hint: the
    outbound message to that facility is preferred). Nothing is changed; a
    control id that matches no outbound message links nothing.
    """

    control_id: str
    code: str
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class EntityLink:
    """An id field to fill before a command applies: ``field`` of each entity the command carries.

    ``target`` is ``Practitioner`` (found by identifier), ``Encounter`` (by visit
    number) or ``Organization`` (a facility, by code: the identifiers' values);
    ``ids`` are Huizhen ids to try as well. A link that finds nothing leaves the
    field as it is.
    """

    field: str
    target: str
    identifiers: tuple[Identifier, ...] = ()
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Linked:
    """Resolve ``links`` into the entities of ``command``, then apply it."""

    command: Command
    links: tuple[EntityLink, ...]


Command = (
    UpsertPatient
    | UpsertEncounter
    | DischargeEncounter
    | MergePatients
    | AddObservations
    | RequestConsultation
    | CancelConsultation
    | ScheduleConsultation
    | UpsertFacility
    | UpsertPractitioner
    | AddImagingStudy
    | AddDocument
    | BindPatientAlias
    | LinkAcknowledgement
    | Linked
)
