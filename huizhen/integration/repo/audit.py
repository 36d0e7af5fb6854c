"""The audit trail: an append-only hash chain of who did what to which record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select

from huizhen.integration import tables as t
from huizhen.integration.errors import BadInput
from huizhen.integration.model import AuditEvent
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, page_size
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
        await self.append_many([e])
        return e

    async def append_many(self, events: list[AuditEvent]) -> None:
        """Chain and insert the events of one request in one statement."""
        if not events:
            return
        # the counter's row lock serialises appenders on PostgreSQL, so the chain never forks
        await self.next_sequence("audit")
        prev = (
            await self.conn.execute(select(t.audit_events.c.hash).order_by(t.audit_events.c.seq.desc()).limit(1))
        ).scalar()
        for e in events:
            e.prev_hash = prev
            e.hash = prev = chain_hash(prev, e)
        await self.conn.execute(
            t.audit_events.insert(),
            [
                dict(
                    id=e.id, at=e.at, actor=e.actor, roles=e.roles, action=e.action, entity_type=e.entity_type,
                    entity_id=e.entity_id, outcome=e.outcome, detail=e.detail, source=e.source,
                    prev_hash=e.prev_hash, hash=e.hash,
                )
                for e in events
            ],
        )

    async def search(
        self, *, entity_id: str | None = None, actor: str | None = None, first: int | None = None,
        after: str | None = None,
    ) -> Page[AuditEvent]:
        """Newest first; filters are bound parameters, never SQL text."""
        c = t.audit_events.c
        q = select(t.audit_events)
        if entity_id is not None:
            q = q.where(c.entity_id == entity_id)
        if actor is not None:
            q = q.where(c.actor == actor)
        total = (await self.conn.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        size = page_size(first)
        if after:
            (seq,) = decode_cursor(after, 1)
            if not isinstance(seq, int):
                raise BadInput(f"invalid cursor {after!r}")
            q = q.where(c.seq < seq)
        rows = (await self.conn.execute(q.order_by(c.seq.desc()).limit(size + 1))).all()
        return Page(
            items=[(_event(r._mapping), encode_cursor(r._mapping["seq"])) for r in rows[:size]],
            total=total, has_next=len(rows) > size, has_previous=after is not None,
        )

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
