"""SQLAlchemy 2 table definitions of the canonical store (SQLite and PostgreSQL).

Columns ending in ``_enc`` hold AES-GCM ciphertext (see ``crypto.py``);
columns ending in ``_idx`` hold the keyed blind index used for exact search.
Everything else is plaintext needed for filtering and joins (status,
department, urgency, codes, UIDs) and carries no direct identifier.
Alembic migrations in ``migrations/`` are generated from this metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every back end.

    On SQLite the value's conversion and SQLite ``DATETIME``'s own (text) are one function each
    way (:func:`_sqlite_bind`, :func:`_sqlite_result`): a work-list page reads some 450 of these
    and its audit trail writes 150, and the two steps cost twice the one (``DATETIME`` formats
    each value with a ``%`` dict). The text is the very one ``DATETIME`` writes and reads."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Any:
        return _sqlite_bind if dialect.name == "sqlite" else super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        return _sqlite_result if dialect.name == "sqlite" else super().result_processor(dialect, coltype)


def _sqlite_bind(value: datetime | None) -> str | None:
    """``process_bind_param`` then SQLite ``DATETIME``'s text (``%Y-%m-%d %H:%M:%S.%f``, its
    default storage format), in one step: a UTC time's ISO text without its ``+00:00``
    (``replace(tzinfo=None)`` alone cost as much as the formatting)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]


