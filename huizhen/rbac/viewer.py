"""A viewer's row-level :class:`~huizhen.rbac.rows.Scope`, from claims, stored roles and the directory."""

from __future__ import annotations

from datetime import UTC, datetime

from huizhen.integration.store import Store
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import BREAK_GLASS_ROLES, PLATFORM, Scope


async def resolve_scope(store: Store, principal: Principal, roles: frozenset[str] | None = None) -> Scope:
    """The facility id behind the token's facility code, an expert's department, a clinician's break-glass grants."""
    roles = roles if roles is not None else frozenset(principal.roles)
    async with store.read() as repo:
        facility = (
            await repo.directory.facility_by_code(principal.facility)
            if principal.facility and principal.facility != PLATFORM else None
        )
        practitioner = await repo.directory.practitioner(principal.sub) if "expert" in roles else None
        grants = (
            await repo.break_glass.active_patients(principal.sub, datetime.now(UTC))
            if roles & BREAK_GLASS_ROLES else frozenset()
        )
    return Scope(
        sub=principal.sub,
        roles=roles,
        facility_code=principal.facility,
        facility_id=facility.id if facility else None,
        department=practitioner.department if practitioner else None,
        break_glass=grants,
    )
