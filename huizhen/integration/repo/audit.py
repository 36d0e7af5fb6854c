"""The audit trail: an append-only hash chain of who did what to which record."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _encode_str  # json.dumps' own (C) string encoder
from typing import Any

from sqlalchemy import Select, bindparam, false, func, select

from huizhen.integration import tables as t
from huizhen.integration.errors import BadInput
from huizhen.integration.model import AuditEvent
from huizhen.integration.paging import Page, decode_cursor, encode_cursor, page_size
from huizhen.integration.repo.base import RepoBase
from huizhen.integration.repo.prepared import Prepared

log = logging.getLogger(__name__)


def chain_hash(prev_hash: str | None, e: AuditEvent) -> str:
    """SHA-256 of the event's canonical JSON: ``json.dumps(doc, sort_keys=True, ensure_ascii=False)``,
    the form the stored chain was written in. The usual event (strings, None, a list of role
    names) is written out by hand with the encoder ``json.dumps`` itself uses for strings, the same
    bytes at a third of the cost (a work-list page chains some 150 read events); anything else
    goes through ``json.dumps``."""
    text = _canonical(prev_hash, e)
    if text is None:
        doc = {
            "prev": prev_hash, "id": e.id, "at": e.at.isoformat(), "actor": e.actor, "roles": e.roles,
            "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
            "outcome": e.outcome, "detail": e.detail, "source": e.source,
        }
        if e.domain is not None:  # added in 0007: events without a domain keep the hash they were written with
            doc["domain"] = e.domain
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _text(value: object) -> str | None:
    """A string or None as ``json.dumps(ensure_ascii=False)`` writes it; None (the Python value)
    for any other type, which the caller then hands to ``json.dumps``."""
    if value is None:
        return "null"
    return _encode_str(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=256)
def _roles_text(roles: tuple[object, ...]) -> str | None:
    """A request's events share their roles: written out once."""
    parts = [_text(r) if r is not None else None for r in roles]
    return None if None in parts else "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]


_WORDS: dict[str, str] = {}  # the encoded text of strings that recur from event to event
_WORDS_LIMIT = 4096


def _word(value: object) -> str | None:
    """:func:`_text` of a value that recurs from event to event (actor, action, outcome, entity type,
    source, domain: a request's 150 events share them): encoded once, then looked up."""
    if type(value) is not str:
        return _text(value)
    found = _WORDS.get(value)
    if found is None:
        found = _encode_str(value)
        if len(_WORDS) >= _WORDS_LIMIT:
            _WORDS.clear()
        _WORDS[value] = found
    return found


def _canonical(prev_hash: str | None, e: AuditEvent) -> str | None:
    roles = _roles_text(tuple(e.roles)) if isinstance(e.roles, list | tuple) else None
    action, actor, domain, entity_type, outcome, source = (
        _word(e.action), _word(e.actor), _word(e.domain), _word(e.entity_type), _word(e.outcome), _word(e.source)
    )
    at, detail, entity_id, id_, prev = (
        _text(e.at.isoformat()), _text(e.detail), _text(e.entity_id), _text(e.id), _text(prev_hash)
    )
    if (
        action is None or actor is None or at is None or detail is None or entity_id is None
        or entity_type is None or id_ is None or outcome is None or prev is None or roles is None
        or source is None or domain is None
    ):
        return None
    # in sorted key order; "domain" only when set (see chain_hash)
    head = f'{{"action": {action}, "actor": {actor}, "at": {at}, "detail": {detail}, '
    if e.domain is not None:
        head += f'"domain": {domain}, '
    return (f'{head}"entity_id": {entity_id}, "entity_type": {entity_type}, "id": {id_}, '
            f'"outcome": {outcome}, "prev": {prev}, "roles": {roles}, "source": {source}}}')


# the append path, straight on the driver (see repo/prepared.py): a page of the work-list appends
# some 150 read events, and SQLAlchemy's execution of the executemany was most of the audit's cost
_INSERT = Prepared(t.audit_events.insert())
_LAST_HASH = Prepared(select(t.audit_events.c.hash).order_by(t.audit_events.c.seq.desc()).limit(1))
_COUNT = Prepared(select(func.count().label("n")).select_from(t.audit_events))
_ANCHOR = Prepared(
    select(t.audit_anchor.c.events, t.audit_anchor.c.head, t.audit_anchor.c.mac).where(t.audit_anchor.c.id == 1)
)
_SET_ANCHOR = Prepared(
    t.audit_anchor.update().where(t.audit_anchor.c.id == 1)
    .values(events=bindparam("events"), head=bindparam("head"), mac=bindparam("mac"))
)
_NEW_ANCHOR = Prepared(t.audit_anchor.insert())


