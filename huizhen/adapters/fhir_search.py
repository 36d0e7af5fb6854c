"""FHIR searches over the canonical store, one page at a time.

Supported (and so declared in the CapabilityStatement, :data:`PARAMETERS`):
``Patient?identifier=&name=&_id=``, ``Observation?patient=&code=&date=``,
``Encounter?patient=``, ``ServiceRequest?status=&patient=``,
``ImagingStudy?patient=``; ``_count`` (at most 100) and ``_cursor`` (the
opaque position the ``next`` link carries). Names are matched exactly (they
are encrypted; the store keeps blind-index tokens of the full, family and
given names). A parameter Huizhen does not support is ignored and reported as
a warning in the searchset, as FHIR's lenient handling asks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

from huizhen.adapters.fhir_errors import FhirHttpError
from huizhen.adapters.fhir_read import consultation_resources, observations
from huizhen.integration.model import ConsultationStatus
from huizhen.integration.paging import MAX_PAGE, decode_cursor, encode_cursor
from huizhen.integration.repo import Repository
from huizhen.integration.repo.records import records_of
from huizhen.integration.repo.visibility import ConsultationRows, PatientRows
from huizhen.mappings.fhir import outbound, vocab
from huizhen.mappings.fhir.commands import COMPONENT_OF, logical_id_system
from huizhen.mappings.fhir.outcome import Issue, IssueType, warning
from huizhen.mappings.fhir.render import JSON

PARAMETERS: Final = {
    "Patient": ("_id", "identifier", "name"),
    "Observation": ("patient", "subject", "code", "date"),
    "Encounter": ("patient", "subject"),
    "ServiceRequest": ("status", "patient", "subject"),
    "ImagingStudy": ("patient", "subject"),
}
CONTROL: Final = frozenset({"_count", "_cursor", "_format"})
DEFAULT_COUNT: Final = 20
_DATE = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)")


@dataclass
class Found:
    resources: list[JSON]
    total: int
    next_cursor: str | None = None
    issues: list[Issue] = field(default_factory=list)
    ignored: frozenset[str] = frozenset()  # parameters not supported here: not applied, so not in the links


@dataclass(frozen=True)
class Query:
    resource_type: str
    params: Sequence[tuple[str, str]]
    sender: str
    tz: tzinfo
    visible: PatientRows | None = None  # the viewer's rows: totals and pages count only these (None: all)
    consultations: ConsultationRows | None = None  # the same for consultations (ServiceRequest, sessions)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]

    def one(self, *names: str) -> str | None:
        return next((v for k, v in self.params if k in names), None)

    @property
    def count(self) -> int:
        raw = self.one("_count") or str(DEFAULT_COUNT)
        if not raw.isdigit():
            raise FhirHttpError(400, IssueType.VALUE, f"_count must be a number, not {raw!r}", "_count")
        return min(int(raw), MAX_PAGE)


async def search(repo: Repository, query: Query) -> Found:
    known = PARAMETERS.get(query.resource_type)
    if known is None:
        raise FhirHttpError(400, IssueType.NOT_SUPPORTED, f"search on {query.resource_type} is not supported")
    ignored = sorted({k for k, _ in query.params if k not in known and k not in CONTROL})
    found = await _SEARCHES[query.resource_type](repo, query)
    found.issues += [warning(IssueType.NOT_SUPPORTED, f"search parameter {k!r} is not supported: ignored", k)
                     for k in ignored]
    found.ignored = frozenset(ignored)
    return found


async def _patients(repo: Repository, q: Query) -> Found:
    if (wanted := q.one("_id")) is not None:
        patient = await repo.patients.get(wanted)
        if patient is not None and not await _sees(repo, q, patient.id):
            patient = None
        return Found([outbound.patient(patient)] if patient else [], 1 if patient else 0)
    page = await repo.patients.search(
        search=q.one("name"), identifier=q.one("identifier"), first=q.count, after=q.one("_cursor"),
        visible=q.visible,
    )
    cursor = page.items[-1][1] if page.has_next and page.items else None
    return Found([outbound.patient(p) for p, _ in page.items], page.total, cursor)


async def _observations(repo: Repository, q: Query) -> Found:
    patient_id = await _patient_id(repo, q) if q.one("patient", "subject") else None
    if q.one("patient", "subject") and patient_id is None:
        return Found([], 0)
    codes = [_token(t) for value in q.all("code") for t in value.split(",") if t]
    after, before = _date_range(q.all("date"), q.tz)
    page = await records_of(repo).observations(
        patient_id=patient_id, codes=codes, after_time=after, before_time=before,
        without_identifier_system=COMPONENT_OF, first=q.count, after=q.one("_cursor"), visible=q.visible,
    )
    cursor = page.items[-1][1] if page.has_next and page.items else None
    return Found(await observations(repo, [o for o, _ in page.items]), page.total, cursor)


async def _encounters(repo: Repository, q: Query) -> Found:
    patient_id = await _required_patient(repo, q)
    if patient_id is None:
        return Found([], 0)
    visits = [outbound.encounter(e) for e in await records_of(repo).encounters_for_patient(patient_id)]
    consultations = await repo.consultations.for_patients([patient_id], q.consultations)
    sessions = [consultation_resources(c)[1] for c in consultations]
    return _offset_page([*visits, *sessions], q)


async def _studies(repo: Repository, q: Query) -> Found:
    patient_id = await _required_patient(repo, q)
    if patient_id is None:
        return Found([], 0)
    studies = (await repo.clinical.studies_for_patients([patient_id]))[patient_id]
    return _offset_page([outbound.imaging_study(s) for s in studies], q)


async def _requests(repo: Repository, q: Query) -> Found:
    patient_id = await _patient_id(repo, q) if q.one("patient", "subject") else None
    if q.one("patient", "subject") and patient_id is None:
        return Found([], 0)
    statuses: list[ConsultationStatus] = []
    for value in q.all("status"):
        for word in value.split(","):
            matching = [s for s, out in vocab.REQUEST_STATUS_OUT.items() if out == word]
            if not matching:
                raise FhirHttpError(400, IssueType.CODE_INVALID, f"no consultation has status {word!r}", "status")
            statuses += matching
    if q.all("status") and not statuses:
        return Found([], 0)
    page = await repo.consultations.search(
        statuses=statuses or None, patient_id=patient_id, first=q.count, after=q.one("_cursor"),
        visible=q.consultations,
    )
    cursor = page.items[-1][1] if page.has_next and page.items else None
    return Found([consultation_resources(c)[0] for c, _ in page.items], page.total, cursor)


_SEARCHES: Final = {
    "Patient": _patients,
    "Observation": _observations,
    "Encounter": _encounters,
    "ServiceRequest": _requests,
    "ImagingStudy": _studies,
}


def _offset_page(resources: list[JSON], q: Query) -> Found:
    start = int(decode_cursor(cursor, 1)[0]) if (cursor := q.one("_cursor")) else 0
    end = start + q.count
    return Found(resources[start:end], len(resources), encode_cursor(end) if end < len(resources) else None)


async def _required_patient(repo: Repository, q: Query) -> str | None:
    """The patient of a search that needs one, or None when unknown or hidden from the viewer (alike)."""
    if not q.one("patient", "subject"):
        raise FhirHttpError(400, IssueType.REQUIRED, f"{q.resource_type} search needs a patient", "patient")
    patient_id = await _patient_id(repo, q)
    return patient_id if patient_id is not None and await _sees(repo, q, patient_id) else None


async def _sees(repo: Repository, q: Query, patient_id: str) -> bool:
    return q.visible is None or await repo.patients.visible(patient_id, q.visible)


async def _patient_id(repo: Repository, q: Query) -> str | None:
    """``patient=`` as ``Patient/X``, ``X`` or a URL: a Huizhen id, or the sender's own logical id."""
    value = (q.one("patient", "subject") or "").rstrip("/")
    wanted = value.rsplit("/", 1)[-1]
    if "/" in value and value.rsplit("/", 2)[-2] != "Patient":
        return None
    found = await repo.patients.get(wanted) or await repo.patients.by_identifier(
        logical_id_system(q.sender, "Patient"), wanted
    )
    return found.id if found else None


