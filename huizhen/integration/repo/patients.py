"""Patients: PHI encrypted at rest, found by identifier or name through the blind index."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ARRAY, Select, all_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql

from huizhen.integration import tables as t
from huizhen.integration.errors import Conflict
from huizhen.integration.model import Gender, Identifier, Patient
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, keyset_after, page_size
from huizhen.integration.repo.base import RepoBase, name_from_json, name_to_json, now
from huizhen.integration.repo.prepared import ByIds, Prepared
from huizhen.integration.repo.visibility import PatientRows, patient_condition

_MAX_MERGE_HOPS = 16

# Statements of the ingest hot path, built once and run on the driver itself (see .prepared)
_p, _pi = t.patients, t.patient_identifiers
_held = _pi.alias("held")  # the identifier a lookup matched
_EXISTS = Prepared(select(_p.c.id).where(_p.c.id == bindparam("pid")))
_INSERT = Prepared(_p.insert())
_UPDATE = Prepared(_p.update().where(_p.c.id == bindparam("pid")))


def _holders(keys: int) -> Prepared:
    """Which of ``keys`` blind indexes a patient other than ``pid`` holds (see :func:`_find` on arity)."""
    return Prepared(
        select(_pi.c.system_value_idx).where(
            _pi.c.system_value_idx.in_([bindparam(f"k{n}") for n in range(keys)]),
            _pi.c.patient_id != bindparam("pid"),
        )
    )


_HOLDERS = {n: _holders(n) for n in range(1, 9)}
_HOLDER = select(_pi.c.patient_id).where(_pi.c.system_value_idx == bindparam("key"))


def _find(keys: int) -> Prepared:
    """Patients holding any of ``keys`` blind indexes, with every identifier of theirs: one round trip.

    One statement per number of keys (a message names one to a few): an
    expanding IN would have to be rendered again on every call.
    """
    return Prepared(
        select(_held.c.system_value_idx.label("matched"), _p, _pi.c.system_enc, _pi.c.value_enc)
        .select_from(_held.join(_p, _p.c.id == _held.c.patient_id).join(_pi, _pi.c.patient_id == _p.c.id))
        .where(_held.c.system_value_idx.in_([bindparam(f"k{n}") for n in range(keys)]))
        .order_by(_pi.c.id)
    )


_FIND = {n: _find(n) for n in range(1, 9)}
_BY_IDS = ByIds(lambda ids_in: select(_p).where(ids_in(_p.c.id)))
_IDENTIFIERS = ByIds(lambda ids_in: select(_pi).where(ids_in(_pi.c.patient_id)).order_by(_pi.c.id))
_INSERT_IDENTIFIER = Prepared(_pi.insert().inline())  # inline: no RETURNING of the serial id
_DELETE_IDENTIFIERS = Prepared(_pi.delete().where(_pi.c.patient_id == bindparam("pid")))
_INSERT_TOKEN = Prepared(t.patient_search_tokens.insert())
_DELETE_TOKENS = Prepared(
    t.patient_search_tokens.delete().where(t.patient_search_tokens.c.patient_id == bindparam("pid"))
)


def _add_in_one() -> Prepared:
    """PostgreSQL: a new patient's row, identifiers and search tokens in one statement (one round
    trip instead of three); the identifier and token rows come as arrays (``unnest`` zips them).
    The rows of the two data-modifying CTEs are in place when the foreign keys are checked, at
    the end of the statement."""
    patient = insert(_p).values({c.name: bindparam(c.name, type_=c.type) for c in _p.c}).cte("new_patient")
    pid = bindparam("id", type_=_p.c.id.type)
    identifiers = insert(_pi).from_select(
        ["patient_id", "system_enc", "value_enc", "system_value_idx", "value_idx"],
        select(pid, *(func.unnest(bindparam(name, type_=ARRAY(_pi.c[name].type)))
                      for name in ("system_enc", "value_enc", "system_value_idx", "value_idx"))),
    ).cte("new_identifiers")
    tokens = insert(_t).from_select(
        ["patient_id", "token_idx"], select(pid, func.unnest(bindparam("tokens", type_=ARRAY(_t.c.token_idx.type))))
    )
    return Prepared(tokens.add_cte(patient, identifiers))


def _rename_in_one() -> Prepared:
    """PostgreSQL: a patient's row updated and its search tokens made ``tokens`` in one statement
    (was an UPDATE, a DELETE and an INSERT): the tokens no longer named go, the new ones come."""
    pid = bindparam("pid", type_=_p.c.id.type)
    tokens = bindparam("tokens", type_=ARRAY(_t.c.token_idx.type))
    row = ("facility_id", "gender", "phi_enc", "merged_into", "updated_at")
    updated = (
        update(_p).where(_p.c.id == pid).values({c: bindparam(c, type_=_p.c[c].type) for c in row}).cte("updated")
    )
    gone = delete(_t).where(_t.c.patient_id == pid, _t.c.token_idx != all_(tokens)).cte("gone")
    added = postgresql.insert(_t).from_select(["patient_id", "token_idx"], select(pid, func.unnest(tokens)))
    return Prepared(added.on_conflict_do_nothing().add_cte(updated, gone))


_t = t.patient_search_tokens
_ADD_IN_ONE = _add_in_one()
_RENAME_IN_ONE = _rename_in_one()


class Patients(RepoBase):
    async def save(self, p: Patient) -> Patient:
        """Insert or update ``p`` with its identifiers and search tokens.

        An identifier already held by another patient is a :class:`Conflict`:
        one (system, value) names one person.
        """
        exists = await self.run(_EXISTS, {"pid": p.id})
        await (self._update_row(p) if exists else self._insert_row(p))
        await self._save_identifiers(p)
        await self._save_tokens(p)
        return p

    async def add(self, p: Patient) -> Patient:
        """Insert a new patient whose identifiers the caller found unheld in this transaction.

        The ingest path's :meth:`save`: no existence check, nothing to delete.
        """
        if self.dialect == "postgresql":
            await self._add_in_one(p)
            return p
        await self._insert_row(p)
        idx = self._identifier_keys(p.identifiers)
        if idx:
            await self.run_many(_INSERT_IDENTIFIER, self._identifier_rows(p.id, idx))
        await self._insert_tokens(p)
        return p

    async def update(self, p: Patient, before: Patient) -> Patient:
        """Update ``p``, read in this transaction as ``before``: only what changed is rewritten.

        Identifiers appended since ``before`` are added (a :class:`Conflict` if
        another patient holds one), search tokens are rewritten when the name
        changed; anything else falls back to :meth:`save`.
        """
        known = len(before.identifiers)
        added = self._identifier_keys(p.identifiers[known:])
        appended_only = (
            p.identifiers[:known] == before.identifiers
            and len(added) == len(p.identifiers) - known
            # nothing added (a result for a known patient): no blind index of the known ones to compute
            and not (added and added.keys() & self._identifier_keys(before.identifiers).keys())
        )
        if not appended_only:  # identifiers dropped, reordered or re-cased: rewrite them all
            return await self.save(p)
        if not added and _row_of(p) == _row_of(before):
            return p  # the message repeats what is stored: no write, no new version
        if added:
            await self._check_unheld(p.id, added)
        renamed = p.name != before.name
        if renamed and self.dialect == "postgresql":
            at = now()
            p.updated_at = at
            await self.run(_RENAME_IN_ONE, {"pid": p.id, **self._row(p, at), "tokens": sorted(self._tokens(p))})
        else:
            await self._update_row(p)
        if added:
            await self.run_many(_INSERT_IDENTIFIER, self._identifier_rows(p.id, added))
        if renamed and self.dialect != "postgresql":
            await self.run(_DELETE_TOKENS, {"pid": p.id})
            await self._insert_tokens(p)
        return p

    async def _add_in_one(self, p: Patient) -> None:
        at = now()
        p.created_at = p.updated_at = at
        rows = self._identifier_rows(p.id, self._identifier_keys(p.identifiers))
        await self.run(_ADD_IN_ONE, {
            "id": p.id, "created_at": at, **self._row(p, at),
            **{name: [r[name] for r in rows] for name in ("system_enc", "value_enc", "system_value_idx", "value_idx")},
            "tokens": sorted(self._tokens(p)),
        })

    async def _insert_row(self, p: Patient) -> None:
        at = now()
        p.created_at = p.updated_at = at
        await self.run(_INSERT, {"id": p.id, "created_at": at, **self._row(p, at)})

    async def _update_row(self, p: Patient) -> None:
        at = now()
        p.updated_at = at
        await self.run(_UPDATE, {"pid": p.id, **self._row(p, at)})

    def _row(self, p: Patient, at: datetime) -> dict[str, Any]:
        return {
            "facility_id": p.facility_id,
            "gender": p.gender.value if p.gender else None,
            "phi_enc": self.keyring.encrypt_json(_phi(p)),
            "merged_into": p.merged_into,
            "updated_at": at,
        }

    def _identifier_keys(self, identifiers: Sequence[Identifier]) -> dict[str, Identifier]:
        """Blind index → identifier; of identifiers equal once folded, the last one stays."""
        return {self.keyring.blind_index(i.system, i.value): i for i in identifiers}

    def _identifier_rows(self, patient_id: str, idx: dict[str, Identifier]) -> list[dict[str, Any]]:
        return [
            {
                "patient_id": patient_id,
                "system_enc": self.keyring.encrypt(i.system.encode()),
                "value_enc": self.keyring.encrypt(i.value.encode()),
                "system_value_idx": key,
                "value_idx": self.keyring.blind_index(i.value),
            }
            for key, i in idx.items()
        ]

    async def _check_unheld(self, patient_id: str, idx: dict[str, Identifier]) -> None:
        stmt = _HOLDERS[len(idx)] if len(idx) in _HOLDERS else _holders(len(idx))
        rows = await self.run(stmt, {"pid": patient_id, **{f"k{n}": key for n, key in enumerate(idx)}})
        if rows:
            ident = idx[rows[0]["system_value_idx"]]
            raise Conflict(f"identifier {ident.system}|{ident.value} belongs to another patient")

    async def _save_identifiers(self, p: Patient) -> None:
        idx = self._identifier_keys(p.identifiers)
        if idx:
            await self._check_unheld(p.id, idx)
        await self.run(_DELETE_IDENTIFIERS, {"pid": p.id})
        if idx:
            await self.run_many(_INSERT_IDENTIFIER, self._identifier_rows(p.id, idx))

    async def _save_tokens(self, p: Patient) -> None:
        await self.run(_DELETE_TOKENS, {"pid": p.id})
        await self._insert_tokens(p)

    def _tokens(self, p: Patient) -> set[str]:
        words = {p.name.text, p.name.family or "", "".join(p.name.given), *p.name.given}
        return {self.keyring.blind_index(w) for w in words if w and w.strip()}

    async def _insert_tokens(self, p: Patient) -> None:
        tokens = self._tokens(p)
        if tokens:
            await self.run_many(_INSERT_TOKEN, [{"patient_id": p.id, "token_idx": tok} for tok in tokens])

    async def get(self, patient_id: str) -> Patient | None:
        found = await self.by_ids([patient_id])
        return found[0] if found else None

    async def by_ids(self, ids: Sequence[str]) -> list[Patient]:
        rows = await self.run_ids(_BY_IDS, ids)
        idents = await self._identifiers([r["id"] for r in rows])
        return [self._patient(r, idents.get(r["id"], [])) for r in rows]

    async def by_identifier(self, system: str, value: str, *, follow_merge: bool = True) -> Patient | None:
        key = self.keyring.blind_index(system, value)
        pid = (await self.conn.execute(_HOLDER, {"key": key})).scalar()
        if pid is None:
            return None
        p = await self.get(pid)
        return await self._survivor(p) if follow_merge else p

    async def find(self, identifiers: Sequence[Identifier]) -> Patient | None:
        """The patient the first held of ``identifiers`` names, merges followed; one query.

        The same answer as :meth:`by_identifier` tried for each in turn.
        """
        keys = [self.keyring.blind_index(i.system, i.value) for i in identifiers]
        if not keys:
            return None
        keys = list(dict.fromkeys(keys))
        stmt = _FIND[len(keys)] if len(keys) in _FIND else _find(len(keys))
        rows = await self.run(stmt, {f"k{n}": key for n, key in enumerate(keys)})
        if not rows:
            return None
        holder = {r["matched"]: r["id"] for r in rows}
        pid = next(holder[k] for k in keys if k in holder)
        mine = [r for r in rows if r["id"] == pid]
        # a patient matched by several keys comes once per key: its identifiers once
        identifiers_of = [
            Identifier(self.keyring.decrypt(r["system_enc"]).decode(), self.keyring.decrypt(r["value_enc"]).decode())
            for r in mine
            if r["matched"] == mine[0]["matched"]
        ]
        return await self._survivor(self._patient(mine[0], identifiers_of))

    async def _survivor(self, p: Patient | None) -> Patient | None:
        hops = 0
        while p is not None and p.merged_into and hops < _MAX_MERGE_HOPS:
            p, hops = await self.get(p.merged_into), hops + 1
        return p

    async def _survivor_ids(self, holders: Select[tuple[str]]) -> set[str]:
        """The patients ``holders`` selects, each merged record replaced by the record it was merged into.

        An ADT^A40 leaves the old MRN on the merged record, which lists and searches leave out: without
        this, a search by the old identifier found nobody instead of the survivor."""
        found: set[str] = set()
        frontier = set((await self.conn.execute(holders)).scalars())
        for _ in range(_MAX_MERGE_HOPS):
            if not frontier:
                break
            rows = (await self.conn.execute(
                select(t.patients.c.id, t.patients.c.merged_into).where(t.patients.c.id.in_(frontier))
            )).all()
            found |= {r.id for r in rows if r.merged_into is None}
            frontier = {r.merged_into for r in rows if r.merged_into is not None} - found
        return found

    async def visible(self, patient_id: str, rows: PatientRows) -> bool:
        """Whether ``rows`` lets the viewer see this patient (one patient, the same SQL rule as lists)."""
        q = select(t.patients.c.id).where(t.patients.c.id == patient_id, patient_condition(rows))
        return (await self.conn.execute(q)).first() is not None

    async def search(
        self, *, search: str | None = None, identifier: str | None = None,
        facility_id: str | None = None, first: int | None = None, after: str | None = None,
        visible: PatientRows | None = None,
    ) -> Page[Patient]:
        """Exact-match search (values are encrypted): full name, family or given
        name, or any identifier value (``value`` or ``system|value``); a merged record's identifier
        finds the survivor."""
        q = select(t.patients.c.id, t.patients.c.created_at).where(t.patients.c.merged_into.is_(None))
        if visible is not None:
            q = q.where(patient_condition(visible))
        if facility_id is not None:
            q = q.where(t.patients.c.facility_id == facility_id)
        if identifier:
            system, sep, value = identifier.partition("|")
            col, key = (
                (t.patient_identifiers.c.system_value_idx, self.keyring.blind_index(system, value))
                if sep
                else (t.patient_identifiers.c.value_idx, self.keyring.blind_index(identifier))
            )
            holders = select(t.patient_identifiers.c.patient_id).where(col == key)
            q = q.where(t.patients.c.id.in_(await self._survivor_ids(holders)))
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
        decrypt = self.keyring.decrypt
        for r in await self.run_ids(_IDENTIFIERS, ids):
            out.setdefault(r["patient_id"], []).append(
                Identifier(decrypt(r["system_enc"]).decode(), decrypt(r["value_enc"]).decode())
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


def _row_of(p: Patient) -> tuple[Any, ...]:
    """Everything of ``p`` its row and search tokens hold."""
    return (p.facility_id, p.gender, p.name, p.birth_date, p.phone, p.address, p.merged_into)


def _phi(p: Patient) -> dict[str, Any]:
    return {
        "name": name_to_json(p.name),
        "birth_date": p.birth_date.isoformat() if p.birth_date else None,
        "phone": p.phone,
        "address": p.address,
    }

