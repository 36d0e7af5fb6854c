"""Break-glass grants (``break_glass``): who opened which patient's record, why, and until when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from huizhen.integration import tables as t
from huizhen.integration.model import BreakGlassGrant
from huizhen.integration.repo.base import RepoBase

_bg = t.break_glass


class BreakGlassGrants(RepoBase):
    async def add(self, g: BreakGlassGrant) -> None:
        await self.conn.execute(_bg.insert().values(
            id=g.id, user_id=g.user_id, roles=g.roles, domain=g.domain, patient_id=g.patient_id, reason=g.reason,
            granted_at=g.granted_at, expires_at=g.expires_at,
        ))

    async def get(self, grant_id: str) -> BreakGlassGrant | None:
        row = (await self.conn.execute(select(_bg).where(_bg.c.id == grant_id))).first()
        return _grant(row._mapping) if row else None

    async def active_patients(self, user_id: str, now: datetime) -> frozenset[str]:
        rows = await self.conn.execute(
            select(_bg.c.patient_id).where(_bg.c.user_id == user_id, _bg.c.expires_at > now)
        )
        return frozenset(r[0] for r in rows)

    async def recent(self, since: datetime, limit: int = 100) -> list[BreakGlassGrant]:
        """Grants made since ``since``, newest first."""
        rows = await self.conn.execute(
            select(_bg).where(_bg.c.granted_at >= since).order_by(_bg.c.granted_at.desc(), _bg.c.id).limit(limit)
        )
        return [_grant(r._mapping) for r in rows]

    async def acknowledge(self, grant_id: str, by: str, at: datetime) -> bool:
        """False when already acknowledged (the first officer's acknowledgement stands)."""
        result = await self.conn.execute(
            update(_bg).where(_bg.c.id == grant_id, _bg.c.acknowledged_by.is_(None))
            .values(acknowledged_by=by, acknowledged_at=at)
        )
        return bool(result.rowcount)


def _grant(m: Any) -> BreakGlassGrant:
    return BreakGlassGrant(
        id=m["id"], user_id=m["user_id"], roles=list(m["roles"]), domain=m["domain"], patient_id=m["patient_id"],
        reason=m["reason"], granted_at=m["granted_at"], expires_at=m["expires_at"],
        acknowledged_by=m["acknowledged_by"], acknowledged_at=m["acknowledged_at"],
    )