def _sqlite_result(value: str | None) -> datetime | None:
    """SQLite ``DATETIME``'s parse (``datetime.fromisoformat``) then ``process_result_value``, in
    one step: the stored (naive UTC) text parsed with ``+00:00`` appended, a fifth of the cost of
    parsing it and then replacing its zone."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value + "+00:00")
    except ValueError:  # text with an offset of its own
        at = datetime.fromisoformat(value)
    if at.tzinfo is None:  # a date alone ("2026-01-01+00:00" parses as a naive midnight)
        return at.replace(tzinfo=UTC)
    return at if at.tzinfo is UTC else at.astimezone(UTC)


ID = String(32)


def _id(**kw: Any) -> Column[str]:
    return Column("id", ID, primary_key=True, **kw)


facilities = Table(
    "facilities",
    metadata,
    _id(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("level", String(16), nullable=False),
    Column("region", String(100)),
)

patients = Table(
    "patients",
    metadata,
    _id(),
    Column("facility_id", ID, ForeignKey("facilities.id")),
    Column("gender", String(16)),
    Column("phi_enc", LargeBinary, nullable=False),  # name, birth date, phone, address
    Column("merged_into", ID, ForeignKey("patients.id")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

patient_identifiers = Table(
    "patient_identifiers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", ID, ForeignKey("patients.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("system_enc", LargeBinary, nullable=False),
    Column("value_enc", LargeBinary, nullable=False),
    Column("system_value_idx", String(64), nullable=False, unique=True),
    Column("value_idx", String(64), nullable=False, index=True),
)

# blind-index tokens of a patient's name (full name, family name, given name)
patient_search_tokens = Table(
    "patient_search_tokens",
    metadata,
    Column("patient_id", ID, ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True),
    Column("token_idx", String(64), primary_key=True),
    Index("ix_patient_search_tokens_token", "token_idx"),
)

practitioners = Table(
    "practitioners",
    metadata,
    _id(),
    Column("name", JSON, nullable=False),
    Column("identifiers", JSON, nullable=False),
    Column("facility_id", ID, ForeignKey("facilities.id")),
    Column("department", String(100), index=True),
    Column("title", String(32)),
    Column("specialties", JSON, nullable=False),
    Column("expertise", JSON, nullable=False),
    Column("years_experience", Integer),
    Column("online", Boolean, nullable=False, default=False),
    Column("avg_response_minutes", Float),
)

practitioner_identifiers = Table(
    "practitioner_identifiers",
    metadata,
    Column("practitioner_id", ID, ForeignKey("practitioners.id", ondelete="CASCADE"), nullable=False),
    Column("system", String(200), primary_key=True),
    Column("value", String(200), primary_key=True),
)

encounters = Table(
    "encounters",
    metadata,
    _id(),
    Column("patient_id", ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("identifiers", JSON, nullable=False),
    Column("visit_idx", String(64), unique=True),  # blind index of the first visit number
    Column("status", String(32), nullable=False),
    Column("class_code", String(16)),
    Column("facility_id", ID, ForeignKey("facilities.id")),
    Column("department", String(100)),
    Column("location", String(200)),
    Column("attending_id", ID, ForeignKey("practitioners.id")),
    Column("start", UTCDateTime),
    Column("end", UTCDateTime),
)

observations = Table(
    "observations",
    metadata,
    _id(),
    Column("patient_id", ID, ForeignKey("patients.id"), nullable=False),
    Column("code", String(100), nullable=False),
    Column("system", String(200)),
    Column("display", String(300)),
    # the code's other codings (a translated local code, FHIR's further ones): see repo.clinical.codes_text
    Column("alternate_codes", Text),
    Column("status", String(32), nullable=False),
    Column("value_type", String(8)),
    Column("value_quantity", Numeric(precision=28, scale=10)),
    Column("value_enc", LargeBinary),  # string / coded value, range text: free clinical text
    Column("unit", String(64)),
    Column("interpretation", String(16)),
    Column("effective_at", UTCDateTime),
    Column("identifiers", JSON, nullable=False),
    Column("encounter_id", ID, ForeignKey("encounters.id")),
    Column("consultation_id", ID, ForeignKey("consultations.id")),
    Index("ix_observations_patient_effective", "patient_id", "effective_at"),
)

imaging_studies = Table(
    "imaging_studies",
    metadata,
    _id(),
    Column("patient_id", ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False, unique=True),
    Column("accession_number", String(64), index=True),
    Column("description", String(200)),
    Column("started_at", UTCDateTime),
    Column("facility_id", ID, ForeignKey("facilities.id")),
    Column("consultation_id", ID, ForeignKey("consultations.id")),
    # DICOM StudyID, often the PatientID: encrypted (0014); the plaintext column holds it only for
    # rows indexed before, until ``huizhen keys rotate`` seals them (rekey.PLAINTEXT)
    Column("study_id", String(64)),
    Column("referring_physician", String(400)),  # DICOM ReferringPhysicianName (PN, all groups)
    Column("study_id_enc", LargeBinary),
    # the header's StudyDate / StudyTime as sent (DA / TM text): what C-FIND and QIDO-RS match and
    # return; started_at is the instant (ordering, GraphQL, FHIR)
    Column("study_date", String(16)),
    Column("study_time", String(16)),
    Index("ix_imaging_studies_started", "started_at"),
)

imaging_series = Table(
    "imaging_series",
    metadata,
    Column("series_instance_uid", String(64), primary_key=True),
    Column("study_id", ID, ForeignKey("imaging_studies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("modality", String(16)),
    Column("number", Integer),
    Column("description", String(200)),
    Column("body_site", String(64)),
)

imaging_instances = Table(
    "imaging_instances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_instance_uid", String(64), ForeignKey("imaging_series.series_instance_uid", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("sop_instance_uid", String(64), nullable=False, index=True),
    Column("sop_class_uid", String(64)),
    Column("number", Integer),
    Column("object_key", String(300)),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("conflict", Boolean, nullable=False, default=False),
    Column("transfer_syntax_uid", String(64)),
    # one row per distinct content of an instance: a repeated C-STORE of the same bytes adds nothing
    Index("uq_imaging_instances_sop_sha256", "sop_instance_uid", "sha256", unique=True),
)

documents = Table(
    "documents",
    metadata,
    _id(),
    Column("patient_id", ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("title", String(300), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("text_enc", LargeBinary),
    Column("object_key", String(300)),
    Column("identifiers", JSON, nullable=False),
    Column("consultation_id", ID, ForeignKey("consultations.id")),
    Column("created_at", UTCDateTime, nullable=False),
)

consultations = Table(
    "consultations",
    metadata,
    _id(),
    Column("number", String(32), nullable=False, unique=True),
    Column("patient_id", ID, ForeignKey("patients.id"), nullable=False, index=True),
    Column("requester_id", ID, ForeignKey("practitioners.id")),
    Column("facility_id", ID, ForeignKey("facilities.id"), index=True),
    Column("department", String(100), nullable=False),
    Column("disease_code", String(32)),
    Column("disease_name", String(200)),
    Column("urgency", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expert_id", ID, ForeignKey("practitioners.id"), index=True),
    Column("preferred_expert_id", ID, ForeignKey("practitioners.id")),
    Column("clinical_enc", LargeBinary, nullable=False),  # complaint, question, symptoms, diagnosis, plan
    Column("source_order_idx", String(64), unique=True),  # blind index of (system, order number)
    Column("source_order_enc", LargeBinary),
    Column("scheduled_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("assigned_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("cancelled_at", UTCDateTime),
    Column("version", Integer, nullable=False),
    Index("ix_consultations_status_dept", "status", "department"),
    Index("ix_consultations_created", "created_at", "id"),
)

consultation_links = Table(
    "consultation_links",
    metadata,
    Column("consultation_id", ID, ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True),
    Column("entity_type", String(32), primary_key=True),
    Column("entity_id", ID, primary_key=True),
)

timeline_events = Table(
    "timeline_events",
    metadata,
    Column("consultation_id", ID, ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("type", String(32), nullable=False),
    Column("actor", String(100)),
    Column("detail_enc", LargeBinary),
    Index("ix_timeline_events_at", "at", "consultation_id", "seq"),  # replay by cursor (subscriptions)
)

# The inbound engine's channels (HL7 over MLLP, FHIR): each sender + control id is answered once.
# (DICOM journals every C-STORE of an instance, the same instance again included.)
ANSWERED_ONCE_CHANNELS = ("mllp", "fhir")
_ANSWERED = "channel IN ('mllp', 'fhir') AND status IN ('PROCESSED', 'FILTERED')"
messages = Table(
    "messages",
    metadata,
    _id(),
    Column("channel", String(32), nullable=False),
    Column("peer", String(200)),
    Column("sender", String(200)),
    Column("control_id", String(200)),
    Column("type", String(64)),
    Column("raw_enc", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    # the outcome and the ACK sent: an error names what it refused, often with the value
    # ("PID-7 '19491301' is not an HL7 date"), and the ACK's ERR repeats it, so both are
    # encrypted (0009). The plaintext columns hold rows journaled before; ``huizhen keys
    # rotate`` moves them into the encrypted ones (huizhen.integration.rekey).
    Column("error", Text),
    Column("ack", Text),
    Column("error_enc", LargeBinary),
    Column("ack_enc", LargeBinary),
    Column("effects", JSON, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("processed_at", UTCDateTime),
    Index("ix_messages_sender_control", "sender", "control_id"),
    Index("ix_messages_channel_received", "channel", "received_at"),
    # a sender + control id is answered once on the engine's channels: a second PROCESSED/FILTERED
    # row is a duplicate that slipped past the engine's check (a race, or a first run trusting this)
    Index("uq_messages_answered", "sender", "control_id", unique=True,
          postgresql_where=text(_ANSWERED), sqlite_where=text(_ANSWERED)),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity_type", String(64)),
    Column("entity_id", String(64), index=True),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    Column("source", String(200)),
    Column("prev_hash", String(64)),
    Column("hash", String(64), nullable=False),
    Column("domain", String(64)),  # the RBAC domain of the decision (0007; NULL on older rows)
)

# the end of the audit chain, kept beside it: how many events it holds and the last one's hash,
# with an HMAC under the blind-index key (never in the database), so that deleting the newest events
# (which leaves a shorter chain that holds) is found by ``huizhen audit verify``. One row, id 1.
audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("events", BigInteger, nullable=False),
    Column("head", String(64)),
    Column("mac", String(64)),  # NULL: written by migration 0013, signed by the next append
)

# the Casbin policy: p lines (role, domain, object, action) and g lines (user, role, domain, "")
rbac_rules = Table(
    "rbac_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ptype", String(8), nullable=False),
    Column("v0", String(200), nullable=False),
    Column("v1", String(200), nullable=False),
    Column("v2", String(200), nullable=False),
    Column("v3", String(200), nullable=False),
    UniqueConstraint("ptype", "v0", "v1", "v2", "v3", name="uq_rbac_rules_line"),
)

# messages owed to other systems (the ORU report back), durable until acknowledged
outbox = Table(
    "outbox",
    metadata,
    _id(),
    Column("channel", String(32), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("type", String(64)),
    Column("control_id", String(200)),
    Column("consultation_id", ID, ForeignKey("consultations.id")),
    Column("payload_enc", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    # what the other system answered (as the journal's: it can quote our report; encrypted since 0010,
    # the plaintext columns hold older rows until ``huizhen keys rotate`` moves them)
    Column("last_error", Text),
    Column("ack", Text),
    Column("last_error_enc", LargeBinary),
    Column("ack_enc", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

# named counters (consultation numbers per day); incremented with an atomic upsert
sequences = Table(
    "sequences",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# de-identified teaching cases archived from COMPLETED consultations (no direct identifier anywhere)
teaching_cases = Table(
    "teaching_cases",
    metadata,
    _id(),
    Column("consultation_id", ID, ForeignKey("consultations.id"), nullable=False, unique=True),
    Column("pseudonym", String(64), nullable=False, index=True),
    Column("department", String(100), nullable=False),
    Column("diagnosis_code", String(32)),
    Column("completed_at", UTCDateTime),
    Column("body_enc", LargeBinary, nullable=False),  # the case as JSON; de-identified, encrypted all the same
    Index("ix_teaching_cases_dept_code", "department", "diagnosis_code"),
    Index("ix_teaching_cases_completed", "completed_at", "id"),
)

# SLA escalations: one row per consultation and clock; the primary key is what makes an
# escalation fire once across instances (the insert that wins publishes it)
sla_escalations = Table(
    "sla_escalations",
    metadata,
    Column("consultation_id", ID, ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True),
    Column("phase", String(16), primary_key=True),
    Column("due_at", UTCDateTime, nullable=False),
    Column("escalated_at", UTCDateTime, nullable=False),
    Column("acknowledged_by", String(200)),
)

# break-glass grants: a clinician's own, reasoned, self-expiring access to one patient (rows.Scope reads them)
break_glass = Table(
    "break_glass",
    metadata,
    _id(),
    Column("user_id", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("domain", String(64), nullable=False),
    Column("patient_id", ID, ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    Column("reason", Text, nullable=False),
    Column("granted_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UTCDateTime),
    Index("ix_break_glass_user_expires", "user_id", "expires_at"),
    Index("ix_break_glass_granted", "granted_at"),
)
