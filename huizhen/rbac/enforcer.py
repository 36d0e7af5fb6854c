"""The Casbin enforcer behind every edge, with decisions cached until the policy changes.

Requests are asked per role: a user's roles are the token's ``roles`` in the
request's domain (the token's facility, ``*`` when it names none) plus the
roles stored for the user id (g lines in that domain or in ``*``), and each
role is checked with ``enforce(role, domain, object, action)``. Because the
subject of every check is a role name, pycasbin's ``FastEnforcer`` can index
the p lines by their subject (``cache_key_order=[0]``); ``bench/rbac_enforce.py``
measured it against the standard ``Enforcer``. Decisions are memoised in a
dict keyed by (roles, domain, object, action) and dropped whenever the policy
is reloaded, so the hot path of a request is one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import casbin

from huizhen.rbac.policy import PLATFORM, Rule

_MEMO_LIMIT: Final = 50_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[str]


class Authorizer:
    def __init__(self, model_path: Path, *, fast: bool = True) -> None:
        self.model_path = model_path
        self.fast = fast
        self._enforcer = self._new_enforcer([])
        self._rules: list[Rule] = []
        self._memo: dict[tuple[frozenset[str], str, str, str], bool] = {}
        self.version = 0

    def _new_enforcer(self, rules: list[Rule]) -> casbin.Enforcer:
        e = (
            casbin.FastEnforcer(str(self.model_path), cache_key_order=[0, 2])
            if self.fast else casbin.Enforcer(str(self.model_path))
        )
        p = [r.fields for r in rules if r.ptype == "p"]
        g = [r.fields for r in rules if r.ptype == "g"]
        if p:
            e.add_policies(p)
        if g:
            e.add_grouping_policies(g)
        return e

    def load(self, rules: Iterable[Rule]) -> None:
        """Swap in a new policy; the old enforcer serves until the new one is complete."""
        rules = sorted(set(rules))
        enforcer = self._new_enforcer(rules)
        self._enforcer, self._rules, self._memo = enforcer, rules, {}
        self.version += 1

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def stored_roles(self, user: str, domain: str) -> set[str]:
        """Roles assigned to ``user`` by g lines in ``domain`` or platform-wide."""
        roles = set(self._enforcer.get_roles_for_user_in_domain(user, domain))
        if domain != PLATFORM:
            roles |= set(self._enforcer.get_roles_for_user_in_domain(user, PLATFORM))
        return roles

    def roles_of(self, user: str, token_roles: Iterable[str], domain: str) -> frozenset[str]:
        return frozenset(token_roles) | self.stored_roles(user, domain)

    def allowed(self, roles: frozenset[str], domain: str, obj: str, action: str) -> bool:
        key = (roles, domain, obj, action)
        found = self._memo.get(key)
        if found is None:
            found = any(self._enforcer.enforce(role, domain, obj, action) for role in roles)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = found
        return found

    def explain(self, user: str, domain: str, obj: str, action: str, token_roles: Iterable[str] = ()) -> Decision:
        """Allow or deny, with the role chain and the policy lines that decided it."""
        reasons: list[str] = []
        for role in sorted(set(token_roles)):
            reasons.append(f"role {role}: from the token, in domain {domain}")
        for dom in (domain, PLATFORM) if domain != PLATFORM else (PLATFORM,):
            for role in sorted(self._enforcer.get_roles_for_user_in_domain(user, dom)):
                reasons.append(f"role {role}: assigned by g, {user}, {role}, {dom}")
        roles = self.roles_of(user, token_roles, domain)
        if user in _roles_named(self._rules):  # asking about a role itself
            roles |= {user}
            reasons.append(f"role {user}: asked about directly")
        allowed = False
        for role in sorted(roles):
            ok, lines = self._enforcer.enforce_ex(role, domain, obj, action)
            if ok:
                allowed = True
                reasons.append(f"allowed by p, {', '.join(lines)} (via role {role})")
        if not roles:
            reasons.append(f"{user} has no role in domain {domain}")
        if not allowed:
            reasons.append(f"denied: no policy line lets {', '.join(sorted(roles)) or user} {action} {obj} in {domain}")
        return Decision(allowed, reasons)


def _roles_named(rules: list[Rule]) -> set[str]:
    return {r.v0 for r in rules if r.ptype == "p"}