def _token(value: str) -> tuple[str | None, str]:
    system, sep, code = value.rpartition("|")
    return (system or None, code) if sep else (None, value)


def _date_range(values: list[str], tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``date`` parameters (``ge2024-01-01``, ``2024-03``, ``lt2024-03-01T08:00:00+08:00``) as one range."""
    after: datetime | None = None
    before: datetime | None = None
    for value in values:
        m = _DATE.fullmatch(value)
        if m is None or (m[1] or "eq") not in ("eq", "gt", "lt", "ge", "le", "sa", "eb"):
            raise FhirHttpError(400, IssueType.VALUE, f"date must be [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss+zz:zz]]], "
                                f"not {value!r}", "date")
        try:
            start, end = _period(m[2], tz)
        except ValueError as exc:
            raise FhirHttpError(400, IssueType.VALUE, f"{value!r} is not a date: {exc}", "date") from exc
        prefix = m[1] or "eq"
        low = start if prefix in ("eq", "ge") else end if prefix in ("gt", "sa") else None
        high = end if prefix in ("eq", "le") else start if prefix in ("lt", "eb") else None
        if low is not None:
            after = max(after, low) if after else low
        if high is not None:
            before = min(before, high) if before else high
    return after, before


def _period(text: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants a date of some precision covers (end inclusive, to the microsecond)."""
    if "T" in text:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=tz)
        return moment, moment
    parts = [int(p) for p in text.split("-")]
    first = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    if len(parts) == 3:
        following = first + timedelta(days=1)
    elif len(parts) == 2:
        following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    else:
        following = date(first.year + 1, 1, 1)
    start = datetime.combine(first, time(0), tz)
    return start, datetime.combine(following, time(0), tz) - timedelta(microseconds=1)
