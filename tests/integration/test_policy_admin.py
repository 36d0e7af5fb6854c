"""Policy as data over GraphQL: security officers change it live; every change is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import GraphQLClient, RunningServer, running_server


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        yield srv


async def test_assign_explain_and_revoke_a_stored_role(server: RunningServer) -> None:
    officer = server.client(server.token("sec1", "security_officer"))
    # a user whose token carries no role at all: only stored assignments count
    plain = server.client(server.services.tokens.issue("aud9", [], "TWN001"))
    audit = "{ auditEvents(first: 1) { totalCount } }"
    assert await plain.error_code(audit) == "FORBIDDEN"

    assigned = await officer.execute('mutation { assignRole(user: "aud9", role: "auditor", domain: "TWN001")'
                                      " { user role domain } }")
    assert assigned["assignRole"] == {"user": "aud9", "role": "auditor", "domain": "TWN001"}
    assert (await plain.execute(audit))["auditEvents"]["totalCount"] >= 1
    listed = await officer.execute('{ roleAssignments(user: "aud9") { user role domain } }')
    assert listed["roleAssignments"] == [{"user": "aud9", "role": "auditor", "domain": "TWN001"}]

    why = (await officer.execute('{ explainAccess(user: "aud9", domain: "TWN001", object: "audit", action: "read")'
                                 " { allowed reasons } }"))["explainAccess"]
    assert why["allowed"]
    assert "role auditor: assigned by g, aud9, auditor, TWN001" in why["reasons"]
    assert "allowed by p, auditor, *, audit, read (via role auditor)" in why["reasons"]
    elsewhere = (await officer.execute('{ explainAccess(user: "aud9", domain: "TWN002", object: "audit",'
                                       ' action: "read") { allowed reasons } }'))["explainAccess"]
    assert not elsewhere["allowed"]

    revoked = await officer.execute('mutation { revokeRole(user: "aud9", role: "auditor", domain: "TWN001") }')
    assert revoked["revokeRole"] is True
    assert await plain.error_code(audit) == "FORBIDDEN"
    assert (await officer.execute('mutation { revokeRole(user: "aud9", role: "auditor", domain: "TWN001") }'))[
        "revokeRole"] is False

    trail = await officer.execute('{ auditEvents(actor: "sec1") { edges { node { action outcome detail } } } }')
    actions = [(e["node"]["action"], e["node"]["outcome"], e["node"]["detail"])
               for e in trail["auditEvents"]["edges"]]
    assert ("policy-add", "success", "g, aud9, auditor, TWN001") in actions
    assert ("policy-remove", "success", "g, aud9, auditor, TWN001") in actions
    assert ("policy-remove", "unchanged", "g, aud9, auditor, TWN001") in actions
    for c in (officer, plain):
        await c.aclose()


async def test_add_and_remove_a_policy_line(server: RunningServer) -> None:
    officer = server.client(server.token("sec1", "security_officer"))
    auditor = server.client(server.token("aud1", "auditor", facility="TWN001"))
    messages = "{ messages { totalCount } }"
    assert await auditor.error_code(messages) == "FORBIDDEN"
    line = '{subject: "auditor", domain: "TWN001", object: "message", action: "read"}'
    added = await officer.execute(f"mutation {{ addPolicy(input: {line}) {{ subject domain object action }} }}")
    assert added["addPolicy"] == {"subject": "auditor", "domain": "TWN001", "object": "message", "action": "read"}
    assert (await auditor.execute(messages))["messages"]["totalCount"] == 0
    policies = (await officer.execute("{ policies { subject domain object action } }"))["policies"]
    assert added["addPolicy"] in policies
    assert (await officer.execute(f"mutation {{ removePolicy(input: {line}) }}"))["removePolicy"] is True
    assert await auditor.error_code(messages) == "FORBIDDEN"
    for c in (officer, auditor):
        await c.aclose()


@pytest.mark.parametrize(
    ("mutation", "words"),
    [
        ('addPolicy(input: {subject: "nobody", domain: "*", object: "patient", action: "read"}) { subject }',
         "unknown role 'nobody'"),
        ('addPolicy(input: {subject: "expert", domain: "*", object: "patient", action: "fly"}) { subject }',
         "unknown action 'fly'"),
        ('assignRole(user: "x\' OR 1=1 --", role: "auditor", domain: "*") { user }', "invalid user id"),
        ('assignRole(user: "u", role: "auditor", domain: "TWN001; DROP TABLE rbac_rules") { user }',
         "invalid domain"),
    ],
)
async def test_bad_policy_input_is_refused_and_changes_nothing(
    server: RunningServer, mutation: str, words: str
) -> None:
    officer: GraphQLClient = server.client(server.token("sec1", "security_officer"))
    before = await officer.execute("{ policies { subject } roleAssignments { user } }")
    body = (await officer.raw(f"mutation {{ {mutation} }}")).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT" and words in body["errors"][0]["message"]
    assert await officer.execute("{ policies { subject } roleAssignments { user } }") == before
    await officer.aclose()
