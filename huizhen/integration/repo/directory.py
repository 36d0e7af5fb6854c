"""Facilities and practitioners: the directory consultations are routed through."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from huizhen.integration import tables as t
from huizhen.integration.model import Facility, FacilityLevel, Practitioner, PractitionerTitle
from huizhen.integration.repo.base import (
    RepoBase,
    identifiers_from_json,
    identifiers_to_json,
    name_from_json,
    name_to_json,
)
from huizhen.integration.repo.prepared import ByIds

log = logging.getLogger(__name__)

# a page's requesters and experts, on the driver (repo/prepared.py)
_PRACTITIONERS_BY_IDS = ByIds(lambda ids_in: select(t.practitioners).where(ids_in(t.practitioners.c.id)))


class Directory(RepoBase):
    async def save_facility(self, f: Facility) -> Facility:
        """Insert or update by code; returns the stored facility (its id kept)."""
        existing = await self.facility_by_code(f.code)
        if existing is not None:
            f.id = existing.id
            await self.conn.execute(
                t.facilities.update()
                .where(t.facilities.c.id == f.id)
                .values(name=f.name, level=f.level.value, region=f.region)
            )
        else:
            await self.conn.execute(
                t.facilities.insert().values(
                    id=f.id, code=f.code, name=f.name, level=f.level.value, region=f.region
                )
            )
        return f

    async def facility(self, facility_id: str) -> Facility | None:
        row = (await self.conn.execute(select(t.facilities).where(t.facilities.c.id == facility_id))).first()
        return _facility(row._mapping) if row else None

    async def facility_by_code(self, code: str) -> Facility | None:
        row = (await self.conn.execute(select(t.facilities).where(t.facilities.c.code == code))).first()
        return _facility(row._mapping) if row else None

    async def facility_or_register(self, code: str) -> Facility:
        """The facility of ``code``; a sender with no directory entry is registered by code, so nothing is lost."""
        facility = await self.facility_by_code(code)
        if facility is None:
            facility = await self.save_facility(Facility(code=code, name=code))
            log.info("registered unknown facility from an inbound message", extra={"facility": code})
        return facility

    async def facilities(self, ids: Sequence[str]) -> list[Facility]:
        rows = await self.conn.execute(select(t.facilities).where(t.facilities.c.id.in_(list(ids))))
        return [_facility(r._mapping) for r in rows]

    async def save_practitioner(self, p: Practitioner) -> Practitioner:
        """Insert or update; an existing practitioner is found by id or by any identifier."""
        existing = await self.practitioner(p.id)
        if existing is None:
            for ident in p.identifiers:
                found = await self.practitioner_by_identifier(ident.system, ident.value)
                if found is not None:
                    p.id = found.id
                    existing = found
                    break
        values = _practitioner_values(p)
        if existing is None:
            await self.conn.execute(t.practitioners.insert().values(id=p.id, **values))
        else:
            await self.conn.execute(t.practitioners.update().where(t.practitioners.c.id == p.id).values(**values))
            await self.conn.execute(
                t.practitioner_identifiers.delete().where(t.practitioner_identifiers.c.practitioner_id == p.id)
            )
        if p.identifiers:
            await self.conn.execute(
                t.practitioner_identifiers.insert(),
                [{"practitioner_id": p.id, "system": i.system, "value": i.value} for i in p.identifiers],
            )
        return p

    async def practitioner(self, practitioner_id: str) -> Practitioner | None:
        found = await self.practitioners_by_ids([practitioner_id])
        return found[0] if found else None

    async def practitioners_by_ids(self, ids: Sequence[str]) -> list[Practitioner]:
        return [_practitioner(r) for r in await self.run_ids(_PRACTITIONERS_BY_IDS, ids)]

    async def practitioner_by_identifier(self, system: str, value: str) -> Practitioner | None:
        pid = (
            await self.conn.execute(
                select(t.practitioner_identifiers.c.practitioner_id).where(
                    t.practitioner_identifiers.c.system == system, t.practitioner_identifiers.c.value == value
                )
            )
        ).scalar()
        return await self.practitioner(pid) if pid else None

    async def set_response_minutes(self, averages: dict[str, float]) -> None:
        """Store experts' average response minutes, computed from their history."""
        for practitioner_id, minutes in averages.items():
            await self.conn.execute(
                t.practitioners.update().where(t.practitioners.c.id == practitioner_id)
                .values(avg_response_minutes=minutes)
            )

    async def experts(self, department: str | None = None, online: bool | None = None) -> list[Practitioner]:
        q = select(t.practitioners).order_by(t.practitioners.c.department, t.practitioners.c.id)
        if department is not None:
            q = q.where(t.practitioners.c.department == department)
        if online is not None:
            q = q.where(t.practitioners.c.online == online)
        return [_practitioner(r._mapping) for r in await self.conn.execute(q)]


def _facility(m: Any) -> Facility:
    return Facility(id=m["id"], code=m["code"], name=m["name"], level=FacilityLevel(m["level"]), region=m["region"])


def _practitioner_values(p: Practitioner) -> dict[str, Any]:
    return {
        "name": name_to_json(p.name),
        "identifiers": identifiers_to_json(p.identifiers),
        "facility_id": p.facility_id,
        "department": p.department,
        "title": p.title.value if p.title else None,
        "specialties": list(p.specialties),
        "expertise": list(p.expertise),
        "years_experience": p.years_experience,
        "online": p.online,
        "avg_response_minutes": p.avg_response_minutes,
    }


def _practitioner(m: Any) -> Practitioner:
    return Practitioner(
        id=m["id"],
        name=name_from_json(m["name"]),
        identifiers=identifiers_from_json(m["identifiers"]),
        facility_id=m["facility_id"],
        department=m["department"],
        title=PractitionerTitle(m["title"]) if m["title"] else None,
        specialties=list(m["specialties"]),
        expertise=list(m["expertise"]),
        years_experience=m["years_experience"],
        online=bool(m["online"]),
        avg_response_minutes=m["avg_response_minutes"],
    )
