"""The audit trail as the edges write it: one buffer per request, flushed in one insert.

Every read of patient data, every write, every denied request, every login
failure and every policy change becomes an :class:`AuditEvent` whose fields
map onto a FHIR AuditEvent (``agent.who`` = actor, ``agent.role`` = roles,
``source.observer``/``agent.network`` = source address, ``action`` = C/R/U/D/E,
``entity.what`` = ``entity_type/entity_id``, ``outcome``, ``recorded`` = at).
The rows of one request are chained and inserted together through the
store's group commit, so a page of reads costs one statement, not one each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final

from huizhen.integration.model import AuditEvent
from huizhen.integration.repo.audit import chain_hash
from huizhen.integration.store import Store

log = logging.getLogger(__name__)

SUCCESS: Final = "success"
DENIED: Final = "denied"
FAILURE: Final = "failure"
# FHIR AuditEvent.action codes
_FHIR_ACTION: Final = {"read": "R", "search": "R", "create": "C", "write": "U", "update": "U", "delete": "D"}


@dataclass
class AuditBuffer:
    """The events of one request, for one actor."""

    actor: str
    roles: list[str]
    source: str | None
    events: list[AuditEvent] = field(default_factory=list)
    domain: str | None = None  # the RBAC domain the request's decisions were made in (the policy dry run reads it)
    _seen: set[tuple[str, str | None, str | None, str]] = field(default_factory=set)

    def add(self, action: str, entity_type: str | None = None, entity_id: str | None = None,
            outcome: str = SUCCESS, detail: str | None = None) -> None:
        key = (action, entity_type, entity_id, outcome)
        if key in self._seen and detail is None:  # one row per entity read, however often a query touches it
            return
        self._seen.add(key)
        self.events.append(AuditEvent(  # one list of roles for the request's events: the insert converts it once
            at=datetime.now(UTC), actor=self.actor, roles=self.roles, action=action, outcome=outcome,
            entity_type=entity_type, entity_id=entity_id, detail=detail, source=self.source,
            domain=self.domain,
        ))


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        await self.store.batched(lambda repo: repo.audit.append_many(events))

    async def flush(self, buffer: AuditBuffer) -> None:
        events, buffer.events = buffer.events, []
        buffer._seen.clear()
        try:
            await self.write(events)
        except Exception:  # the answer is already computed; a lost audit row must be loud
            log.exception("could not write %d audit event(s)", len(events))
            raise


@dataclass(frozen=True)
class Verification:
    checked: int
    broken_at: int | None = None  # 1-based position in the chain
    event_id: str | None = None
    reason: str | None = None
    unsigned: bool = False  # the anchor as migration 0013 wrote it: no event appended since

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify(store: Store) -> Verification:
    """Walk the chain in order; the first event whose hash or link does not hold is named. Its end
    is checked against the anchor (event count and last hash, under an HMAC): a deletion of the
    newest events leaves a chain that holds but is shorter than the anchor says. The anchor is read
    first, so events appended while the walk runs are chained, not taken for tampering."""
    prev: str | None = None
    n = 0
    async with store.read() as repo:
        anchor = await repo.audit.anchor()
        if anchor is None:
            return Verification(0, 1, None, "the chain's anchor is missing: its end cannot be checked")
        if anchor.mac is not None and not anchor.holds(store.keyring.index_key):
            return Verification(0, 1, None, "the chain's anchor does not match its HMAC: it was rewritten")
        async for e in repo.audit.all():
            n += 1
            if e.prev_hash != prev:
                return Verification(n, n, e.id, "prev_hash does not match the previous event's hash")
            if chain_hash(prev, e) != e.hash:
                return Verification(n, n, e.id, "the event's content does not match its hash")
            if n == anchor.events and e.hash != anchor.head:
                return Verification(n, n, e.id, "the event is not the one the chain's anchor records at its end")
            prev = e.hash
    if n < anchor.events:
        return Verification(
            n, n + 1, None,
            f"the chain ends after {n} event(s) but its anchor records {anchor.events}: the newest were deleted",
        )
    return Verification(n, unsigned=anchor.mac is None)


def fhir_shaped(e: AuditEvent) -> dict[str, Any]:
    """One event as a FHIR R4 AuditEvent-like document (the JSON-lines export)."""
    return {
        "resourceType": "AuditEvent",
        "id": e.id,
        "recorded": e.at.isoformat(),
        "action": _FHIR_ACTION.get(e.action, "E"),
        "subtype": [{"code": e.action}],
        "outcome": {"success": "0", "denied": "4", "failure": "8"}.get(e.outcome, "8"),
        "outcomeDesc": e.detail,
        "agent": [{
            "who": {"identifier": {"value": e.actor}},
            "role": [{"text": r} for r in e.roles],
            "requestor": True,
            "network": {"address": e.source} if e.source else None,
        }],
        "source": {"observer": {"display": "huizhen"}},
        "entity": [{"what": {"reference": f"{e.entity_type}/{e.entity_id}"}}] if e.entity_type else [],
        "extension": [{"url": "urn:huizhen:audit-chain", "valueString": f"{e.prev_hash or ''}:{e.hash}"}],
    }


async def export_jsonl(store: Store, out: IO[str]) -> int:
    n = 0
    async with store.read() as repo:
        events: AsyncIterator[AuditEvent] = repo.audit.all()
        async for e in events:
            out.write(json.dumps(fhir_shaped(e), ensure_ascii=False) + "\n")
            n += 1
    return n
