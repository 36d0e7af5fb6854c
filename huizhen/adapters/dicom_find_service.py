"""C-FIND over the canonical store, and the instance lists C-MOVE and C-GET send.

A query runs in two halves. On the asyncio loop, the selective keys are
pushed down to SQL (:class:`StudyFilter`: UIDs, accession numbers,
modalities, a widened study-date window, patients found through the
identifier blind index) and the candidate studies and patients are loaded.
In the association thread, candidates become C-FIND records
(:mod:`huizhen.mappings.dicom_find`) and :class:`FindQuery` decides each one
with the full matching rules (wildcards, PN, exact date ranges in the
server's time zone). Only keys at or above the query level are pushed down.

Every query and retrieve is a read of PHI and is audited
(actor ``dicom:<calling AE>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from pydicom.dataset import Dataset

from huizhen.adapters.dicom_bridge import LoopBridge
from huizhen.adapters.dicom_peers import Peer
from huizhen.integration.errors import BadInput
from huizhen.integration.model import AuditEvent, Identifier, ImagingStudy, Patient
from huizhen.integration.repo import Repository
from huizhen.integration.repo.imaging import StoredInstance, StudyFilter
from huizhen.integration.store import Store
from huizhen.mappings.dicom_find import (
    find_response,
    instance_record,
    patient_record,
    series_record,
    study_record,
)
from huizhen.mappings.dicom_query import FindQuery, MatchKey, MatchKind, QueryLevel, Record, match_value
from huizhen.mappings.dicom_values import parse_date, temporal_bound

_RANK = {QueryLevel.PATIENT: 0, QueryLevel.STUDY: 1, QueryLevel.SERIES: 2, QueryLevel.IMAGE: 3}
_UNIQUE_KEY = {
    QueryLevel.PATIENT: "PatientID", QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID", QueryLevel.IMAGE: "SOPInstanceUID",
}
_EXACT = (MatchKind.SINGLE, MatchKind.UID_LIST)
_SCAN_LIMIT = 20_000  # candidate studies one query may examine in memory
_CHUNK = 500  # ids per IN (...) when loading candidates


@dataclass(frozen=True, slots=True)
class PatientKey:
    """PatientID values (exact) and the issuer they are under, if the query names one."""

    values: tuple[str, ...]
    system: str | None = None


@dataclass(frozen=True)
class Plan:
    filter: StudyFilter
    patient: PatientKey | None = None


@dataclass(frozen=True)
class FindResult:
    responses: list[Dataset]
    limited: bool  # more matched than the response limit


def plan(query: FindQuery) -> Plan:
    """The part of ``query`` the store can answer with indexes (pure)."""
    rank = _RANK[query.level]
    keys = query.keys

    def exact(keyword: str, min_rank: int) -> frozenset[str] | None:
        key = keys.get(keyword)
        if rank < min_rank or key is None or key.kind not in _EXACT:
            return None
        return frozenset(key.values)

    started_from, started_until = _date_window(keys.get("StudyDate")) if rank >= 1 else (None, None)
    modalities = exact("Modality", 2) if rank >= 2 else exact("ModalitiesInStudy", 1)
    patient = None
    pid, issuer = keys.get("PatientID"), keys.get("IssuerOfPatientID")
    if pid is not None and pid.kind is MatchKind.SINGLE:
        system = issuer.values[0] if issuer is not None and issuer.kind is MatchKind.SINGLE else None
        patient = PatientKey(pid.values, system)
    return Plan(
        StudyFilter(
            study_uids=exact("StudyInstanceUID", 1), accession_numbers=exact("AccessionNumber", 1),
            series_uids=exact("SeriesInstanceUID", 2), sop_instance_uids=exact("SOPInstanceUID", 3),
            modalities=modalities, started_from=started_from, started_until=started_until,
        ),
        patient,
    )


def _date_window(key: MatchKey | None) -> tuple[datetime | None, datetime | None]:
    """A UTC window surely holding every study whose local StudyDate is in the key's range."""
    if key is None or key.kind is not MatchKind.RANGE:
        return None, None
    low = parse_date(temporal_bound("DA", key.low, upper=False)) if key.low else None
    high = parse_date(temporal_bound("DA", key.high, upper=True)) if key.high else None
    # ±1 day more covers any UTC offset; the exact match happens on the record
    return (
        datetime.combine(low - timedelta(days=1), time(), UTC) if low else None,
        datetime.combine(high + timedelta(days=2), time(), UTC) if high else None,
    )


def records(
    query: FindQuery, studies: Sequence[ImagingStudy], patients: dict[str, Patient], *,
    default_issuer: str, tz: tzinfo,
) -> Iterator[Record]:
    """Candidate records of the query's level, conflicting instance versions left out (pure)."""
    level = query.level
    by_patient: dict[str, list[ImagingStudy]] = {}
    for raw in studies:
        study = _without_conflicts(raw)
        patient = patients.get(study.patient_id)
        if patient is None:
            continue
        ident = shown_identifier(patient, query, default_issuer)
        if level is QueryLevel.PATIENT:
            by_patient.setdefault(patient.id, []).append(study)
        elif level is QueryLevel.STUDY:
            yield study_record(study, patient, identifier=ident, tz=tz)
        else:
            for series in study.series:
                if level is QueryLevel.SERIES:
                    yield series_record(study, series, patient, identifier=ident, tz=tz)
                    continue
                for inst in series.instances:
                    yield instance_record(study, series, inst, patient, identifier=ident, tz=tz)
    for pid, held in by_patient.items():
        patient = patients[pid]
        yield patient_record(patient, identifier=shown_identifier(patient, query, default_issuer), studies=held)


