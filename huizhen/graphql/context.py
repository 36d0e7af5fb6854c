"""Per-request context: who is asking, the services, and request-scoped DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from huizhen.integration.model import Actor, Facility, Patient, Practitioner
from huizhen.rbac.audit import AuditBuffer
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM, Scope
from huizhen.rbac.viewer import resolve_scope

if TYPE_CHECKING:
    from huizhen.app import Services


@dataclass
class Loaders:
    patient: DataLoader[str, Patient | None]
    practitioner: DataLoader[str, Practitioner | None]
    facility: DataLoader[str, Facility | None]


def make_loaders(services: Services) -> Loaders:
    store = services.store

    async def patients(ids: Sequence[str]) -> list[Patient | None]:
        async with store.read() as repo:
            found = {p.id: p for p in await repo.patients.by_ids(ids)}
        return [found.get(i) for i in ids]

    async def practitioners(ids: Sequence[str]) -> list[Practitioner | None]:
        async with store.read() as repo:
            found = {p.id: p for p in await repo.directory.practitioners_by_ids(ids)}
        return [found.get(i) for i in ids]

    async def facilities(ids: Sequence[str]) -> list[Facility | None]:
        async with store.read() as repo:
            found = {f.id: f for f in await repo.directory.facilities(ids)}
        return [found.get(i) for i in ids]

    return Loaders(
        patient=DataLoader(load_fn=patients),
        practitioner=DataLoader(load_fn=practitioners),
        facility=DataLoader(load_fn=facilities),
    )


@dataclass
class Context:
    services: Services
    principal: Principal
    source: str | None
    loaders: Loaders
    request: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    audit: AuditBuffer | None = None

    _scope: Scope | None = None
    _roles: frozenset[str] | None = None

    @property
    def actor(self) -> Actor:
        return self.principal.actor(self.source)

    @property
    def domain(self) -> str:
        """The RBAC domain of this request: the token's facility, ``*`` when it names none."""
        return self.principal.facility or PLATFORM

    @property
    def roles(self) -> frozenset[str]:
        """The token's roles plus the roles stored for the user in this domain (resolved once)."""
        if self._roles is None:
            self._roles = self.services.authorizer.roles_of(self.principal.sub, self.principal.roles, self.domain)
        return self._roles

    def allowed(self, obj: str, action: str) -> bool:
        return self.services.authorizer.allowed(self.roles, self.domain, obj, action)

    def audited(self) -> AuditBuffer:
        if self.audit is None:
            self.audit = AuditBuffer(self.principal.sub, sorted(self.roles), self.source, domain=self.domain)
        return self.audit

    async def scope(self) -> Scope:
        """The viewer's row-level scope, resolved once per request."""
        if self._scope is None:
            self._scope = await resolve_scope(self.services.store, self.principal, self.roles)
        return self._scope