@dataclass(frozen=True, slots=True)
class Anchor:
    """The end of the chain as last written: its event count, last hash and their HMAC."""

    events: int
    head: str | None
    mac: str | None

    def holds(self, index_key: bytes) -> bool:
        return self.mac is not None and hmac.compare_digest(self.mac, anchor_mac(index_key, self.events, self.head))


def anchor_mac(index_key: bytes, events: int, head: str | None) -> str:
    """HMAC-SHA256 of the chain's end under a key derived from the blind-index key (which lives
    with the data keys, never in the database): rewriting the anchor after deleting the newest
    events needs that key."""
    key = hmac.digest(index_key, b"huizhen audit anchor", hashlib.sha256)
    return hmac.digest(key, f"{events}:{head or ''}".encode(), hashlib.sha256).hex()


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
        anchor = await self.anchor()
        if anchor is not None:
            prev, count = anchor.head, anchor.events
        else:  # migration 0013 writes the row: someone deleted it. Loud, and the chain goes on
            log.error("the audit anchor is missing: re-anchored at the chain's present end")
            last = await self.run(_LAST_HASH, {})
            prev = last[0]["hash"] if last else None
            count = (await self.run(_COUNT, {}))[0]["n"]
        for e in events:
            e.prev_hash = prev
            e.hash = prev = chain_hash(prev, e)
        count += len(events)
        end = dict(events=count, head=prev, mac=anchor_mac(self.keyring.index_key, count, prev))
        await self.run_many(
            _INSERT,
            [
                dict(
                    id=e.id, at=e.at, actor=e.actor, roles=e.roles, action=e.action, entity_type=e.entity_type,
                    entity_id=e.entity_id, outcome=e.outcome, detail=e.detail, source=e.source,
                    prev_hash=e.prev_hash, hash=e.hash, domain=e.domain,
                )
                for e in events
            ],
        )
        if anchor is not None:
            await self.run_count(_SET_ANCHOR, end)
        else:
            await self.run_count(_NEW_ANCHOR, dict(id=1, **end))

    async def anchor(self) -> Anchor | None:
        """The end of the chain as the last append wrote it; None before the first (no row)."""
        rows = await self.run(_ANCHOR, {})
        return Anchor(rows[0]["events"], rows[0]["head"], rows[0]["mac"]) if rows else None

    async def search(
        self, *, entity_id: str | None = None, actor: str | None = None, first: int | None = None,
        after: str | None = None, where: AuditFilter | None = None,
    ) -> Page[AuditEvent]:
        """Newest first; filters are bound parameters, never SQL text."""
        c = t.audit_events.c
        q = select(t.audit_events)
        if entity_id is not None:
            q = q.where(c.entity_id == entity_id)
        if actor is not None:
            q = q.where(c.actor == actor)
        if where is not None:
            q = where.apply(q)
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

    async def all(self, where: AuditFilter | None = None) -> AsyncIterator[AuditEvent]:
        q = select(t.audit_events)
        if where is not None:
            q = where.apply(q)
        result = await self.conn.stream(q.order_by(t.audit_events.c.seq))
        async for row in result:
            yield _event(row._mapping)

    async def patient_entity_ids(self) -> list[str]:
        """The distinct patient ids the trail names (a pseudonym is matched against these)."""
        c = t.audit_events.c
        rows = await self.conn.execute(
            select(c.entity_id).where(c.entity_type == "Patient", c.entity_id.is_not(None)).distinct()
        )
        return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit viewer's filters; ``entity_ids`` empty but not None matches nothing."""

    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    entity_type: str | None = None
    entity_ids: tuple[str, ...] | None = None

    def apply(self, q: Select[Any]) -> Select[Any]:
        c = t.audit_events.c
        if self.action is not None:
            q = q.where(c.action == self.action)
        if self.outcome is not None:
            q = q.where(c.outcome == self.outcome)
        if self.since is not None:
            q = q.where(c.at >= self.since)
        if self.until is not None:
            q = q.where(c.at < self.until)
        if self.entity_type is not None:
            q = q.where(c.entity_type == self.entity_type)
        if self.entity_ids is not None:
            q = q.where(c.entity_id.in_(self.entity_ids)) if self.entity_ids else q.where(false())
        return q


def _event(m: Any) -> AuditEvent:
    return AuditEvent(
        id=m["id"], at=m["at"], actor=m["actor"], roles=list(m["roles"]), action=m["action"],
        entity_type=m["entity_type"], entity_id=m["entity_id"], outcome=m["outcome"], detail=m["detail"],
        source=m["source"], prev_hash=m["prev_hash"], hash=m["hash"], domain=m["domain"],
    )
