"""The outbox: messages owed to other systems, claimed by lease so two instances never send one twice."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, true

from huizhen.integration import tables as t
from huizhen.integration.model import OutboundMessage, OutboundStatus
from huizhen.integration.repo.base import RepoBase
from huizhen.integration.repo.journal import ChannelStats


class Outbox(RepoBase):
    async def enqueue(self, m: OutboundMessage) -> OutboundMessage:
        m.next_attempt_at = m.next_attempt_at or m.created_at
        await self.conn.execute(t.outbox.insert().values(id=m.id, **self._values(m)))
        return m

    async def claim_due(
        self, now: datetime, *, lease: timedelta, limit: int = 50, channels: Collection[str] | None = None
    ) -> list[OutboundMessage]:
        """PENDING messages due by ``now`` (of ``channels``, when given), each leased (pushed ``lease``
        into the future) to this caller."""
        c = t.outbox.c
        rows = (
            await self.conn.execute(
                select(t.outbox)
                .where(c.status == OutboundStatus.PENDING.value, c.next_attempt_at <= now)
                .where(c.channel.in_(list(channels)) if channels is not None else true())
                .order_by(c.next_attempt_at, c.created_at)
                .limit(limit)
            )
        ).all()
        claimed = []
        for row in rows:
            taken = await self.conn.execute(
                t.outbox.update()
                .where(c.id == row.id, c.next_attempt_at == row.next_attempt_at, c.status == row.status)
                .values(next_attempt_at=now + lease)
            )
            if taken.rowcount == 1:  # another instance did not take it first
                claimed.append(self._message(row._mapping))
        return claimed

    async def update(self, m: OutboundMessage) -> None:
        await self.conn.execute(t.outbox.update().where(t.outbox.c.id == m.id).values(**self._values(m)))

    async def for_consultation(self, consultation_id: str) -> list[OutboundMessage]:
        rows = await self.conn.execute(
            select(t.outbox).where(t.outbox.c.consultation_id == consultation_id).order_by(t.outbox.c.created_at)
        )
        return [self._message(r._mapping) for r in rows]

    async def ids_by_control_id(self, control_id: str) -> list[tuple[str, str]]:
        """``(id, destination)`` of the outbound messages sent with ``control_id``, oldest first."""
        c = t.outbox.c
        rows = await self.conn.execute(
            select(c.id, c.destination).where(c.control_id == control_id).order_by(c.created_at)
        )
        return [(r[0], r[1]) for r in rows]

    async def channel_stats(self) -> dict[str, tuple[ChannelStats, int]]:
        """Per channel: (sent + failed as received/errors, last error, last send) and the queue depth."""
        c = t.outbox.c
        failed = func.sum(case((c.status == OutboundStatus.FAILED.value, 1), else_=0))
        pending = func.sum(case((c.status == OutboundStatus.PENDING.value, 1), else_=0))
        out: dict[str, tuple[ChannelStats, int]] = {}
        for channel, total, n_failed, n_pending, last in await self.conn.execute(
            select(c.channel, func.count(), failed, pending, func.max(c.sent_at)).group_by(c.channel)
        ):
            found = (
                await self.conn.execute(
                    select(c.last_error_enc, c.last_error)
                    .where(c.channel == channel, or_(c.last_error_enc.is_not(None), c.last_error.is_not(None)))
                    .order_by(c.created_at.desc()).limit(1)
                )
            ).first()
            error = self.sealed_text(found[0], found[1]) if found else None
            stats = ChannelStats(received=int(total), errors=int(n_failed or 0), last_error=error, last_message_at=last)
            out[channel] = (stats, int(n_pending or 0))
        return out

    def _values(self, m: OutboundMessage) -> dict[str, Any]:
        return {
            "channel": m.channel, "destination": m.destination, "type": m.type, "control_id": m.control_id,
            "consultation_id": m.consultation_id, "payload_enc": self.keyring.encrypt(m.payload),
            "status": m.status.value, "attempts": m.attempts, "next_attempt_at": m.next_attempt_at,
            "last_error": None, "ack": None, "last_error_enc": self.keyring.encrypt_text(m.last_error),
            "ack_enc": self.keyring.encrypt_text(m.ack), "created_at": m.created_at, "sent_at": m.sent_at,
        }

    def _message(self, r: Any) -> OutboundMessage:
        return OutboundMessage(
            id=r["id"], channel=r["channel"], destination=r["destination"], type=r["type"],
            control_id=r["control_id"], consultation_id=r["consultation_id"],
            payload=self.keyring.decrypt(r["payload_enc"]), status=OutboundStatus(r["status"]),
            attempts=r["attempts"], next_attempt_at=r["next_attempt_at"],
            last_error=self.sealed_text(r["last_error_enc"], r["last_error"]),
            ack=self.sealed_text(r["ack_enc"], r["ack"]), created_at=r["created_at"], sent_at=r["sent_at"],
        )


def backoff(attempts: int, *, base_s: float = 2.0, cap_s: float = 300.0) -> timedelta:
    """Exponential: 2 s, 4 s, 8 s… capped at five minutes."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempts - 1)))
