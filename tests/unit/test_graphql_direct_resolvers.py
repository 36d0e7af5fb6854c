"""Resolver fields called directly (huizhen.graphql.direct_resolvers.install_direct_resolvers) answer
exactly as strawberry's own chain: same data, same errors and paths, and a permission's "no"
still audited and answered as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from huizhen.graphql.direct_resolvers import install_direct_resolvers
from huizhen.graphql.execution import LeanExecutionContext
from huizhen.graphql.guard import can
from huizhen.rbac.audit import AuditBuffer


@dataclass
class Ctx:
    """What ``can`` asks of a request's context: the decision, the roles, the audit buffer."""

    allowed_objects: set[str]
    roles: frozenset[str] = frozenset({"tester"})
    domain: str = "*"
    audit: AuditBuffer = field(default_factory=lambda: AuditBuffer("u1", ["tester"], None))

    def allowed(self, obj: str, action: str) -> bool:
        return obj in self.allowed_objects

    def audited(self) -> AuditBuffer:
        return self.audit


@strawberry.type
class Item:
    n: int

    @strawberry.field(permission_classes=can("secret", "read"))
    def secret(self, info: strawberry.Info) -> str:
        return f"s{self.n}:{sorted(info.context.allowed_objects)}"

    @strawberry.field
    def scaled(self, by: int = 2, label: str | None = None) -> str:
        return f"{label or ''}{self.n * by}"

    @strawberry.field
    def broken(self) -> int | None:
        if self.n == 1:
            raise ValueError("no good")
        return self.n

    @strawberry.field
    def twice(self, info: strawberry.Info) -> list[Item]:
        return [Item(n=self.n * 10), Item(n=self.n * 10 + 1)]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [Item(n=0), Item(n=1)]


QUERY = """{ items { n secret scaled a: scaled(by: 5) b: scaled(label: "x") broken
             twice { n secret scaled(by: 3) } } }"""


def run(direct: bool, allowed: set[str]) -> tuple[Any, list[Any]]:
    schema = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext)
    if direct:
        assert install_direct_resolvers(schema) >= 4
    ctx = Ctx(allowed)
    result = schema.execute_sync(QUERY, context_value=ctx)
    audit = [(e.action, e.entity_type, e.outcome, e.detail) for e in ctx.audit.events]
    return result, audit


def shape(result: Any) -> tuple[Any, list[Any]]:
    return result.data, sorted((e.message, e.path) for e in result.errors or [])


def test_same_answers_as_strawberrys_chain() -> None:
    (direct, _), (full, _) = run(True, {"secret"}), run(False, {"secret"})
    assert shape(direct) == shape(full)
    assert direct.data["items"][0]["scaled"] == "0" and direct.data["items"][0]["b"] == "x0"
    assert direct.data["items"][0]["twice"][1] == {"n": 1, "secret": "s1:['secret']", "scaled": "3"}
    assert [e.path for e in direct.errors] == [["items", 1, "broken"]]


def test_a_denial_is_audited_and_answered_as_before() -> None:
    (direct, audit_direct), (full, audit_full) = run(True, set()), run(False, set())
    assert shape(direct) == shape(full)
    assert audit_direct == audit_full and audit_direct[0][:3] == ("read", "secret", "denied")
    assert any("may not read secret" in e.message for e in direct.errors)
