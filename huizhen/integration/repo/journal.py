"""The message journal: every inbound message, raw (encrypted), with its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, case, cast, func, or_, select

from huizhen.integration import tables as t
from huizhen.integration.model import EntityRef, Message, MessageStatus
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, keyset_after, page_size
from huizhen.integration.repo.base import RepoBase, like_escape
from huizhen.integration.repo.prepared import Prepared


@dataclass
class ChannelStats:
    received: int = 0
    errors: int = 0
    last_error: str | None = None
    last_message_at: datetime | None = None


# Statements of the ingest hot path, built once (see repo/patients.py)
_m = t.messages
_INSERT = Prepared(_m.insert())
_UPDATE = _m.update().where(_m.c.id == bindparam("mid"))
_GET = select(_m).where(_m.c.id == bindparam("mid"))
_ANSWERED = Prepared(
    select(_m)
    .where(
        _m.c.sender == bindparam("sender"),
        _m.c.control_id == bindparam("control_id"),
        # two plain parameters, not an expanding IN: that one re-renders its SQL on every call
        _m.c.status.in_([bindparam("processed", MessageStatus.PROCESSED.value),
                         bindparam("filtered", MessageStatus.FILTERED.value)]),
    )
    .order_by(_m.c.received_at)
    .limit(1)
)


class Journal(RepoBase):
    async def add(self, m: Message) -> Message:
        await self.run(_INSERT, {"id": m.id, **self._values(m)})
        return m

    async def update(self, m: Message) -> Message:
        await self.conn.execute(_UPDATE, {"mid": m.id, **self._values(m)})
        return m

    async def get(self, message_id: str) -> Message | None:
        row = (await self.conn.execute(_GET, {"mid": message_id})).first()
        return self._message(row._mapping) if row else None

    async def processed(self, sender: str, control_id: str) -> Message | None:
        """The earlier message from ``sender`` with ``control_id`` that was answered, if any."""
        rows = await self.run(_ANSWERED, {"sender": sender, "control_id": control_id})
        return self._message(rows[0]) if rows else None

    async def search(
        self, *, channel: str | None = None, status: MessageStatus | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Page[Message]:
        c = t.messages.c
        q = select(t.messages)
        if channel is not None:
            q = q.where(c.channel == channel)
        if status is not None:
            q = q.where(c.status == status.value)
        total = (await self.conn.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
        size = page_size(first)
        if after:
            at, mid = decode_cursor(after, 2)
            q = q.where(keyset_after(c.received_at, c.id, datetime.fromisoformat(at), mid, descending=True))
        rows = (await self.conn.execute(q.order_by(c.received_at.desc(), c.id.desc()).limit(size + 1))).all()
        items = [self._message(r._mapping) for r in rows[:size]]
        return Page(
            items=[(m, encode_cursor(m.received_at.isoformat(), m.id)) for m in items],
            total=total, has_next=len(rows) > size, has_previous=after is not None,
        )

    async def touching(self, entity_ids: Sequence[str]) -> dict[str, list[Message]]:
        """Per entity id: the journaled messages whose effects name it, oldest first (provenance).

        One statement for all ids. ``effects`` is a JSON list of ``[type, id]`` pairs, matched as
        text: ids are generated, unique strings, so ``"<id>"`` cannot match anything else. It
        scans the journal; an index table of effects is the next step if the journal grows large.
        """
        ids = [i for i in dict.fromkeys(entity_ids) if i]
        out: dict[str, list[Message]] = {i: [] for i in ids}
        if not ids:
            return out
        text = cast(t.messages.c.effects, String)
        rows = await self.conn.execute(
            select(t.messages)
            .where(or_(*(text.like(f'%"{like_escape(i)}"%', "\\") for i in ids)))
            .order_by(t.messages.c.received_at, t.messages.c.id)
        )
        for r in rows:
            m = self._message(r._mapping)
            for eid in dict.fromkeys(e.id for e in m.effects):
                if eid in out:
                    out[eid].append(m)
        return out

    async def answered_since(
        self, after: tuple[datetime, str] | None, *, channel: str | None = None, limit: int = 500
    ) -> list[Message]:
        """Messages past RECEIVED after ``(received_at, id)``, oldest first: the replay of
        ``messageProcessed(since:)``."""
        c = t.messages.c
        q = select(t.messages).where(c.status != MessageStatus.RECEIVED.value)
        if channel is not None:
            q = q.where(c.channel == channel)
        if after is not None:
            q = q.where(keyset_after(c.received_at, c.id, after[0], after[1], descending=False))
        rows = await self.conn.execute(q.order_by(c.received_at, c.id).limit(limit))
        return [self._message(r._mapping) for r in rows]

    async def channel_stats(self) -> dict[str, ChannelStats]:
        """Per channel: messages received, errors, the last error and the last arrival."""
        c = t.messages.c
        errors = func.sum(case((c.status == MessageStatus.ERROR.value, 1), else_=0))
        rows = await self.conn.execute(
            select(c.channel, func.count(), errors, func.max(c.received_at)).group_by(c.channel)
        )
        stats = {r[0]: ChannelStats(received=int(r[1]), errors=int(r[2] or 0), last_message_at=r[3]) for r in rows}
        for channel, entry in stats.items():
            if entry.errors:
                last = (
                    await self.conn.execute(
                        select(c.error_enc, c.error)
                        .where(c.channel == channel, c.status == MessageStatus.ERROR.value)
                        .order_by(c.received_at.desc())
                        .limit(1)
                    )
                ).first()
                entry.last_error = self.sealed_text(last[0], last[1]) if last else None
        return stats

    def _values(self, m: Message) -> dict[str, Any]:
        return {
            "channel": m.channel, "peer": m.peer, "sender": m.sender, "control_id": m.control_id,
            "type": m.type, "raw_enc": self.keyring.encrypt(m.raw), "status": m.status.value,
            "error": None, "ack": None, "error_enc": self.keyring.encrypt_text(m.error),
            "ack_enc": self.keyring.encrypt_text(m.ack), "effects": [[e.type, e.id] for e in m.effects],
            "received_at": m.received_at, "processed_at": m.processed_at,
        }

    def _message(self, r: Any) -> Message:
        return Message(
            id=r["id"], channel=r["channel"], peer=r["peer"], sender=r["sender"], control_id=r["control_id"],
            type=r["type"], raw=self.keyring.decrypt(r["raw_enc"]), status=MessageStatus(r["status"]),
            error=self.sealed_text(r["error_enc"], r["error"]), ack=self.sealed_text(r["ack_enc"], r["ack"]),
            effects=[EntityRef(k, i) for k, i in r["effects"]],
            received_at=r["received_at"], processed_at=r["processed_at"],
        )

