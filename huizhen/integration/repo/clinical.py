"""Encounters, observations and imaging studies of a patient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, distinct, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from huizhen.integration import tables as t
from huizhen.integration.model import (
    Coding,
    Document,
    Encounter,
    Identifier,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Observation,
    ReferenceRange,
)
from huizhen.integration.repo.base import (
    RepoBase,
    codings_from_json,
    codings_to_json,
    identifiers_from_json,
    identifiers_to_json,
    like_escape,
)
from huizhen.integration.repo.prepared import ByIds, Prepared, list_param

# Statements of the ingest hot path, built once (see repo/patients.py)
_e = t.encounters
_ENCOUNTER_BY_VISIT = Prepared(select(_e).where(_e.c.visit_idx == bindparam("visit")))
_INSERT_OBSERVATION = Prepared(t.observations.insert())


# What an Observation is read from, in this order: rows are unpacked by position (a RowMapping
# and a look-up per column cost more than the decryption, 250 rows a work-list page). Not
# ``value_quantity``: it copies the exact quantity kept in ``value_enc`` for SQL filters, and its
# Decimal conversion on SQLite was a tenth of the decoding.
OBSERVATION_COLUMNS = tuple(t.observations.c[name] for name in (
    "id", "patient_id", "code", "system", "display", "status", "value_type", "value_enc", "unit",
    "interpretation", "effective_at", "identifiers", "encounter_id", "consultation_id", "alternate_codes",
))

# An observation's alternate codings as text that SQL can search (a FHIR ``code`` token may name
# any of them): each coding ``<RS>system<US>code<US>display``, and a closing <RS>. Codes are
# plaintext as the code column is; a code is the one field between two <US>.
_RS, _US = "\x1e", "\x1f"


def codes_text(codings: Sequence[Coding]) -> str | None:
    if not codings:
        return None
    return "".join(f"{_RS}{_field(c.system)}{_US}{_field(c.code)}{_US}{_field(c.display)}" for c in codings) + _RS


def _field(value: str | None) -> str:
    if not value:
        return ""
    return value.replace(_RS, " ").replace(_US, " ") if _RS in value or _US in value else value


def codes_of(text: str | None) -> tuple[Coding, ...]:
    if not text:
        return ()
    found = []
    for part in text.split(_RS):
        if part:
            system, code, display = part.split(_US)
            found.append(Coding(code, system or None, display or None))
    return tuple(found)


def codes_pattern(system: str | None, code: str) -> str:
    """A LIKE pattern (escape character ``\\``) finding ``code`` of ``system`` (None: any) in
    :func:`codes_text`."""
    found = f"{_US}{like_escape(code)}{_US}"
    return f"%{_RS}{like_escape(system)}{found}%" if system else f"%{found}%"


# What an ImagingStudy and its series are read from, in this order (unpacked by position, as the
# observations: a Row's attribute look-up per column cost more than the rest of the building).
# The C-FIND / QIDO-RS attributes last (the header's date and time, StudyID encrypted and its
# plaintext before 0014): the API's summary reads, which show none of them, leave them out.
STUDY_COLUMNS = tuple(t.imaging_studies.c[name] for name in (
    "id", "patient_id", "study_instance_uid", "accession_number", "description", "started_at", "facility_id",
    "consultation_id", "referring_physician", "study_date", "study_time", "study_id_enc", "study_id",
))
_STUDY_SUMMARY_COLUMNS = STUDY_COLUMNS[:-4]
_SERIES_COLUMNS = tuple(t.imaging_series.c[name] for name in (
    "series_instance_uid", "study_id", "modality", "number", "description", "body_site",
))

# a page's studies, their series and the series' instances counted: on the driver (repo/prepared.py)
_STUDIES_BY_IDS = ByIds(lambda ids_in: select(*STUDY_COLUMNS).where(ids_in(t.imaging_studies.c.id)))
_STUDY_SUMMARIES_BY_IDS = ByIds(lambda ids_in: select(*_STUDY_SUMMARY_COLUMNS).where(ids_in(t.imaging_studies.c.id)))
_SERIES_OF = ByIds(
    lambda ids_in: select(*_SERIES_COLUMNS).where(ids_in(t.imaging_series.c.study_id))
    .order_by(t.imaging_series.c.number)
)
_i = t.imaging_instances.c
_INSTANCES_COUNTED = ByIds(
    lambda ids_in: select(_i.series_instance_uid, func.count(distinct(_i.sop_instance_uid)))
    .where(ids_in(_i.series_instance_uid)).group_by(_i.series_instance_uid)
)


def _observations_of_patients(ids_in: Any, *, latest: bool) -> Any:
    """Newest first per patient (undated last); with ``latest`` the first N of each, ranked by a
    window over the whole rows (PostgreSQL ranks them faster than it joins narrow ranked rows
    back: 0.65 against 0.9 ms for a page's 50 patients)."""
    o = t.observations.c
    order = (o.effective_at.is_(None), o.effective_at.desc(), o.id)
    patients = ids_in(o.patient_id)
    if not latest:
        return select(*OBSERVATION_COLUMNS).where(patients).order_by(o.patient_id, *order)
    rank = func.row_number().over(partition_by=o.patient_id, order_by=order).label("rank")
    ranked = select(t.observations, rank).where(patients).subquery()
    return (
        select(*(ranked.c[c.name] for c in OBSERVATION_COLUMNS))
        .where(ranked.c.rank <= bindparam("latest")).order_by(ranked.c.patient_id, ranked.c.rank)
    )


# built once (a statement's construction cost more than SQLite's work for a page's 50 patients),
# run on the driver (repo/prepared.py)
_ALL_OBSERVATIONS = ByIds(lambda ids_in: _observations_of_patients(ids_in, latest=False), "patient_ids")
_LATEST_OBSERVATIONS = ByIds(lambda ids_in: _observations_of_patients(ids_in, latest=True), "patient_ids")

# SQLite, the latest N of each patient: the patients as one JSON array (``json_each``) and each
# one's N rows by a LIMIT in a subquery run once per patient, on the index on (patient_id,
# effective_at); the rows come back in the order the window above ranks them. Against a window:
# no ranking of every row of the 50 patients (a patient with years of results costs N look-ups, not
# a sort of all of them), and one statement of fixed text, so it runs on the driver (repo/prepared.py)
# rather than through SQLAlchemy's expanding IN (0.9-1.5 ms against 1.3-3.1 ms for a page's 50
# patients with 5 each, same rows in the same order).
_LATEST_OBSERVATIONS_SQLITE = Prepared(text(
    "SELECT " + ", ".join(f"observations.{c.name}" for c in OBSERVATION_COLUMNS)
    + " FROM json_each(:patient_ids) AS p JOIN observations ON observations.rowid IN ("
    " SELECT o.rowid FROM observations AS o WHERE o.patient_id = p.value"
    " ORDER BY o.effective_at IS NULL, o.effective_at DESC, o.id LIMIT :latest)"
    " ORDER BY p.key, observations.effective_at IS NULL, observations.effective_at DESC, observations.id"
).columns(*OBSERVATION_COLUMNS))


def _upsert_encounter(insert: Any) -> Prepared:
    stmt = insert(_e)
    return Prepared(stmt.on_conflict_do_update(
        index_elements=[_e.c.id], set_={c.name: stmt.excluded[c.name] for c in _e.c if c.name != "id"}
    ))


# one statement whether the visit is new or known (the id decides), instead of a look then a write
_UPSERT_ENCOUNTER = {"sqlite": _upsert_encounter(sqlite.insert), "postgresql": _upsert_encounter(postgresql.insert)}
_KEPT_WHEN_EMPTY = ("status", "class_code", "department", "location", "attending_id")


def _merge_encounter(insert: Any, *, own_facility: bool) -> Prepared:
    """Add a visit, or merge it into the stored one with its visit number: the unique visit index
    decides, in one round trip. The merge is :meth:`Applier._upsert_encounter`'s: what the message
    leaves empty keeps what is stored, the stored id and identifiers stay, the patient is the message's;
    the facility is the encounter's own, else the stored one, else the one given (``own_facility``)."""
    stmt = insert(_e)
    new = stmt.excluded
    merged: dict[str, Any] = {c: func.coalesce(func.nullif(new[c], ""), _e.c[c]) for c in _KEPT_WHEN_EMPTY}
    merged.update(start=func.coalesce(new.start, _e.c.start), end=func.coalesce(new.end, _e.c.end),
                  patient_id=new.patient_id)
    merged["facility_id"] = new.facility_id if own_facility else func.coalesce(_e.c.facility_id, new.facility_id)
    return Prepared(stmt.on_conflict_do_update(index_elements=[_e.c.visit_idx], set_=merged).returning(_e.c.id))


_MERGE_ENCOUNTER = {
    (name, own): _merge_encounter(insert, own_facility=own)
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
    for own in (False, True)
}


class Clinical(RepoBase):
    async def save_encounter(self, e: Encounter) -> Encounter:
        values = {
            "id": e.id, "patient_id": e.patient_id, "identifiers": identifiers_to_json(e.identifiers),
            "visit_idx": self.keyring.blind_index(e.identifiers[0].system, e.identifiers[0].value)
            if e.identifiers else None,
            "status": e.status, "class_code": e.class_code, "facility_id": e.facility_id,
            "department": e.department, "location": e.location, "attending_id": e.attending_id,
            "start": e.start, "end": e.end,
        }
        await self.run(_UPSERT_ENCOUNTER[self.dialect], values)
        return e

    async def merge_encounter(self, e: Encounter, *, own_facility: bool) -> str:
        """Add ``e`` (one visit number) or merge it into the stored encounter with that visit
        number (see :func:`_merge_encounter`); the id of the one stored."""
        visit = e.identifiers[0]
        rows = await self.run(_MERGE_ENCOUNTER[(self.dialect, own_facility)], {
            "id": e.id, "patient_id": e.patient_id, "identifiers": identifiers_to_json(e.identifiers),
            "visit_idx": self.keyring.blind_index(visit.system, visit.value),
            "status": e.status, "class_code": e.class_code, "facility_id": e.facility_id,
            "department": e.department, "location": e.location, "attending_id": e.attending_id,
            "start": e.start, "end": e.end,
        })
        return str(rows[0]["id"])

    async def encounter_by_visit(self, visit: Identifier) -> Encounter | None:
        key = self.keyring.blind_index(visit.system, visit.value)
        rows = await self.run(_ENCOUNTER_BY_VISIT, {"visit": key})
        if not rows:
            return None
        m = rows[0]
        return Encounter(
            id=m["id"], patient_id=m["patient_id"], identifiers=identifiers_from_json(m["identifiers"]),
            status=m["status"], class_code=m["class_code"], facility_id=m["facility_id"], department=m["department"],
            location=m["location"], attending_id=m["attending_id"], start=m["start"], end=m["end"],
        )

    async def add_observations(
        self, observations: Sequence[Observation], *, patient_id: str | None = None,
        consultation_id: str | None = None,
    ) -> None:
        """Insert ``observations``; ``patient_id`` and ``consultation_id``, when given, are stored
        in place of theirs (the ingest path resolves them per message and leaves the mapped ones as they are)."""
        if observations:
            rows = [self._obs_values(o) for o in observations]
            if patient_id is not None or consultation_id is not None:
                for row in rows:
                    row["patient_id"] = patient_id or row["patient_id"]
                    row["consultation_id"] = consultation_id or row["consultation_id"]
            await self.run_many(_INSERT_OBSERVATION, rows)

    async def observations_for_patients(
        self, patient_ids: Sequence[str], *, latest: int | None = None
    ) -> dict[str, list[Observation]]:
        """Newest first per patient (undated last); ``latest`` keeps the first N of each, in SQL,
        so a patient with years of lab results costs N rows, not all of them."""
        out: dict[str, list[Observation]] = {pid: [] for pid in patient_ids}
        ids = list(out)
        if latest is None:
            found = await self.run_ids_values(_ALL_OBSERVATIONS, ids)
        elif self.dialect == "sqlite":
            found = await self.run_values(
                _LATEST_OBSERVATIONS_SQLITE, {"patient_ids": list_param("sqlite", ids), "latest": max(latest, 0)}
            )
        else:
            found = await self.run_ids_values(_LATEST_OBSERVATIONS, ids, latest=latest)
        for o in map(self._observation, found):
            out[o.patient_id].append(o)
        return out

    async def observations_by_ids(self, ids: Sequence[str]) -> list[Observation]:
        rows = await self.conn.execute(select(*OBSERVATION_COLUMNS).where(t.observations.c.id.in_(list(ids))))
        return [self._observation(r) for r in rows]

    async def studies_for_patients(
        self, patient_ids: Sequence[str], *, instances: bool = True
    ) -> dict[str, list[ImagingStudy]]:
        """Newest first per patient; ``instances=False`` counts each series' instances instead of
        reading them (:attr:`ImagingSeries.counted`) and leaves the C-FIND attributes out (StudyID,
        encrypted, and the header's date and time: None; the API's summary, this read's one user,
        shows none of them)."""
        rows = (
            await self.conn.execute(
                select(*(STUDY_COLUMNS if instances else _STUDY_SUMMARY_COLUMNS))
                .where(t.imaging_studies.c.patient_id.in_(list(patient_ids)))
                .order_by(t.imaging_studies.c.started_at.desc(), t.imaging_studies.c.id)
            )
        ).all()
        out: dict[str, list[ImagingStudy]] = {pid: [] for pid in patient_ids}
        for study in await self._studies(rows, instances):
            out[study.patient_id].append(study)
        return out

    async def studies_by_ids(self, ids: Sequence[str], *, instances: bool = True) -> list[ImagingStudy]:
        """``instances=False``: see :meth:`studies_for_patients`."""
        statement = _STUDIES_BY_IDS if instances else _STUDY_SUMMARIES_BY_IDS
        return await self._studies(await self.run_ids_values(statement, ids), instances)

    async def documents_by_ids(self, ids: Sequence[str]) -> list[Document]:
        rows = await self.conn.execute(
            select(t.documents).where(t.documents.c.id.in_(list(ids))).order_by(t.documents.c.created_at.desc())
        )
        return [
            Document(
                id=m["id"], patient_id=m["patient_id"], title=m["title"], content_type=m["content_type"],
                text=self.keyring.decrypt_text(m["text_enc"]), object_key=m["object_key"],
                identifiers=identifiers_from_json(m["identifiers"]), consultation_id=m["consultation_id"],
                created_at=m["created_at"],
            )
            for m in (r._mapping for r in rows)
        ]

    async def _studies(self, rows: Sequence[Any], instances: bool = True) -> list[ImagingStudy]:
        """The studies of rows of :data:`STUDY_COLUMNS` (``instances=False``: of the summary's
        columns, without the C-FIND ones), with their series and instances (or their instances' number)."""
        ids = [r[0] for r in rows]
        series: dict[str, list[ImagingSeries]] = {i: [] for i in ids}
        by_uid: dict[str, ImagingSeries] = {}
        if ids:
            for uid, owner, modality, number, description, body_site in await self.run_ids_values(_SERIES_OF, ids):
                se = ImagingSeries(uid, modality, number, description, body_site)
                series[owner].append(se)
                by_uid[uid] = se
        if by_uid and not instances:
            for se in by_uid.values():
                se.counted = 0  # a series whose instances are all gone has no row in the count
            for uid, n in await self.run_ids_values(_INSTANCES_COUNTED, list(by_uid)):
                by_uid[uid].counted = n
        elif by_uid:
            for i in await self.conn.execute(
                select(t.imaging_instances)
                .where(t.imaging_instances.c.series_instance_uid.in_(list(by_uid)))
                .order_by(t.imaging_instances.c.number, t.imaging_instances.c.id)
            ):
                by_uid[i.series_instance_uid].instances.append(
                    ImagingInstance(i.sop_instance_uid, i.sop_class_uid, i.number, i.object_key, i.size,
                                    i.sha256, bool(i.conflict), i.transfer_syntax_uid)
                )
        studies = [
            ImagingStudy(
                id=id_, patient_id=patient_id, study_instance_uid=uid, accession_number=accession,
                description=description, started_at=started_at, facility_id=facility_id,
                consultation_id=consultation_id, series=series[id_], referring_physician=referring,
            )
            for (id_, patient_id, uid, accession, description, started_at, facility_id, consultation_id, referring,
                 *_) in rows
        ]
        if instances:
            for study, (*_, study_date, study_time, sealed, plain) in zip(studies, rows, strict=True):
                study.study_date, study.study_time = study_date, study_time
                study.study_id = self.sealed_text(sealed, plain)
        return studies

    def _obs_values(self, o: Observation) -> dict[str, Any]:
        rr = o.reference_range
        clinical = {
            # the exact decimal as sent ("5.00" keeps its precision); the column is for queries
            "quantity": str(o.value_quantity) if o.value_quantity is not None else None,
            "string": o.value_string,
            "coding": [o.value_coding.code, o.value_coding.system, o.value_coding.display] if o.value_coding else None,
            "range": [str(rr.low) if rr and rr.low is not None else None,
                      str(rr.high) if rr and rr.high is not None else None, rr.text if rr else None] if rr else None,
        }
        if o.code_text or o.category or o.issued or o.value_alternates:
            clinical.update(_details(o))
        return {
            "id": o.id, "patient_id": o.patient_id, "code": o.code.code, "system": o.code.system,
            "display": o.code.display, "status": o.status, "value_type": o.value_type,
            "value_quantity": o.value_quantity, "value_enc": self.keyring.encrypt_json(clinical),
            "unit": o.unit, "interpretation": o.interpretation, "effective_at": o.effective_at,
            "identifiers": identifiers_to_json(o.identifiers), "encounter_id": o.encounter_id,
            "consultation_id": o.consultation_id, "alternate_codes": codes_text(o.alternate_codes),
        }

    def _observation(self, row: Any) -> Observation:
        """An Observation from a row of :data:`OBSERVATION_COLUMNS`."""
        (id_, patient_id, code, system, display, status, value_type, value_enc, unit, interpretation,
         effective_at, identifiers, encounter_id, consultation_id, alternates) = row
        clinical = self.keyring.decrypt_json(value_enc) if value_enc else {}
        quantity, coding, rng = clinical.get("quantity"), clinical.get("coding"), clinical.get("range")
        return Observation(
            id=id_, patient_id=patient_id, code=Coding(code, system, display), status=status, value_type=value_type,
            value_quantity=Decimal(quantity) if quantity is not None else None,
            value_string=clinical.get("string"),
            value_coding=Coding(coding[0], coding[1], coding[2]) if coding else None,
            unit=unit,
            reference_range=ReferenceRange(
                Decimal(rng[0]) if rng[0] else None, Decimal(rng[1]) if rng[1] else None, rng[2]
            ) if rng else None,
            interpretation=interpretation, effective_at=effective_at,
            identifiers=identifiers_from_json(identifiers), encounter_id=encounter_id,
            consultation_id=consultation_id, alternate_codes=codes_of(alternates),
            **(_details_of(clinical) if "details" in clinical else {}),
        )


def _details(o: Observation) -> dict[str, Any]:
    """The rest of what the source said (code text, category, issued, the value's other codings),
    kept in the encrypted value beside it: under one key, present only when there is any."""
    details = {
        "text": o.code_text, "category": codings_to_json(o.category),
        "issued": o.issued.isoformat() if o.issued else None, "value_codes": codings_to_json(o.value_alternates),
    }
    return {"details": {k: v for k, v in details.items() if v is not None}}


def _details_of(clinical: dict[str, Any]) -> dict[str, Any]:
    d = clinical["details"]
    return {
        "code_text": d.get("text"), "category": codings_from_json(d.get("category")),
        "issued": datetime.fromisoformat(d["issued"]) if d.get("issued") else None,
        "value_alternates": codings_from_json(d.get("value_codes")),
    }
