"""The dry run of a policy change: which recorded access decisions would now come out differently.

The audit trail records, for every request, who asked (actor and roles), in
which RBAC domain (since migration 0013; older events carry none and are
counted as skipped), and what (action on an entity). :func:`access_request`
turns one event into the Casbin question that was asked; :func:`dry_run`
asks it twice, of an :class:`Authorizer` over the current rules and of a
second one over the proposed rules, and counts the answers that differ per
user, domain, object and action. It is a pure function of its inputs.

Which roles a user had: the recorded roles are the token's plus the roles
stored for the user (g lines) at the time. The stored ones are re-derived
from each policy, so adding or revoking a role assignment shows up too; a
role held both by the token and by a g line counts as held by the token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from huizhen.integration.model import AuditEvent
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.policy import ACTIONS, OBJECTS, Rule, parse_csv

# audit entity types → Casbin objects (the denials of a role check already name the Casbin object)
_OBJECT_OF: Final = {
    "Patient": "patient", "Consultation": "consultation", "Observation": "observation", "ImagingStudy": "study",
    "Message": "message", "AuditEvent": "audit", "Policy": "policy",
}
# a consultation mutation is audited as a "write" naming the operation; the role check asked this action
_ACTION_OF_OPERATION: Final = {
    "requestConsultation": "request", "submitConsultation": "submit", "assignExpert": "assign",
    "declineConsultation": "decline", "startConsultation": "start", "completeConsultation": "complete",
    "cancelConsultation": "cancel", "reprocessMessage": "reprocess",
}
_ACTION_ALIASES: Final = {"read-raw": "raw", "search": "read"}


@dataclass(frozen=True, slots=True, order=True)
class AccessRequest:
    user: str
    domain: str
    object: str
    action: str
    roles: tuple[str, ...]  # as recorded: the token's roles plus the stored ones of the time


@dataclass(frozen=True, slots=True)
class DecisionChange:
    user: str
    domain: str
    object: str
    action: str
    was_allowed: bool
    now_allowed: bool
    count: int


@dataclass(frozen=True, slots=True)
class DryRunReport:
    examined: int  # events that are access decisions with a domain
    skipped: int  # events that are not (logins, policy changes) or carry no domain
    changes: list[DecisionChange]


def access_request(e: AuditEvent) -> AccessRequest | None:
    """The Casbin question behind an audit event, or None when it was not one (or has no domain)."""
    if e.domain is None or e.entity_type is None:
        return None
    obj = e.entity_type if e.entity_type in OBJECTS else _OBJECT_OF.get(e.entity_type)
    action = _ACTION_ALIASES.get(e.action, e.action)
    if action == "write" and e.detail in _ACTION_OF_OPERATION:
        action = _ACTION_OF_OPERATION[e.detail]
    if obj is None or action not in ACTIONS:
        return None
    return AccessRequest(e.actor, e.domain, obj, action, tuple(sorted(e.roles)))


def proposed_rules(
    current: Iterable[Rule], *, add: Iterable[Rule] = (), remove: Iterable[Rule] = (), csv: str | None = None
) -> list[Rule]:
    """The policy after the change: a CSV replaces everything; else current − remove + add."""
    if csv is not None:
        return sorted(set(parse_csv(csv)))
    return sorted((set(current) - set(remove)) | set(add))


def dry_run(
    model_path: Path, current: Iterable[Rule], proposed: Iterable[Rule], events: Iterable[AuditEvent]
) -> DryRunReport:
    before, after = Authorizer(model_path), Authorizer(model_path)
    before.load(current)
    after.load(proposed)
    examined = skipped = 0
    counts: Counter[tuple[str, str, str, str, bool, bool]] = Counter()
    for e in events:
        req = access_request(e)
        if req is None:
            skipped += 1
            continue
        examined += 1
        token_roles = frozenset(req.roles) - before.stored_roles(req.user, req.domain)
        was = before.allowed(before.roles_of(req.user, token_roles, req.domain), req.domain, req.object, req.action)
        now = after.allowed(after.roles_of(req.user, token_roles, req.domain), req.domain, req.object, req.action)
        if was != now:
            counts[(req.user, req.domain, req.object, req.action, was, now)] += 1
    changes = [DecisionChange(*key, count=n) for key, n in sorted(counts.items())]
    return DryRunReport(examined, skipped, changes)
