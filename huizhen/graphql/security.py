"""The security officers' console: roles as tables, the policy CSV, the dry run, the chain, break-glass.

Reads need ``policy:read`` or ``audit:read`` (security officers and auditors
by default); changes need ``policy:write`` (security officers). A clinician's
``breakGlass`` needs ``patient:break_glass``. The console itself is static
(``/dashboard/security/``) and asks these fields with the user's token.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Final

import strawberry

from huizhen.graphql.access import Policy, RoleAssignment
from huizhen.graphql.audit_query import audit_filter
from huizhen.graphql.guard import can
from huizhen.graphql.subscriptions import bus_events, subscribed
from huizhen.graphql.types import Info, iso
from huizhen.integration import model as m
from huizhen.integration.errors import BadInput, Forbidden
from huizhen.integration.repo.audit import AuditFilter
from huizhen.rbac import audit, breakglass
from huizhen.rbac.dryrun import dry_run, proposed_rules
from huizhen.rbac.policy import ACTIONS, OBJECTS, ROLES, Rule, etag, parse_csv, role_of, to_csv

_MAX_DAYS: Final = 366
_MAX_EXPORT: Final = 100_000


@strawberry.type(description="One role's policy lines per domain and its stored assignments, with a version tag.")
class RolePolicy:
    role: str
    etag: str
    policies: list[Policy]
    assignments: list[RoleAssignment]


@strawberry.type
class DecisionChange:
    user: str
    domain: str
    object: str
    action: str
    was_allowed: bool
    now_allowed: bool
    count: int


@strawberry.type(description="What a policy change would do to the access decisions of the last days.")
class PolicyDryRun:
    days: int
    examined: int
    skipped: int
    added: list[str]  # policy lines the change adds
    removed: list[str]  # and removes
    changes: list[DecisionChange]


@strawberry.type
class AuditChainStatus:
    ok: bool
    checked: int
    broken_at: int | None
    event_id: str | None
    reason: str | None
    checked_at: str


@strawberry.enum
class BreakGlassStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"


@strawberry.type
class BreakGlass:
    _m: strawberry.Private[m.BreakGlassGrant]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def user(self) -> str:
        return self._m.user_id

    @strawberry.field
    def roles(self) -> list[str]:
        return list(self._m.roles)

    @strawberry.field
    def domain(self) -> str:
        return self._m.domain

    @strawberry.field
    def patient_id(self) -> strawberry.ID:
        return strawberry.ID(self._m.patient_id)

    @strawberry.field
    def reason(self) -> str:
        return self._m.reason

    @strawberry.field
    def granted_at(self, info: Info) -> str:
        return iso(self._m.granted_at, info) or ""

    @strawberry.field
    def expires_at(self, info: Info) -> str:
        return iso(self._m.expires_at, info) or ""

    @strawberry.field
    def status(self) -> BreakGlassStatus:
        return BreakGlassStatus.ACTIVE if self._m.active(datetime.now(UTC)) else BreakGlassStatus.EXPIRED

    @strawberry.field
    def acknowledged_by(self) -> str | None:
        return self._m.acknowledged_by

    @strawberry.field
    def acknowledged_at(self, info: Info) -> str | None:
        return iso(self._m.acknowledged_at, info)


def _lines(lines: list[str] | None, what: str) -> list[Rule]:
    """Policy CSV lines (``p, role, domain, object, action`` / ``g, user, role, domain``), all or nothing."""
    try:
        return parse_csv("\n".join(lines or []))
    except BadInput as exc:
        raise BadInput(f"{what}: {exc}") from exc


def _role_policy(rules: list[Rule], role: str) -> RolePolicy:
    mine = [r for r in rules if role_of(r) == role]
    return RolePolicy(
        role=role, etag=etag(rules, role),
        policies=[Policy.of(r) for r in mine if r.ptype == "p"],
        assignments=[RoleAssignment(user=r.v0, role=r.v1, domain=r.v2) for r in mine if r.ptype == "g"],
    )


@strawberry.type(description="What a policy line may name: the built-in roles, the objects and the actions.")
class PolicyVocabulary:
    roles: list[str]
    objects: list[str]
    actions: list[str]


@strawberry.type
class SecurityQuery:
    @strawberry.field(permission_classes=can("policy", "read"))
    def policy_vocabulary(self) -> PolicyVocabulary:
        return PolicyVocabulary(roles=sorted(ROLES), objects=sorted(OBJECTS), actions=sorted(ACTIONS))

    @strawberry.field(permission_classes=can("policy", "read"), description="Every built-in role, with its lines.")
    def policy_roles(self, info: Info) -> list[RolePolicy]:
        rules = info.context.services.authorizer.rules
        return [_role_policy(rules, role) for role in sorted(ROLES)]

    @strawberry.field(permission_classes=can("policy", "read"), description="The version tag of the whole policy.")
    def policy_etag(self, info: Info) -> str:
        return etag(info.context.services.authorizer.rules)

    @strawberry.field(permission_classes=can("policy", "read"), description="The policy as a CSV file.")
    def policy_csv(self, info: Info) -> str:
        return to_csv(info.context.services.authorizer.rules)

    @strawberry.field(
        permission_classes=can("policy", "read"),
        description="Which access decisions of the last `days` days (from the audit trail) the change would turn "
        "around, per user, domain, object and action. add/remove: policy CSV lines; csv: a whole policy file "
        "that would replace the current one. Nothing is changed.",
    )
    async def policy_dry_run(
        self, info: Info, add: list[str] | None = None, remove: list[str] | None = None, csv: str | None = None,
        days: int = 30,
    ) -> PolicyDryRun:
        if not 1 <= days <= _MAX_DAYS:
            raise BadInput(f"days must be between 1 and {_MAX_DAYS}")
        if csv is not None and (add or remove):
            raise BadInput("give either csv or add/remove lines, not both")
        services = info.context.services
        current = services.authorizer.rules
        proposed = proposed_rules(
            current, add=_lines(add, "add"), remove=_lines(remove, "remove"), csv=csv,
        )
        since = datetime.now(UTC) - timedelta(days=days)
        async with services.store.read() as repo:
            events = [e async for e in repo.audit.all(AuditFilter(since=since))]
        report = dry_run(services.authorizer.model_path, current, proposed, events)
        before, after = set(current), set(proposed)
        return PolicyDryRun(
            days=days, examined=report.examined, skipped=report.skipped,
            added=[r.line() for r in sorted(after - before)], removed=[r.line() for r in sorted(before - after)],
            changes=[DecisionChange(
                user=c.user, domain=c.domain, object=c.object, action=c.action, was_allowed=c.was_allowed,
                now_allowed=c.now_allowed, count=c.count,
            ) for c in report.changes],
        )

    @strawberry.field(permission_classes=can("audit", "read"), description="Walk the audit hash chain now.")
    async def audit_chain(self, info: Info) -> AuditChainStatus:
        v = await audit.verify(info.context.services.store)
        return AuditChainStatus(
            ok=v.ok, checked=v.checked, broken_at=v.broken_at, event_id=v.event_id, reason=v.reason,
            checked_at=iso(datetime.now(UTC), info) or "",
        )

    @strawberry.field(
        permission_classes=can("audit", "read"),
        description="The filtered audit trail as FHIR AuditEvent-shaped JSON lines, oldest first.",
    )
    async def audit_export(
        self, info: Info, actor: str | None = None, patient: str | None = None, action: str | None = None,
        outcome: str | None = None, since: str | None = None, until: str | None = None,
    ) -> str:
        where = await audit_filter(info, patient=patient, action=action, outcome=outcome, since=since, until=until)
        lines: list[str] = []
        async with info.context.services.store.read() as repo:
            async for e in repo.audit.all(where):
                if actor and e.actor != actor:
                    continue
                lines.append(json.dumps(audit.fhir_shaped(e), ensure_ascii=False))
                if len(lines) >= _MAX_EXPORT:
                    raise BadInput(f"more than {_MAX_EXPORT} events: narrow the filter (or use huizhen audit export)")
        info.context.audited().add("read", "AuditEvent", None, detail=f"auditExport {len(lines)} events")
        return "".join(line + "\n" for line in lines)

    @strawberry.field(
        permission_classes=can("audit", "read"), description="Break-glass grants of the last `hours` hours."
    )
    async def break_glass_grants(self, info: Info, hours: int = 24) -> list[BreakGlass]:
        if not 1 <= hours <= 24 * _MAX_DAYS:
            raise BadInput("hours must be between 1 and 8784")
        service = info.context.services.break_glass
        return [BreakGlass(_m=g) for g in await service.recent(hours)] if service else []


@strawberry.type
class SecurityMutation:
    @strawberry.mutation(
        permission_classes=can("policy", "write"),
        description="Replace the whole policy with a CSV file; a malformed line rejects the file with its line "
        "number. expectedEtag: policyEtag the file was based on (CONFLICT when the policy changed since).",
    )
    async def import_policy(
        self, info: Info, csv: str, reason: str | None = None, expected_etag: str | None = None
    ) -> int:
        rules = parse_csv(csv)
        if not rules:
            raise BadInput("the file holds no policy line: refusing to remove every permission")
        await info.context.services.policies.replace(
            rules, info.context.actor, reason=reason, expected_etag=expected_etag
        )
        return len(set(rules))

    @strawberry.mutation(
        permission_classes=can("patient", "break_glass"),
        description="Emergency access to one patient for the caller alone, with a mandatory reason; it expires "
        "by itself (break_glass_ttl_seconds) and the security officers see it live.",
    )
    async def break_glass(self, info: Info, patient_id: strawberry.ID, reason: str) -> BreakGlass:
        ctx = info.context
        if ctx.services.break_glass is None:
            raise BadInput("break-glass is not available on this server")
        g = await ctx.services.break_glass.grant(ctx.actor, sorted(ctx.roles), str(patient_id), reason)
        return BreakGlass(_m=g)

    @strawberry.mutation(permission_classes=can("policy", "write"), description="An officer has reviewed it.")
    async def acknowledge_break_glass(self, info: Info, id: strawberry.ID) -> BreakGlass:
        ctx = info.context
        if ctx.services.break_glass is None:
            raise BadInput("break-glass is not available on this server")
        return BreakGlass(_m=await ctx.services.break_glass.acknowledge(str(id), ctx.actor, sorted(ctx.roles)))


@strawberry.type
class SecuritySubscription:
    @strawberry.subscription(
        description="Break-glass grants live, as they are made and as officers acknowledge them; for those who "
        "may read the audit trail."
    )
    async def security_alerts(self, info: Info) -> AsyncGenerator[BreakGlass, None]:
        if not info.context.allowed("audit", "read"):
            raise Forbidden("securityAlerts needs `audit read`")
        service = info.context.services.break_glass
        if service is None:
            raise BadInput("break-glass is not configured")
        with subscribed(info, breakglass.TOPIC) as sub:
            async for event in bus_events(info, sub):
                grant = await service.get(str(event.data.get("id")))
                if grant is not None:
                    yield BreakGlass(_m=grant)
