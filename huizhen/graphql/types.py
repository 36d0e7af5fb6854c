"""GraphQL object types: a mapping layer over the canonical model.

Each type wraps a model object (``_m``) and resolves relations through the
request's DataLoaders, never one query per row.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, tzinfo
from typing import Any, Generic, TypeVar

import strawberry

from huizhen.graphql.context import DISPLAY_TZ, Context, ready, then
from huizhen.integration import model as m
from huizhen.integration.paging import Page


# The model's enums, restated for GraphQL so that the model stays free of
# strawberry; tests/unit/test_graphql_enums.py keeps the two in step.
@strawberry.enum
class ConsultationStatus(enum.Enum):
    DRAFT = "DRAFT"
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class Urgency(enum.Enum):
    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    CRITICAL = "CRITICAL"


@strawberry.enum
class FacilityLevel(enum.Enum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"
    TERTIARY = "TERTIARY"


@strawberry.enum
class MessageStatus(enum.Enum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    DUPLICATE = "DUPLICATE"
    FILTERED = "FILTERED"
    ERROR = "ERROR"


Info = strawberry.Info[Context, None]


def local_iso(value: datetime | date | None, tz: tzinfo | None = None) -> str | None:
    """A time in ``tz``, by default the server's zone (``Context`` sets it for the request); a date as it is."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(tz or DISPLAY_TZ.get()).isoformat()
    return value.isoformat()


def iso(value: datetime | date | None, info: Info) -> str | None:
    return local_iso(value, info.context.services.settings.tz)


@strawberry.type
class Identifier:
    system: str
    value: str


@strawberry.type
class HumanName:
    family: str | None
    given: list[str]
    text: str

    @classmethod
    def of(cls, n: m.HumanName) -> HumanName:
        return cls(family=n.family, given=list(n.given), text=n.text)


@strawberry.type
class Facility:
    _m: strawberry.Private[m.Facility]
    id: strawberry.ID
    code: str
    name: str
    level: FacilityLevel

    def __init__(self, _m: m.Facility) -> None:
        self._m = _m
        self.id, self.code, self.name = strawberry.ID(_m.id), _m.code, _m.name
        self.level = FacilityLevel(_m.level.value)


def _facility(facility_id: str | None, info: Info) -> Any:
    """The facility, at once when the request holds it, else an awaitable (see ``context.ready``)."""
    if not facility_id:
        return None
    return then(ready(info.context.loaders.facility, facility_id), lambda f: Facility(_m=f) if f else None)


@strawberry.type
class Practitioner:
    _m: strawberry.Private[m.Practitioner]
    id: strawberry.ID
    name: HumanName
    title: str | None
    department: str | None
    specialties: list[str]
    expertise: list[str]
    years_experience: int | None
    online: bool
    avg_response_minutes: float | None

    def __init__(self, _m: m.Practitioner) -> None:
        self._m = _m
        self.id, self.name = strawberry.ID(_m.id), HumanName.of(_m.name)
        self.title = _m.title.value if _m.title else None
        self.department = _m.department
        self.specialties, self.expertise = list(_m.specialties), list(_m.expertise)
        self.years_experience, self.online, self.avg_response_minutes = (
            _m.years_experience, _m.online, _m.avg_response_minutes
        )

    @strawberry.field
    def facility(self, info: Info) -> Facility | None:
        return _facility(self._m.facility_id, info)  # type: ignore[no-any-return]


def _practitioner(pid: str | None, info: Info) -> Any:
    if not pid:
        return None
    return then(ready(info.context.loaders.practitioner, pid), lambda p: Practitioner(_m=p) if p else None)


@strawberry.type
class JournaledMessage:
    """What every view of a journaled message shows; :class:`SourceMessage` and the journal's ``Message`` extend it."""

    _m: strawberry.Private[m.Message]

    @strawberry.field
    def channel(self) -> str:
        return self._m.channel

    @strawberry.field
    def status(self) -> MessageStatus:
        return MessageStatus(self._m.status.value)

    @strawberry.field
    def type(self) -> str | None:
        return self._m.type

    @strawberry.field
    def control_id(self) -> str | None:
        return self._m.control_id

    @strawberry.field
    def sender(self) -> str | None:
        return self._m.sender

    @strawberry.field
    def received_at(self, info: Info) -> str:
        return iso(self._m.received_at, info) or ""


@strawberry.type(description="A journaled inbound message that created or changed an entity (provenance).")
class SourceMessage(JournaledMessage):
    @strawberry.field
    def message_id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)


async def sources_of(entity_id: str, info: Info) -> list[SourceMessage]:
    return [SourceMessage(_m=msg) for msg in await info.context.loaders.sources.load(entity_id)]


