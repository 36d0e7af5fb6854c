"""Policy files and the Authorizer, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.policy import ROLES, PolicyError, Rule, parse_csv, to_csv

RBAC = Path(__file__).resolve().parents[2] / "config" / "rbac"


def default_rules() -> list[Rule]:
    return parse_csv((RBAC / "policy.csv").read_text(encoding="utf-8"))


def test_the_default_policy_gives_every_built_in_role_something() -> None:
    rules = default_rules()
    assert {r.v0 for r in rules if r.ptype == "p"} == ROLES
    assert parse_csv(to_csv(rules)) == sorted(set(rules))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("p, expert, *, patient, read\np, surgeon, *, patient, read\n", 2, "unknown role 'surgeon'"),
        ("# c\n\np, expert, *, patient, fly\n", 3, "unknown action 'fly'"),
        ("p, expert, *, spaceship, read\n", 1, "unknown object"),
        ("p, expert, *, patient\n", 1, "4 non-empty fields"),
        ("g, alice, expert\n", 1, "3 non-empty fields"),
        ("x, alice, expert, *\n", 1, "starts with p or g"),
        ("g, alice, auditor, FAC 1\n", 1, "invalid domain"),
        ("g, al'ice, auditor, *\n", 1, "invalid user id"),
        ("g, expert, auditor, *\n", 1, "is a role"),
        ('p, expert, *, "patient, read\n', 1, "fields"),
    ],
)
def test_a_bad_line_rejects_the_file_naming_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_csv(text)
    assert caught.value.line == line and words in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ")


def test_roles_from_token_and_store_in_domains() -> None:
    a = Authorizer(RBAC / "model.conf")
    a.load([*default_rules(), Rule.assignment("alice", "auditor", "FAC1"), Rule.assignment("bob", "coordinator", "*")])
    assert a.roles_of("alice", (), "FAC1") == {"auditor"}
    assert a.roles_of("alice", (), "FAC2") == frozenset()  # a facility's assignment stays in that facility
    assert a.roles_of("bob", ("expert",), "FAC2") == {"coordinator", "expert"}  # "*": everywhere
    assert a.allowed(frozenset({"auditor"}), "FAC1", "audit", "read")
    assert not a.allowed(frozenset({"auditor"}), "FAC1", "patient", "read")
    assert not a.allowed(frozenset(), "FAC1", "patient", "read")


def test_a_facility_specific_permission_holds_in_that_facility_only() -> None:
    a = Authorizer(RBAC / "model.conf")
    a.load([*default_rules(), Rule.permission("auditor", "FAC1", "message", "read")])
    assert a.allowed(frozenset({"auditor"}), "FAC1", "message", "read")
    assert not a.allowed(frozenset({"auditor"}), "FAC2", "message", "read")


def test_a_reload_drops_cached_decisions() -> None:
    a = Authorizer(RBAC / "model.conf")
    a.load(default_rules())
    assert a.allowed(frozenset({"expert"}), "*", "consultation", "read")
    a.load([r for r in default_rules() if r.v0 != "expert"])
    assert not a.allowed(frozenset({"expert"}), "*", "consultation", "read")


def test_explain_names_the_role_chain_and_the_policy_line() -> None:
    a = Authorizer(RBAC / "model.conf")
    a.load([*default_rules(), Rule.assignment("alice", "auditor", "*")])
    yes = a.explain("alice", "FAC1", "audit", "read")
    assert yes.allowed
    assert "role auditor: assigned by g, alice, auditor, *" in yes.reasons
    assert "allowed by p, auditor, *, audit, read (via role auditor)" in yes.reasons
    no = a.explain("alice", "FAC1", "patient", "write")
    assert not no.allowed and any(r.startswith("denied:") for r in no.reasons)
    assert not a.explain("nobody", "FAC1", "audit", "read").allowed
