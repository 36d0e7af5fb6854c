"""Imaging studies, series and instances: upserts by DICOM UID and the C-FIND/C-MOVE queries.

Studies are keyed by StudyInstanceUID, series by SeriesInstanceUID; an
instance has one row per distinct content (SOP Instance UID + SHA-256), so a
repeated C-STORE of the same bytes adds nothing and the same UID with other
bytes adds a row flagged ``conflict``. Counts are never stored: they are
counted from the rows.

Queries take a :class:`StudyFilter` of the selective keys a C-FIND can push
down (UIDs, accession numbers, modalities, a time window, patients found by
identifier); the caller matches the rest in memory.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from huizhen.integration import tables as t
from huizhen.integration.model import ImagingInstance, ImagingSeries, ImagingStudy
from huizhen.integration.repo.base import RepoBase
from huizhen.integration.repo.prepared import Prepared


class InstanceOutcome(enum.StrEnum):
    CREATED = "CREATED"  # a new instance
    DUPLICATE = "DUPLICATE"  # these exact bytes were indexed before
    CONFLICT = "CONFLICT"  # the UID was indexed before with other bytes; kept and flagged


@dataclass(frozen=True, slots=True)
class StudyRef:
    id: str
    patient_id: str
    consultation_id: str | None


@dataclass(frozen=True, slots=True)
class StudyFilter:
    """Keys a query can push down; ``None`` means "any", an empty set matches nothing."""

    patient_ids: Collection[str] | None = None
    study_uids: Collection[str] | None = None
    accession_numbers: Collection[str] | None = None
    series_uids: Collection[str] | None = None
    sop_instance_uids: Collection[str] | None = None
    modalities: Collection[str] | None = None
    started_from: datetime | None = None  # inclusive
    started_until: datetime | None = None  # inclusive

    @property
    def empty(self) -> bool:
        sets = (self.patient_ids, self.study_uids, self.accession_numbers, self.series_uids,
                self.sop_instance_uids, self.modalities)
        return any(s is not None and not s for s in sets)


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What a retrieve needs to send one instance."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    object_key: str


class Imaging(RepoBase):
    async def study_ref(self, study_instance_uid: str) -> StudyRef | None:
        s = t.imaging_studies.c
        row = (
            await self.conn.execute(
                select(s.id, s.patient_id, s.consultation_id).where(s.study_instance_uid == study_instance_uid)
            )
        ).first()
        return StudyRef(row.id, row.patient_id, row.consultation_id) if row else None

    async def add_study(self, study: ImagingStudy) -> tuple[StudyRef, bool]:
        """Insert the study row unless its UID is known; returns the row and whether it is new."""
        stmt = (
            self.upsert_into(t.imaging_studies)
            .values(
                id=study.id, patient_id=study.patient_id, study_instance_uid=study.study_instance_uid,
                accession_number=study.accession_number, description=study.description,
                started_at=study.started_at, facility_id=study.facility_id, consultation_id=study.consultation_id,
                study_id_enc=self.keyring.encrypt_text(study.study_id), referring_physician=study.referring_physician,
                study_date=study.study_date, study_time=study.study_time,
            )
            .on_conflict_do_nothing(index_elements=[t.imaging_studies.c.study_instance_uid])
        )
        created = (await self.conn.execute(stmt)).rowcount == 1
        ref = await self.study_ref(study.study_instance_uid)
        if ref is None:  # not reachable: the row was inserted or already there
            raise LookupError(f"study {study.study_instance_uid} vanished during its upsert")
        return ref, created

    async def link_consultation(self, study_id: str, consultation_id: str) -> None:
        await self.conn.execute(
            t.imaging_studies.update().where(t.imaging_studies.c.id == study_id).values(consultation_id=consultation_id)
        )

    async def add_series(self, study_id: str, series: ImagingSeries) -> None:
        """Insert the series row unless its UID is known (the first instance's header wins)."""
        await self.conn.execute(
            self.upsert_into(t.imaging_series)
            .values(
                series_instance_uid=series.series_instance_uid, study_id=study_id, modality=series.modality,
                number=series.number, description=series.description, body_site=series.body_site,
            )
            .on_conflict_do_nothing(index_elements=[t.imaging_series.c.series_instance_uid])
        )

    async def add_instance(self, series_instance_uid: str, inst: ImagingInstance) -> InstanceOutcome:
        """Index one stored content of an instance; sets ``inst.conflict``."""
        known = [r["sha256"] for r in await self.run(_CONTENTS, {"uid": inst.sop_instance_uid})]
        if inst.sha256 in known or (inst.sha256 is None and known):
            return InstanceOutcome.DUPLICATE  # a registration without content (FHIR) adds nothing to known content
        contents = [sha for sha in known if sha is not None]
        if known and not contents and await self._fill_registered(inst):
            return InstanceOutcome.CREATED  # the first real content of an instance registered without content
        inst.conflict = bool(contents)
        values = {
            "series_instance_uid": series_instance_uid, "sop_instance_uid": inst.sop_instance_uid,
            "sop_class_uid": inst.sop_class_uid, "number": inst.number, "object_key": inst.object_key,
            "size": inst.size, "sha256": inst.sha256, "conflict": inst.conflict,
            "transfer_syntax_uid": inst.transfer_syntax_uid,
        }
        if await self.run_count(_insert_instance(self.dialect), values) != 1:
            return InstanceOutcome.DUPLICATE  # a concurrent writer indexed the same bytes first
        return InstanceOutcome.CONFLICT if inst.conflict else InstanceOutcome.CREATED

    async def _fill_registered(self, inst: ImagingInstance) -> bool:
        """Give an instance registered without content (a FHIR ImagingStudy) its first stored content."""
        i = t.imaging_instances.c
        values = {"object_key": inst.object_key, "size": inst.size, "sha256": inst.sha256, "conflict": False}
        values |= {name: value for name, value in (("sop_class_uid", inst.sop_class_uid), ("number", inst.number),
                   ("transfer_syntax_uid", inst.transfer_syntax_uid)) if value is not None}
        where = (i.sop_instance_uid == inst.sop_instance_uid) & i.sha256.is_(None)
        first = select(func.min(i.id)).where(where).scalar_subquery()
        result = await self.conn.execute(update(t.imaging_instances).where(i.id == first).values(values))
        inst.conflict = False
        return bool(result.rowcount)

    async def patient_ids_by_identifier(self, value: str, system: str | None = None) -> set[str]:
        """Patients holding an identifier ``value`` (under ``system`` when given)."""
        pi = t.patient_identifiers.c
        if system is None:
            cond = pi.value_idx == self.keyring.blind_index(value)
        else:
            cond = pi.system_value_idx == self.keyring.blind_index(system, value)
        return set((await self.conn.execute(select(pi.patient_id).where(cond))).scalars())

    async def find_study_ids(self, f: StudyFilter, *, limit: int) -> list[str]:
        """Ids of the studies passing ``f``, oldest first, at most ``limit``."""
        if f.empty:
            return []
        s, se, i = t.imaging_studies.c, t.imaging_series.c, t.imaging_instances.c
        q = select(s.id)
        for col, values in ((s.patient_id, f.patient_ids), (s.study_instance_uid, f.study_uids),
                            (s.accession_number, f.accession_numbers)):
            if values is not None:
                q = q.where(col.in_(list(values)))
        if f.started_from is not None:
            q = q.where(s.started_at >= f.started_from)
        if f.started_until is not None:
            q = q.where(s.started_at <= f.started_until)
        series_q = select(se.study_id)
        if f.series_uids is not None:
            series_q = series_q.where(se.series_instance_uid.in_(list(f.series_uids)))
        if f.modalities is not None:
            series_q = series_q.where(se.modality.in_(list(f.modalities)))
        if f.sop_instance_uids is not None:
            series_q = series_q.where(
                se.series_instance_uid.in_(
                    select(i.series_instance_uid).where(i.sop_instance_uid.in_(list(f.sop_instance_uids)))
                )
            )
        if series_q.whereclause is not None:
            q = q.where(s.id.in_(series_q))
        rows = await self.conn.execute(q.order_by(s.started_at, s.id).limit(limit))
        return list(rows.scalars())

    async def stored_instances(self, study_ids: Sequence[str], f: StudyFilter) -> list[StoredInstance]:
        """The first-stored content of each instance of these studies that passes ``f``'s
        series and instance keys (conflicting later contents are kept, not served)."""
        if not study_ids or f.empty:
            return []
        s, se, i = t.imaging_studies.c, t.imaging_series.c, t.imaging_instances.c
        q = (
            select(s.study_instance_uid, se.series_instance_uid, i.sop_instance_uid, i.sop_class_uid,
                   i.transfer_syntax_uid, i.object_key)
            .select_from(t.imaging_instances.join(t.imaging_series).join(t.imaging_studies))
            .where(s.id.in_(list(study_ids)), i.conflict.is_(False), i.object_key.is_not(None))
        )
        if f.series_uids is not None:
            q = q.where(se.series_instance_uid.in_(list(f.series_uids)))
        if f.modalities is not None:
            q = q.where(se.modality.in_(list(f.modalities)))
        if f.sop_instance_uids is not None:
            q = q.where(i.sop_instance_uid.in_(list(f.sop_instance_uids)))
        rows = await self.conn.execute(q.order_by(s.started_at, s.id, se.number, i.number, i.id))
        return [_stored(r) for r in rows]


# the per-instance statements, built once: every C-STORE runs them
_CONTENTS = Prepared(
    select(t.imaging_instances.c.sha256).where(t.imaging_instances.c.sop_instance_uid == bindparam("uid"))
)


@functools.cache
def _insert_instance(dialect: str) -> Prepared:
    i = t.imaging_instances.c
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return Prepared(insert(t.imaging_instances).on_conflict_do_nothing(index_elements=[i.sop_instance_uid, i.sha256]))


def _stored(r: Any) -> StoredInstance:
    return StoredInstance(r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid, r.sop_class_uid,
                          r.transfer_syntax_uid, r.object_key)
