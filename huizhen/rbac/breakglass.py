"""Break-glass access: a clinician opens one patient's record in an emergency, with a reason, for a while.

A grant widens only its holder's row scope (:class:`huizhen.rbac.rows.Scope`
``break_glass``), only for that patient, and only until it expires (the
``break_glass_ttl_seconds`` setting, an hour by default): nothing has to run
for it to end, the scope simply stops reading it. It is stored (so it holds
across instances and restarts), written to the audit trail with its reason
in the same transaction, and announced on the bus topic ``security`` so that
the security officers' console shows it live until one of them acknowledges it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from huizhen.integration.errors import BadInput, NotFound
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import Actor, AuditEvent, BreakGlassGrant
from huizhen.integration.store import Store
from huizhen.rbac.policy import PLATFORM

TOPIC: Final = "security"
GRANTED: Final = "break-glass"
ACKNOWLEDGED: Final = "break-glass-acknowledged"
_MIN_REASON: Final = 5
_MAX_REASON: Final = 1000


class BreakGlassService:
    def __init__(self, store: Store, bus: EventBus, ttl_s: int) -> None:
        self.store, self.bus, self.ttl = store, bus, timedelta(seconds=ttl_s)

    async def grant(self, actor: Actor, roles: list[str], patient_id: str, reason: str) -> BreakGlassGrant:
        reason = " ".join(reason.split())
        if len(reason) < _MIN_REASON:
            raise BadInput(f"break-glass needs a reason of at least {_MIN_REASON} characters")
        if len(reason) > _MAX_REASON:
            raise BadInput(f"the reason is limited to {_MAX_REASON} characters")
        now = datetime.now(UTC)
        g = BreakGlassGrant(
            user_id=actor.id, roles=sorted(roles), domain=actor.facility or PLATFORM, patient_id=patient_id,
            reason=reason, granted_at=now, expires_at=now + self.ttl,
        )
        async with self.store.write() as repo:
            if await repo.patients.get(patient_id) is None:
                raise NotFound("Patient", patient_id)
            await repo.break_glass.add(g)
            await repo.audit.append(self._audit(actor, g.roles, GRANTED, g, f"until {g.expires_at.isoformat()}; "
                                                                           f"reason: {reason}"))
        await self.bus.publish(Event(TOPIC, GRANTED, {"id": g.id}))
        return g

    async def acknowledge(self, grant_id: str, actor: Actor, roles: list[str]) -> BreakGlassGrant:
        async with self.store.write() as repo:
            g = await repo.break_glass.get(grant_id)
            if g is None:
                raise NotFound("BreakGlass", grant_id)
            if await repo.break_glass.acknowledge(grant_id, actor.id, datetime.now(UTC)):
                await repo.audit.append(self._audit(actor, roles, ACKNOWLEDGED, g, f"break-glass {g.id}"))
            g = await repo.break_glass.get(grant_id)
        if g is None:  # deleted with its patient meanwhile
            raise NotFound("BreakGlass", grant_id)
        await self.bus.publish(Event(TOPIC, ACKNOWLEDGED, {"id": g.id}))
        return g

    async def get(self, grant_id: str) -> BreakGlassGrant | None:
        async with self.store.read() as repo:
            return await repo.break_glass.get(grant_id)

    async def recent(self, hours: int = 24) -> list[BreakGlassGrant]:
        async with self.store.read() as repo:
            return await repo.break_glass.recent(datetime.now(UTC) - timedelta(hours=hours))

    @staticmethod
    def _audit(actor: Actor, roles: list[str], action: str, g: BreakGlassGrant, detail: str) -> AuditEvent:
        return AuditEvent(
            at=datetime.now(UTC), actor=actor.id, roles=sorted(roles), action=action, outcome="success",
            entity_type="Patient", entity_id=g.patient_id, detail=detail, source=actor.source,
            domain=actor.facility or PLATFORM,
        )
