"""A viewer's row-level :class:`~huizhen.rbac.rows.Scope`, from claims, stored roles and the directory."""

from __future__ import annotations

from huizhen.integration.store import Store
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM, Scope


async def resolve_scope(store: Store, principal: Principal, roles: frozenset[str] | None = None) -> Scope:
    """The facility id behind the token's facility code, an expert's department."""
    roles = roles if roles is not None else frozenset(principal.roles)
    async with store.read() as repo:
        facility = (
            await repo.directory.facility_by_code(principal.facility)
            if principal.facility and principal.facility != PLATFORM else None
        )
        practitioner = await repo.directory.practitioner(principal.sub) if "expert" in roles else None
    return Scope(
        sub=principal.sub,
        roles=roles,
        facility_code=principal.facility,
        facility_id=facility.id if facility else None,
        department=practitioner.department if practitioner else None,
    )
