"""Clinical records beyond what :mod:`.clinical` reads: what the FHIR edge writes and searches.

Encounters by id and by patient, observations searched by code and time, and
documents. Built from a :class:`~huizhen.integration.repo.Repository` by
:func:`records_of`, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, cast, func, or_, select

from huizhen.integration import tables as t
from huizhen.integration.model import Document, Encounter, Identifier, Observation
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, keyset_after, page_size
from huizhen.integration.repo.base import RepoBase, identifiers_from_json, identifiers_to_json, like_escape
from huizhen.integration.repo.clinical import OBSERVATION_COLUMNS, Clinical, codes_pattern
from huizhen.integration.repo.visibility import PatientRows, visible_patient_ids

if TYPE_CHECKING:
    from huizhen.integration.repo import Repository

_EPOCH = datetime.fromisoformat("1900-01-01T00:00:00+00:00")  # sorts observations without a time last


def records_of(repo: Repository) -> Records:
    return Records(repo.conn, repo.patients.keyring, repo.dialect)


class Records(RepoBase):
    # encounters

    async def encounter(self, encounter_id: str) -> Encounter | None:
        row = (await self.conn.execute(select(t.encounters).where(t.encounters.c.id == encounter_id))).first()
        return _encounter(row._mapping) if row else None

    async def encounters_for_patient(self, patient_id: str) -> list[Encounter]:
        rows = await self.conn.execute(
            select(t.encounters)
            .where(t.encounters.c.patient_id == patient_id)
            .order_by(t.encounters.c.start.desc(), t.encounters.c.id)
        )
        return [_encounter(r._mapping) for r in rows]

    # observations

    async def observations(
        self, *, patient_id: str | None = None, codes: Sequence[tuple[str | None, str]] = (),
        after_time: datetime | None = None, before_time: datetime | None = None,
        without_identifier_system: str | None = None, first: int | None = None, after: str | None = None,
        visible: PatientRows | None = None,
    ) -> Page[Observation]:
        """Newest first. ``codes`` are (system or None for any, code) alternatives; times are inclusive;
        observations holding an identifier of ``without_identifier_system`` are left out; ``visible`` limits
        them (and the total) to the patients a viewer may see."""
        c = t.observations.c
        q = select(*OBSERVATION_COLUMNS)
        if visible is not None:
            q = q.where(c.patient_id.in_(visible_patient_ids(visible)))
        if patient_id is not None:
            q = q.where(c.patient_id == patient_id)
        if codes:  # the code, or one of its alternate codings (a FHIR token matches any coding)
            q = q.where(or_(*(
                or_(and_(c.code == code, c.system == system) if system else c.code == code,
                    c.alternate_codes.like(codes_pattern(system, code), "\\"))
                for system, code in codes
            )))
        if after_time is not None:
            q = q.where(c.effective_at >= after_time)
        if before_time is not None:
            q = q.where(c.effective_at <= before_time)
        if without_identifier_system:
            q = q.where(cast(c.identifiers, String).not_like(f"%{without_identifier_system}%"))
        total = (await self.conn.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        size = page_size(first)
        when = func.coalesce(c.effective_at, _EPOCH)
        if after:
            at, oid = decode_cursor(after, 2)
            q = q.where(keyset_after(when, c.id, datetime.fromisoformat(at), oid, descending=True))
        rows = (await self.conn.execute(q.order_by(when.desc(), c.id.desc()).limit(size + 1))).all()
        clinical = Clinical(self.conn, self.keyring, self.dialect)
        items = [clinical._observation(r) for r in rows[:size]]  # the one way rows become Observations
        return Page(
            items=[(o, encode_cursor((o.effective_at or _EPOCH).isoformat(), o.id)) for o in items],
            total=total, has_next=len(rows) > size, has_previous=after is not None,
        )

    async def observations_with_identifier(self, patient_id: str, ident: Identifier) -> list[Observation]:
        """Observations of a patient holding ``ident`` (identifiers are JSON: matched here, not in SQL)."""
        c = t.observations.c
        q = select(*OBSERVATION_COLUMNS).where(c.patient_id == patient_id)
        if ident.value.isascii():  # JSON text may escape other characters
            q = q.where(cast(c.identifiers, String).like(f"%{like_escape(ident.value)}%", "\\"))
        rows = await self.conn.execute(q)
        clinical = Clinical(self.conn, self.keyring, self.dialect)
        found = [clinical._observation(r) for r in rows]
        return [o for o in found if ident in o.identifiers]

    async def observations_marked(self, patient_ids: Sequence[str], system: str) -> list[Observation]:
        """Observations of these patients holding an identifier of ``system`` (any value)."""
        c = t.observations.c
        rows = await self.conn.execute(
            select(*OBSERVATION_COLUMNS).where(
                c.patient_id.in_(list(patient_ids)),
                cast(c.identifiers, String).like(f"%{like_escape(system)}%", "\\"),
            ).order_by(c.id)
        )
        clinical = Clinical(self.conn, self.keyring, self.dialect)
        found = [clinical._observation(r) for r in rows]
        return [o for o in found if any(i.system == system for i in o.identifiers)]

    # documents

    async def save_document(self, d: Document) -> Document:
        values = {
            "patient_id": d.patient_id, "title": d.title, "content_type": d.content_type,
            "text_enc": self.keyring.encrypt_text(d.text), "object_key": d.object_key,
            "identifiers": identifiers_to_json(d.identifiers), "consultation_id": d.consultation_id,
            "created_at": d.created_at,
        }
        exists = (await self.conn.execute(select(t.documents.c.id).where(t.documents.c.id == d.id))).first()
        if exists:
            await self.conn.execute(t.documents.update().where(t.documents.c.id == d.id).values(**values))
        else:
            await self.conn.execute(t.documents.insert().values(id=d.id, **values))
        return d

    async def document(self, document_id: str) -> Document | None:
        found = await self._documents(t.documents.c.id == document_id)
        return found[0] if found else None

    async def documents_for_patient(self, patient_id: str) -> list[Document]:
        return await self._documents(t.documents.c.patient_id == patient_id)

    async def document_with_identifier(self, patient_id: str, idents: Sequence[Identifier]) -> Document | None:
        for d in await self.documents_for_patient(patient_id):
            if any(i in d.identifiers for i in idents):
                return d
        return None

    async def _documents(self, where: Any) -> list[Document]:
        rows = await self.conn.execute(
            select(t.documents).where(where).order_by(t.documents.c.created_at.desc(), t.documents.c.id)
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


def _encounter(m: Any) -> Encounter:
    return Encounter(
        id=m["id"], patient_id=m["patient_id"], identifiers=identifiers_from_json(m["identifiers"]),
        status=m["status"], class_code=m["class_code"], facility_id=m["facility_id"], department=m["department"],
        location=m["location"], attending_id=m["attending_id"], start=m["start"], end=m["end"],
    )

