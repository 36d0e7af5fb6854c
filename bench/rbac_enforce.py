"""Casbin checks per second with 1,000 policy lines: Enforcer, FastEnforcer, and Huizhen's memoised Authorizer.

The policy is the default ``config/rbac/policy.csv`` plus generated
facility-specific p lines and g lines (1,000 in all). Each engine answers the
same mix of (role, facility, object, action) requests, allowed and denied.
The standard ``Enforcer`` is asked with the user id as subject (role links
followed through the g lines), as the textbook RBAC-with-domains setup does;
``FastEnforcer`` and the ``Authorizer`` are asked per role, the way Huizhen asks.
Best of ``--rounds``. Prints JSON; asserts nothing.

    python bench/rbac_enforce.py [--seconds 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import casbin

from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.policy import ACTIONS, OBJECTS, ROLES, Rule, parse_csv

CONFIG = Path(__file__).resolve().parent.parent / "config" / "rbac"


def policy(total: int) -> list[Rule]:
    rules = parse_csv((CONFIG / "policy.csv").read_text(encoding="utf-8"))
    combos = itertools.cycle(itertools.product(sorted(ROLES), sorted(OBJECTS), sorted(ACTIONS - {"*"})))
    n = 0
    while len(rules) < total:
        role, obj, act = next(combos)
        rules.append(Rule("p", role, f"FAC{n % 200:03d}", obj, act))
        rules.append(Rule("g", f"user{n}", role, f"FAC{n % 200:03d}"))
        n += 1
    return rules[:total]


def rate(check: Callable[[int], bool], seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for i in range(100):
                check(n + i)
            n += 100
        best = max(best, n / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--policies", type=int, default=1000)
    args = ap.parse_args()
    rules = policy(args.policies)
    roles, objects = sorted(ROLES), sorted(OBJECTS)
    requests = [
        (f"user{i}", roles[i % len(roles)], f"FAC{i % 200:03d}", objects[i % len(objects)], ("read", "write")[i % 2])
        for i in range(997)
    ]

    plain = casbin.Enforcer(str(CONFIG / "model.conf"))
    plain.add_policies([r.fields for r in rules if r.ptype == "p"])
    plain.add_grouping_policies([r.fields for r in rules if r.ptype == "g"])
    fast = casbin.FastEnforcer(str(CONFIG / "model.conf"), cache_key_order=[0, 2])
    fast.add_policies([r.fields for r in rules if r.ptype == "p"])
    fast.add_grouping_policies([r.fields for r in rules if r.ptype == "g"])
    auth = Authorizer(CONFIG / "model.conf")
    auth.load(rules)

    def by_user(i: int) -> bool:
        user, _, dom, obj, act = requests[i % len(requests)]
        return bool(plain.enforce(user, dom, obj, act))

    def by_role(e: casbin.Enforcer) -> Callable[[int], bool]:
        def check(i: int) -> bool:
            _user, role, dom, obj, act = requests[i % len(requests)]
            return bool(e.enforce(role, dom, obj, act))
        return check

    def authorizer(i: int) -> bool:
        user, role, dom, obj, act = requests[i % len(requests)]
        return auth.allowed(auth.roles_of(user, (role,), dom), dom, obj, act)

    def authorizer_memo(i: int) -> bool:
        _user, role, dom, obj, act = requests[i % len(requests)]
        return auth.allowed(frozenset((role,)), dom, obj, act)

    out = {
        "benchmark": "rbac_enforce",
        "python": platform.python_version(),
        "casbin": getattr(casbin, "__version__", "pycasbin"),
        "policies": len(rules),
        "checks_per_s": {
            "Enforcer (user subject, g links)": round(rate(by_user, args.seconds, args.rounds)),
            "Enforcer (role subject)": round(rate(by_role(plain), args.seconds, args.rounds)),
            "FastEnforcer (role subject, key order [0, 2])": round(rate(by_role(fast), args.seconds, args.rounds)),
            "Authorizer (stored roles + memo)": round(rate(authorizer, args.seconds, args.rounds)),
            "Authorizer (memo hit, roles known)": round(rate(authorizer_memo, args.seconds, args.rounds)),
        },
        "note": "measured under load (2 cores shared)",
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
