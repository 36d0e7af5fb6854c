"""The audit trail: an append-only hash chain of who did what to which record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select

from huizhen.integration import tables as t
from huizhen.integration.model import AuditEvent
from huizhen.integration.repo.base import RepoBase


def chain_hash(prev_hash: str | None, e: AuditEvent) -> str:
    doc = {
        "prev": prev_hash, "id": e.id, "at": e.at.isoformat(), "actor": e.actor, "roles": e.roles,
        "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
        "outcome": e.outcome, "detail": e.detail, "source": e.source,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class AuditTrail(RepoBase):
    async def append(self, e: AuditEvent) -> AuditEvent:
        # the counter's row lock serialises appenders on PostgreSQL, so the chain never forks
        await self.next_sequence("audit")
        prev = (
            await self.conn.execute(select(t.audit_events.c.hash).order_by(t.audit_events.c.seq.desc()).limit(1))
        ).scalar()
        e.prev_hash = prev
        e.hash = chain_hash(prev, e)
        await self.conn.execute(
            t.audit_events.insert().values(
                id=e.id, at=e.at, actor=e.actor, roles=e.roles, action=e.action, entity_type=e.entity_type,
                entity_id=e.entity_id, outcome=e.outcome, detail=e.detail, source=e.source,
                prev_hash=e.prev_hash, hash=e.hash,
            )
        )
        return e

    async def all(self) -> AsyncIterator[AuditEvent]:
        result = await self.conn.stream(select(t.audit_events).order_by(t.audit_events.c.seq))
        async for row in result:
            yield _event(row._mapping)


def _event(m: Any) -> AuditEvent:
    return AuditEvent(
        id=m["id"], at=m["at"], actor=m["actor"], roles=list(m["roles"]), action=m["action"],
        entity_type=m["entity_type"], entity_id=m["entity_id"], outcome=m["outcome"], detail=m["detail"],
        source=m["source"], prev_hash=m["prev_hash"], hash=m["hash"],
    )
