"""Policy as data and the audit trail, for security officers and auditors.

``policies``, ``roleAssignments`` and ``explainAccess`` read the live policy;
``addPolicy``, ``removePolicy``, ``assignRole`` and ``revokeRole`` change it
(``policy:write``, security officers by default) through
:class:`huizhen.rbac.service.PolicyService`, which audits each change and
tells every instance. ``auditEvents`` pages the audit trail (``audit:read``).
"""

from __future__ import annotations

import strawberry

from huizhen.graphql.audit_query import audit_filter
from huizhen.graphql.guard import can
from huizhen.graphql.types import Connection, Info, connection, iso
from huizhen.integration import model as m
from huizhen.integration.errors import BadInput
from huizhen.rbac.policy import ROLES, Rule


@strawberry.type
class Policy:
    subject: str
    domain: str
    object: str
    action: str

    @classmethod
    def of(cls, r: Rule) -> Policy:
        return cls(subject=r.v0, domain=r.v1, object=r.v2, action=r.v3)


@strawberry.input
class PolicyInput:
    subject: str
    domain: str
    object: str
    action: str

    def rule(self) -> Rule:
        return Rule.permission(self.subject.strip(), self.domain.strip(), self.object.strip(), self.action.strip())


@strawberry.type
class RoleAssignment:
    user: str
    role: str
    domain: str


@strawberry.type
class AccessDecision:
    allowed: bool
    reasons: list[str]


@strawberry.type
class AuditEvent:
    _m: strawberry.Private[m.AuditEvent]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def at(self, info: Info) -> str:
        return iso(self._m.at, info) or ""

    @strawberry.field
    def actor(self) -> str:
        return self._m.actor

    @strawberry.field
    def roles(self) -> list[str]:
        return list(self._m.roles)

    @strawberry.field
    def action(self) -> str:
        return self._m.action

    @strawberry.field
    def entity_type(self) -> str | None:
        return self._m.entity_type

    @strawberry.field
    def entity_id(self) -> strawberry.ID | None:
        return strawberry.ID(self._m.entity_id) if self._m.entity_id else None

    @strawberry.field
    def outcome(self) -> str:
        return self._m.outcome

    @strawberry.field
    def detail(self) -> str | None:
        return self._m.detail

    @strawberry.field
    def source(self) -> str | None:
        return self._m.source

    @strawberry.field(description="The RBAC domain the request was decided in (recorded since 0013).")
    def domain(self) -> str | None:
        return self._m.domain


@strawberry.type
class AccessQuery:
    @strawberry.field(permission_classes=can("policy", "read"))
    def policies(self, info: Info) -> list[Policy]:
        return [Policy.of(r) for r in info.context.services.authorizer.rules if r.ptype == "p"]

    @strawberry.field(permission_classes=can("policy", "read"))
    def role_assignments(self, info: Info, user: str | None = None) -> list[RoleAssignment]:
        return [
            RoleAssignment(user=r.v0, role=r.v1, domain=r.v2)
            for r in info.context.services.authorizer.rules
            if r.ptype == "g" and (user is None or r.v0 == user)
        ]

    @strawberry.field(
        permission_classes=can("policy", "read"),
        description="Whether the user's stored roles allow the action, with the role chain and policy lines. "
        "role: also as if the user's token carried this role (the console's access tester asks about a role "
        "with user set to the role's name, or with any user and role).",
    )
    def explain_access(
        self, info: Info, user: str, domain: str, object: str, action: str, role: str | None = None
    ) -> AccessDecision:
        token_roles = [checked_role(role)] if role else []
        d = info.context.services.authorizer.explain(user, domain, object, action, token_roles)
        return AccessDecision(allowed=d.allowed, reasons=d.reasons)

    @strawberry.field(
        permission_classes=can("audit", "read"),
        description="The audit trail, newest first. patient: a Huizhen id, an identifier (value or system|value) "
        "or a pseudonym (HZP-…); since/until: ISO 8601 times with offset.",
    )
    async def audit_events(
        self, info: Info, entity_id: strawberry.ID | None = None, actor: str | None = None,
        first: int | None = None, after: str | None = None, patient: str | None = None, action: str | None = None,
        outcome: str | None = None, since: str | None = None, until: str | None = None,
    ) -> Connection[AuditEvent]:
        where = await audit_filter(info, patient=patient, action=action, outcome=outcome, since=since, until=until)
        async with info.context.services.store.read() as repo:
            page = await repo.audit.search(
                entity_id=str(entity_id) if entity_id is not None else None, actor=actor or None, first=first,
                after=after, where=where,
            )
        info.context.audited().add("read", "AuditEvent", None, detail=f"auditEvents entity={entity_id} actor={actor}"
                                   + (" patient=…" if patient else ""))
        return connection(page, AuditEvent)  # type: ignore[arg-type]


_CHANGE = (
    " reason: why (written to the audit trail with the change; the security console requires it)."
    " expectedEtag: the role's etag (policyRoles) the change is based on; another change to the role"
    " since then answers CONFLICT and nothing is written."
)


@strawberry.type
class AccessMutation:
    @strawberry.mutation(permission_classes=can("policy", "write"), description="Add a p line." + _CHANGE)
    async def add_policy(
        self, info: Info, input: PolicyInput, reason: str | None = None, expected_etag: str | None = None
    ) -> Policy:
        rule = input.rule()
        await info.context.services.policies.add(rule, info.context.actor, reason=reason, expected_etag=expected_etag)
        return Policy.of(rule)

    @strawberry.mutation(permission_classes=can("policy", "write"), description="Remove a p line." + _CHANGE)
    async def remove_policy(
        self, info: Info, input: PolicyInput, reason: str | None = None, expected_etag: str | None = None
    ) -> bool:
        return await info.context.services.policies.remove(
            input.rule(), info.context.actor, reason=reason, expected_etag=expected_etag
        )

    @strawberry.mutation(permission_classes=can("policy", "write"), description="Store a g line." + _CHANGE)
    async def assign_role(
        self, info: Info, user: str, role: str, domain: str, reason: str | None = None,
        expected_etag: str | None = None,
    ) -> RoleAssignment:
        rule = Rule.assignment(user.strip(), role.strip(), domain.strip())
        await info.context.services.policies.add(rule, info.context.actor, reason=reason, expected_etag=expected_etag)
        return RoleAssignment(user=rule.v0, role=rule.v1, domain=rule.v2)

    @strawberry.mutation(permission_classes=can("policy", "write"), description="Remove a g line." + _CHANGE)
    async def revoke_role(
        self, info: Info, user: str, role: str, domain: str, reason: str | None = None,
        expected_etag: str | None = None,
    ) -> bool:
        rule = Rule.assignment(user.strip(), role.strip(), domain.strip())
        return await info.context.services.policies.remove(
            rule, info.context.actor, reason=reason, expected_etag=expected_etag
        )


def checked_role(role: str) -> str:
    role = role.strip()
    if role not in ROLES:
        raise BadInput(f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})")
    return role