def shown_identifier(patient: Patient, query: FindQuery, default_issuer: str) -> Identifier | None:
    """The identifier answered as PatientID: one the query matches, preferring the peer's own issuer."""
    found = list(patient.identifiers)
    for keyword, attr in (("PatientID", "value"), ("IssuerOfPatientID", "system")):
        key = query.keys.get(keyword)
        if key is not None:
            found = [i for i in found if match_value(key, getattr(i, attr))]
    return next((i for i in found if i.system == default_issuer), found[0] if found else None)


def _without_conflicts(study: ImagingStudy) -> ImagingStudy:
    series = [dataclasses.replace(s, instances=[i for i in s.instances if not i.conflict]) for s in study.series]
    return dataclasses.replace(study, series=series)


class QueryService:
    def __init__(self, store: Store, bridge: LoopBridge, *, tz: tzinfo, timeout: float, max_results: int) -> None:
        self.store = store
        self.bridge = bridge
        self.tz = tz
        self.timeout = timeout
        self.max_results = max_results

    def find(self, identifier: Dataset, peer: Peer) -> FindResult:
        """Matching response identifiers; :class:`BadInput` for an unusable identifier."""
        query = FindQuery.from_identifier(identifier)
        studies, patients = self.bridge.call(self._candidates(plan(query), peer, f"C-FIND {query.level}"),
                                             timeout=self.timeout)
        responses: list[Dataset] = []
        for record in records(query, studies, patients, default_issuer=peer.default_issuer, tz=self.tz):
            if query.matches(record):
                if len(responses) == self.max_results:
                    return FindResult(responses, limited=True)
                responses.append(find_response(identifier, record, level=query.level))
        return FindResult(responses, limited=len(studies) >= _SCAN_LIMIT)

    def retrievable(self, identifier: Dataset, peer: Peer, operation: str) -> list[StoredInstance]:
        """The instances a C-MOVE/C-GET identifier names by its level's unique key."""
        query = FindQuery.from_identifier(identifier)
        unique = _UNIQUE_KEY[query.level]
        key = query.keys.get(unique)
        if key is None or key.kind not in _EXACT:
            raise BadInput(f"a {query.level} level retrieve needs {unique} (single value or UID list)")
        return self.bridge.call(self._stored(plan(query), peer, f"{operation} {query.level}"), timeout=self.timeout)

    async def _candidates(
        self, p: Plan, peer: Peer, what: str
    ) -> tuple[list[ImagingStudy], dict[str, Patient]]:
        async with self.store.read() as repo:
            f = await resolve_patients(repo, p)
            ids = await repo.imaging.find_study_ids(f, limit=_SCAN_LIMIT)
            studies: list[ImagingStudy] = []
            for start in range(0, len(ids), _CHUNK):
                studies += await repo.clinical.studies_by_ids(ids[start : start + _CHUNK])
            patient_ids = sorted({s.patient_id for s in studies})
            patients: dict[str, Patient] = {}
            for start in range(0, len(patient_ids), _CHUNK):
                patients.update((x.id, x) for x in await repo.patients.by_ids(patient_ids[start : start + _CHUNK]))
        await self._audit(peer, what, len(studies))
        return studies, patients

    async def _stored(self, p: Plan, peer: Peer, what: str) -> list[StoredInstance]:
        async with self.store.read() as repo:
            f = await resolve_patients(repo, p)
            ids = await repo.imaging.find_study_ids(f, limit=_SCAN_LIMIT)
            found: list[StoredInstance] = []
            for start in range(0, len(ids), _CHUNK):
                found += await repo.imaging.stored_instances(ids[start : start + _CHUNK], f)
        await self._audit(peer, what, len(found))
        return found

    async def _audit(self, peer: Peer, what: str, count: int) -> None:
        async with self.store.write() as repo:
            await repo.audit.append(
                AuditEvent(
                    at=datetime.now(UTC), actor=f"dicom:{peer.ae_title}", action="read", outcome="success",
                    entity_type="ImagingStudy", detail=f"{what}: {count} candidates", source=peer.address,
                )
            )


async def resolve_patients(repo: Repository, p: Plan) -> StudyFilter:
    """The plan's filter with PatientID turned into patient ids (through the blind index)."""
    if p.patient is None:
        return p.filter
    ids: set[str] = set()
    for value in p.patient.values:
        ids |= await repo.imaging.patient_ids_by_identifier(value, p.patient.system)
    return dataclasses.replace(p.filter, patient_ids=frozenset(ids))
