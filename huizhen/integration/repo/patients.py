"""Patients: PHI encrypted at rest, found by identifier or name through the blind index."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select

from huizhen.integration import tables as t
from huizhen.integration.errors import Conflict
from huizhen.integration.model import Gender, Identifier, Patient
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, keyset_after, page_size
from huizhen.integration.repo.base import RepoBase, name_from_json, name_to_json, now

_MAX_MERGE_HOPS = 16


class Patients(RepoBase):
    async def save(self, p: Patient) -> Patient:
        """Insert or update ``p`` with its identifiers and search tokens.

        An identifier already held by another patient is a :class:`Conflict`:
        one (system, value) names one person.
        """
        at = now()
        exists = (await self.conn.execute(select(t.patients.c.id).where(t.patients.c.id == p.id))).first()
        values = {
            "facility_id": p.facility_id,
            "gender": p.gender.value if p.gender else None,
            "phi_enc": self.keyring.encrypt_json(_phi(p)),
            "merged_into": p.merged_into,
            "updated_at": at,
        }
        if exists:
            await self.conn.execute(t.patients.update().where(t.patients.c.id == p.id).values(**values))
        else:
            p.created_at = at
            await self.conn.execute(t.patients.insert().values(id=p.id, created_at=at, **values))
        p.updated_at = at
        await self._save_identifiers(p)
        await self._save_tokens(p)
        return p

    async def _save_identifiers(self, p: Patient) -> None:
        idx = {self.keyring.blind_index(i.system, i.value): i for i in p.identifiers}
        if idx:
            rows = await self.conn.execute(
                select(t.patient_identifiers.c.system_value_idx).where(
                    t.patient_identifiers.c.system_value_idx.in_(list(idx)),
                    t.patient_identifiers.c.patient_id != p.id,
                )
            )
            taken = rows.scalars().first()
            if taken is not None:
                ident = idx[taken]
                raise Conflict(f"identifier {ident.system}|{ident.value} belongs to another patient")
        await self.conn.execute(t.patient_identifiers.delete().where(t.patient_identifiers.c.patient_id == p.id))
        if idx:
            await self.conn.execute(
                t.patient_identifiers.insert(),
                [
                    {
                        "patient_id": p.id,
                        "system_enc": self.keyring.encrypt(i.system.encode()),
                        "value_enc": self.keyring.encrypt(i.value.encode()),
                        "system_value_idx": key,
                        "value_idx": self.keyring.blind_index(i.value),
                    }
                    for key, i in idx.items()
                ],
            )

    async def _save_tokens(self, p: Patient) -> None:
        words = {p.name.text, p.name.family or "", "".join(p.name.given), *p.name.given}
        tokens = {self.keyring.blind_index(w) for w in words if w and w.strip()}
        await self.conn.execute(t.patient_search_tokens.delete().where(t.patient_search_tokens.c.patient_id == p.id))
        if tokens:
            await self.conn.execute(
                t.patient_search_tokens.insert(), [{"patient_id": p.id, "token_idx": tok} for tok in tokens]
            )

    async def get(self, patient_id: str) -> Patient | None:
        found = await self.by_ids([patient_id])
        return found[0] if found else None

    async def by_ids(self, ids: Sequence[str]) -> list[Patient]:
        rows = (await self.conn.execute(select(t.patients).where(t.patients.c.id.in_(list(ids))))).all()
        idents = await self._identifiers([r.id for r in rows])
        return [self._patient(r._mapping, idents.get(r.id, [])) for r in rows]

    async def by_identifier(self, system: str, value: str, *, follow_merge: bool = True) -> Patient | None:
        key = self.keyring.blind_index(system, value)
        pid = (
            await self.conn.execute(
                select(t.patient_identifiers.c.patient_id).where(t.patient_identifiers.c.system_value_idx == key)
            )
        ).scalar()
        if pid is None:
            return None
        p = await self.get(pid)
        hops = 0
        while follow_merge and p is not None and p.merged_into and hops < _MAX_MERGE_HOPS:
            p, hops = await self.get(p.merged_into), hops + 1
        return p

    async def search(
        self, *, search: str | None = None, identifier: str | None = None,
        facility_id: str | None = None, first: int | None = None, after: str | None = None,
    ) -> Page[Patient]:
        """Exact-match search (values are encrypted): full name, family or given
        name, or any identifier value (``value`` or ``system|value``)."""
        q = select(t.patients.c.id, t.patients.c.created_at).where(t.patients.c.merged_into.is_(None))
        if facility_id is not None:
            q = q.where(t.patients.c.facility_id == facility_id)
        if identifier:
            system, sep, value = identifier.partition("|")
            col, key = (
                (t.patient_identifiers.c.system_value_idx, self.keyring.blind_index(system, value))
                if sep
                else (t.patient_identifiers.c.value_idx, self.keyring.blind_index(identifier))
            )
            q = q.where(t.patients.c.id.in_(select(t.patient_identifiers.c.patient_id).where(col == key)))
        if search:
            key = self.keyring.blind_index(search)
            q = q.where(
                t.patients.c.id.in_(
                    select(t.patient_search_tokens.c.patient_id).where(t.patient_search_tokens.c.token_idx == key)
                )
            )
        total = (await self.conn.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        size = page_size(first)
        if after:
            at, pid = decode_cursor(after, 2)
            c = t.patients.c
            q = q.where(keyset_after(c.created_at, c.id, datetime.fromisoformat(at), pid, descending=False))
        q = q.order_by(t.patients.c.created_at, t.patients.c.id).limit(size + 1)
        rows = (await self.conn.execute(q)).all()
        patients = {p.id: p for p in await self.by_ids([r.id for r in rows[:size]])}
        items = [(patients[r.id], encode_cursor(r.created_at.isoformat(), r.id)) for r in rows[:size]]
        return Page(items=items, total=total, has_next=len(rows) > size, has_previous=after is not None)

    async def _identifiers(self, ids: list[str]) -> dict[str, list[Identifier]]:
        out: dict[str, list[Identifier]] = {}
        if not ids:
            return out
        rows = await self.conn.execute(
            select(t.patient_identifiers)
            .where(t.patient_identifiers.c.patient_id.in_(ids))
            .order_by(t.patient_identifiers.c.id)
        )
        for r in rows:
            out.setdefault(r.patient_id, []).append(
                Identifier(self.keyring.decrypt(r.system_enc).decode(), self.keyring.decrypt(r.value_enc).decode())
            )
        return out

    def _patient(self, m: Any, identifiers: list[Identifier]) -> Patient:
        phi = self.keyring.decrypt_json(m["phi_enc"])
        return Patient(
            id=m["id"],
            name=name_from_json(phi["name"]),
            identifiers=identifiers,
            gender=Gender(m["gender"]) if m["gender"] else None,
            birth_date=date.fromisoformat(phi["birth_date"]) if phi.get("birth_date") else None,
            phone=phi.get("phone"),
            address=phi.get("address"),
            facility_id=m["facility_id"],
            merged_into=m["merged_into"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


def _phi(p: Patient) -> dict[str, Any]:
    return {
        "name": name_to_json(p.name),
        "birth_date": p.birth_date.isoformat() if p.birth_date else None,
        "phone": p.phone,
        "address": p.address,
    }