@strawberry.type(description="A code and the system it belongs to.")
class Coding:
    code: str
    system: str | None
    display: str | None

    @staticmethod
    def of(c: m.Coding) -> Coding:
        return Coding(code=c.code, system=c.system, display=c.display)


@strawberry.type
class Observation:
    _m: strawberry.Private[m.Observation]
    id: strawberry.ID
    code: str
    system: str | None
    display: str | None
    value: str | None
    unit: str | None
    interpretation: str | None
    effective_at: str | None
    status: str
    reference_range: str | None

    def __init__(self, _m: m.Observation) -> None:
        self._m = _m
        self.id = strawberry.ID(_m.id)
        self.code, self.system, self.display = _m.code.code, _m.code.system, _m.code.display
        self.value, self.unit, self.interpretation = _m.display_value, _m.unit, _m.interpretation
        self.effective_at, self.status = local_iso(_m.effective_at), _m.status
        r = _m.reference_range
        if r is None:
            self.reference_range = None
        elif r.text:
            self.reference_range = r.text
        else:
            self.reference_range = f"{r.low if r.low is not None else ''}-{r.high if r.high is not None else ''}"

    @strawberry.field(description="The code in other systems, as the source sent it (a lab's local code that a "
                      "table translated to LOINC, an alternate coding).")
    def alternate_codes(self) -> list[Coding]:
        return [Coding.of(c) for c in self._m.alternate_codes]

    @strawberry.field(description="The source's own text for the code, where it is not the display.")
    def code_text(self) -> str | None:
        return self._m.code_text

    @strawberry.field(description="Kinds of observation the source named (laboratory, vital-signs…).")
    def category(self) -> list[Coding]:
        return [Coding.of(c) for c in self._m.category]

    @strawberry.field(description="When the result was released, where the source said.")
    def issued(self) -> str | None:
        return local_iso(self._m.issued)

    @strawberry.field(description="The journaled messages that created or changed this observation.")
    async def sources(self, info: Info) -> list[SourceMessage]:
        return await sources_of(self._m.id, info)


@strawberry.type
class ImagingStudy:
    _m: strawberry.Private[m.ImagingStudy]
    id: strawberry.ID
    study_instance_uid: str
    accession_number: str | None
    modalities: list[str]
    description: str | None
    series_count: int
    instance_count: int
    started_at: str | None

    def __init__(self, _m: m.ImagingStudy) -> None:
        self._m = _m
        self.id, self.study_instance_uid = strawberry.ID(_m.id), _m.study_instance_uid
        self.accession_number = _m.accession_number
        self.modalities, self.description = _m.modalities, _m.description
        self.series_count, self.instance_count = _m.series_count, _m.instance_count
        self.started_at = local_iso(_m.started_at)

    @strawberry.field(description="The journaled messages (DICOM associations, HL7, FHIR) behind this study.")
    async def sources(self, info: Info) -> list[SourceMessage]:
        return await sources_of(self._m.id, info)


@strawberry.type
class Document:
    _m: strawberry.Private[m.Document]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def title(self) -> str:
        return self._m.title

    @strawberry.field
    def content_type(self) -> str:
        return self._m.content_type

    @strawberry.field
    def text(self) -> str | None:
        return self._m.text

    @strawberry.field
    def created_at(self, info: Info) -> str | None:
        return iso(self._m.created_at, info)


@strawberry.type(description="A structured symptom of a consultation.")
class Symptom:
    code: str | None
    text: str
    present: bool
    duration_days: float | None
    value: str | None
    unit: str | None

    @classmethod
    def of(cls, d: dict[str, object]) -> Symptom:
        def text(key: str) -> str | None:
            v = d.get(key)
            return None if v is None else str(v)

        days = d.get("duration_days", d.get("durationDays"))
        return cls(
            code=text("code"), text=text("text") or text("code") or "", present=d.get("present", True) is not False,
            duration_days=float(days) if isinstance(days, int | float) else None,
            value=text("value"), unit=text("unit"),
        )


@strawberry.type
class TimelineEvent:
    at: str
    type: str
    actor: str | None
    detail: str | None


@strawberry.type(description="A response-time target a consultation missed (the SLA watcher's escalation).")
class Escalation:
    phase: str = strawberry.field(description="`assignment` (submission to assignment) or `start` "
                                              "(assignment to start).")
    escalated_at: str


T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def connection(page: Page[object], wrap: type) -> Connection:  # type: ignore[type-arg]
    edges = [Edge(node=wrap(_m=item), cursor=cursor) for item, cursor in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next, has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None, end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=page.total,
    )
