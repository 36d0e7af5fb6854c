"""The security console's API over a real server, on SQLite and PostgreSQL: reasons, conflicts, the dry run,
the audit viewer's filters and the chain, break-glass (its row scope, its expiry, its acknowledgement)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import GraphQLClient
from tests.integration.rbac_support import World, rbac_world
from tests.ws_client import SubscriptionEnded, graphql_socket

ROLES_Q = "{ policyRoles { role etag policies { subject domain object action } assignments { user domain } } }"
ADD = """mutation($reason: String, $etag: String) {
  addPolicy(input: {subject: "primary_doctor", domain: "TWN001", object: "consultation", action: "assign"},
            reason: $reason, expectedEtag: $etag) { subject } }"""
PATIENT = 'query($id: ID!) { patient(id: $id) { id name { text } } }'


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    async with rbac_world(tmp_path / "data", db_url) as w, _closing_clients(w):
        yield w


@contextlib.asynccontextmanager
async def _closing_clients(world: World) -> AsyncIterator[None]:
    """Every client a test opens is closed at its end (no socket left to the garbage collector)."""
    opened: list[GraphQLClient] = []
    make = world.server.client

    def client(token: str | None) -> GraphQLClient:
        opened.append(make(token))
        return opened[-1]

    world.server.client = client  # type: ignore[method-assign]
    try:
        yield
    finally:
        for c in opened:
            await c.aclose()


async def _etag(world: World, role: str) -> str:
    roles = (await world.server.client(world.token("security_officer")).execute(ROLES_Q))["policyRoles"]
    return next(r["etag"] for r in roles if r["role"] == role)


async def test_a_change_carries_its_reason_and_a_stale_etag_is_a_conflict(world: World) -> None:
    officer = world.server.client(world.token("security_officer"))
    second = world.server.client(world.server.token("sec2", "security_officer"))
    etag = await _etag(world, "primary_doctor")
    # two officers opened the role at the same version; the first one's change lands
    await officer.execute(ADD, reason="乡镇卫生院 doctors assign their own cases", etag=etag)
    body = (await second.raw("""mutation($etag: String) { removePolicy(input: {subject: "primary_doctor",
        domain: "*", object: "case", action: "read"}, reason: "no longer", expectedEtag: $etag) }""",
                             etag=etag)).json()
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    roles = (await officer.execute(ROLES_Q))["policyRoles"]
    doctor = next(r for r in roles if r["role"] == "primary_doctor")
    assert {"subject": "primary_doctor", "domain": "TWN001", "object": "consultation", "action": "assign"} \
        in doctor["policies"]
    assert {"subject": "primary_doctor", "domain": "*", "object": "case", "action": "read"} in doctor["policies"]
    # another role's etag did not move: editing a different role is no conflict
    await second.execute("""mutation($etag: String) { assignRole(user: "aud7", role: "auditor", domain: "*",
        reason: "quarterly review", expectedEtag: $etag) { user } }""", etag=await _etag(world, "auditor"))
    async with world.server.services.store.read() as repo:
        changes = [e async for e in repo.audit.all() if e.action.startswith("policy-")]
    assert [(e.actor, e.detail) for e in changes] == [
        ("sec1", "p, primary_doctor, TWN001, consultation, assign; reason: 乡镇卫生院 doctors assign their own cases"),
        ("sec2", "g, aud7, auditor, *; reason: quarterly review"),
    ]


async def test_bad_lines_and_an_auditor_are_refused(world: World) -> None:
    officer = world.server.client(world.token("security_officer"))
    auditor = world.server.client(world.token("auditor"))
    before = (await officer.execute("{ policyCsv }"))["policyCsv"]
    assert await officer.error_code('mutation { addPolicy(input: {subject: "surgeon", domain: "*", object: '
                                    '"patient", action: "read"}, reason: "x") { subject } }') == "BAD_INPUT"
    assert await officer.error_code('mutation { addPolicy(input: {subject: "expert", domain: "*", object: '
                                    '"patient", action: "fly"}, reason: "x") { subject } }') == "BAD_INPUT"
    broken = before + "p, expert, *, patient\n"
    body = (await officer.raw("mutation($csv: String!) { importPolicy(csv: $csv, reason: \"r\") }", csv=broken)).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert f"line {len(broken.splitlines())}:" in body["errors"][0]["message"]
    assert (await officer.execute("{ policyCsv }"))["policyCsv"] == before  # nothing of the file applied
    assert await auditor.error_code(ADD, reason="x") == "FORBIDDEN"
    assert await auditor.error_code('mutation($c: String!) { importPolicy(csv: $c) }', c=before) == "FORBIDDEN"
    assert (await auditor.execute("{ policyCsv }"))["policyCsv"] == before  # read-only, but reads
    # an import round-trips and needs the current policy etag when one is given
    tag = (await officer.execute("{ policyEtag }"))["policyEtag"]
    n = (await officer.execute('mutation($c: String!, $t: String) { importPolicy(csv: $c, reason: "restore", '
                               "expectedEtag: $t) }", c=before, t=tag))["importPolicy"]
    assert n == len([line for line in before.splitlines() if line and not line.startswith("#")])
    assert await officer.error_code('mutation($c: String!) { importPolicy(csv: $c, expectedEtag: "stale") }',
                                    c=before) == "CONFLICT"


async def test_access_tester_by_role_and_the_dry_run_reports_exactly_what_changes(world: World) -> None:
    officer = world.server.client(world.token("security_officer"))
    doctor = world.server.client(world.token("primary_doctor"))  # doc1 at TWN001
    coordinator = world.server.client(world.token("coordinator"))
    tester = """query($r: String) { explainAccess(user: "doc1", domain: "TWN001", object: "consultation",
        action: "assign", role: $r) { allowed reasons } }"""
    assert not (await officer.execute(tester, r="primary_doctor"))["explainAccess"]["allowed"]
    assert await officer.error_code(tester, r="surgeon") == "BAD_INPUT"
    # history: doc1 is refused assign twice and reads a consultation; the coordinator assigns (granted)
    assign = 'mutation($id: ID!) { assignExpert(id: $id, expertId: "exp1") { status } }'
    assert await doctor.error_code(assign, id=world.c1) == "FORBIDDEN"
    assert await doctor.error_code(assign, id=world.c1) == "FORBIDDEN"
    await doctor.execute('query($id: ID!) { consultation(id: $id) { id } }', id=world.c1)
    await coordinator.execute('{ consultations(first: 5) { totalCount } }')  # two rows read: two events
    dry = """query($add: [String!], $remove: [String!]) { policyDryRun(add: $add, remove: $remove, days: 7) {
        examined skipped added removed changes { user domain object action wasAllowed nowAllowed count } } }"""
    report = (await officer.execute(
        dry, add=["p, primary_doctor, TWN001, consultation, assign"], remove=["p, coordinator, *, consultation, read"],
    ))["policyDryRun"]
    assert report["added"] == ["p, primary_doctor, TWN001, consultation, assign"]
    assert report["removed"] == ["p, coordinator, *, consultation, read"]
    assert report["changes"] == [
        {"user": "coord1", "domain": "*", "object": "consultation", "action": "read", "wasAllowed": True,
         "nowAllowed": False, "count": 2},
        {"user": "doc1", "domain": "TWN001", "object": "consultation", "action": "assign", "wasAllowed": False,
         "nowAllowed": True, "count": 2},
    ]
    assert await officer.error_code(dry, add=["p, primary_doctor, TWN001, consultation"]) == "BAD_INPUT"
    # the dry run changed nothing; the change itself then flips the tester's answer
    assert not (await officer.execute(tester, r="primary_doctor"))["explainAccess"]["allowed"]
    await officer.execute(ADD, reason="assign own cases")
    why = (await officer.execute(tester, r="primary_doctor"))["explainAccess"]
    assert why["allowed"] and "allowed by p, primary_doctor, TWN001, consultation, assign (via role primary_doctor)" \
        in why["reasons"]


async def test_audit_viewer_filters_by_patient_identifier_and_pseudonym_and_exports(world: World) -> None:
    officer = world.server.client(world.token("security_officer"))
    doctor = world.server.client(world.token("primary_doctor"))
    await doctor.execute(PATIENT, id="pat1")
    await doctor.execute(PATIENT, id="pat2")  # another facility's: null, nothing read
    events = """query($p: String, $o: String, $since: String) { auditEvents(patient: $p, outcome: $o, since: $since,
        first: 50) { totalCount edges { node { actor action entityId outcome } } } }"""
    by_mrn = (await officer.execute(events, p="mrn|M-pat1"))["auditEvents"]
    assert by_mrn["totalCount"] >= 1
    assert {(n["node"]["actor"], n["node"]["entityId"]) for n in by_mrn["edges"]} == {("doc1", "pat1")}
    pseudonym = world.server.services.pseudonyms.of("pat1")  # type: ignore[union-attr]
    by_pseudonym = (await officer.execute(events, p=pseudonym))["auditEvents"]
    assert by_pseudonym["totalCount"] == by_mrn["totalCount"]
    assert (await officer.execute(events, p="no-such-mrn"))["auditEvents"]["totalCount"] == 0
    assert (await officer.execute(events, p="M-pat1", since="2999-01-01T00:00:00+08:00"))["auditEvents"][
        "totalCount"] == 0
    assert await officer.error_code(events, since="yesterday") == "BAD_INPUT"
    exported = (await officer.execute('query($p: String) { auditExport(patient: $p) }', p="M-pat1"))["auditExport"]
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines and all(x["resourceType"] == "AuditEvent" for x in lines)
    assert {x["entity"][0]["what"]["reference"] for x in lines} == {"Patient/pat1"}
    chain = (await officer.execute("{ auditChain { ok checked brokenAt } }"))["auditChain"]
    assert chain["ok"] and chain["checked"] >= len(lines) and chain["brokenAt"] is None


async def test_break_glass_widens_one_patient_for_one_clinician_until_it_expires(
    tmp_path: Path, db_url: str
) -> None:
    async with rbac_world(tmp_path / "data", db_url) as world, _closing_clients(world):
        world.server.services.break_glass.ttl = timedelta(seconds=2)  # type: ignore[union-attr]
        doctor = world.server.client(world.token("primary_doctor"))  # doc1 at TWN001; pat2 is TWN002's
        officer = world.server.client(world.token("security_officer"))
        other = world.server.client(world.server.token("doc3", "primary_doctor", facility="TWN001"))
        glass = 'mutation($id: ID!, $r: String!) { breakGlass(patientId: $id, reason: $r) { id expiresAt status } }'
        assert (await doctor.execute(PATIENT, id="pat2"))["patient"] is None
        assert await doctor.error_code(glass, id="pat2", r="  ") == "BAD_INPUT"
        assert await doctor.error_code(glass, id="nobody", r="unconscious, no relatives") == "NOT_FOUND"
        assert await officer.error_code(glass, id="pat2", r="curious about it") == "FORBIDDEN"
        grant = (await doctor.execute(glass, id="pat2", r="患者昏迷, 急诊需要既往病史"))["breakGlass"]
        assert grant["status"] == "ACTIVE"
        assert (await doctor.execute(PATIENT, id="pat2"))["patient"]["name"]["text"] == "李桂兰"
        listed = (await doctor.execute('{ consultations(first: 10) { totalCount } }'))["consultations"]
        assert listed["totalCount"] == 2  # their facility's and the broken-glass patient's
        assert (await other.execute(PATIENT, id="pat2"))["patient"] is None  # nobody else
        alerts = (await officer.execute("{ breakGlassGrants { id user patientId reason status acknowledgedBy } }"))
        assert alerts["breakGlassGrants"] == [{"id": grant["id"], "user": "doc1", "patientId": "pat2",
                                               "reason": "患者昏迷, 急诊需要既往病史", "status": "ACTIVE",
                                               "acknowledgedBy": None}]
        ack = 'mutation($id: ID!) { acknowledgeBreakGlass(id: $id) { acknowledgedBy } }'
        assert await world.server.client(world.token("auditor")).error_code(ack, id=grant["id"]) == "FORBIDDEN"
        assert (await officer.execute(ack, id=grant["id"]))["acknowledgeBreakGlass"]["acknowledgedBy"] == "sec1"
        for _ in range(100):  # expires by itself: nothing has to run
            if (await doctor.execute(PATIENT, id="pat2"))["patient"] is None:
                break
            await asyncio.sleep(0.1)
        assert (await doctor.execute(PATIENT, id="pat2"))["patient"] is None
        status = (await officer.execute("{ breakGlassGrants { status } }"))["breakGlassGrants"]
        assert status == [{"status": "EXPIRED"}]
        async with world.server.services.store.read() as repo:
            trail = [e async for e in repo.audit.all() if e.action.startswith("break-glass")]
        assert [(e.action, e.actor, e.entity_id) for e in trail] == [
            ("break-glass", "doc1", "pat2"), ("break-glass-acknowledged", "sec1", "pat2")]
        assert "reason: 患者昏迷, 急诊需要既往病史" in (trail[0].detail or "")


async def test_security_alerts_arrive_live_for_officers_only(world: World) -> None:
    alerts = "subscription { securityAlerts { id user patientId reason status acknowledgedBy } }"
    glass = 'mutation($id: ID!, $r: String!) { breakGlass(patientId: $id, reason: $r) { id } }'
    officer_token = world.token("security_officer")
    async with graphql_socket(world.server.base_url) as officer, graphql_socket(world.server.base_url) as doctor_ws:
        await officer.init({"Authorization": f"Bearer {officer_token}"})
        sid = await officer.subscribe(alerts)
        await doctor_ws.init({"Authorization": f"Bearer {world.token('primary_doctor')}"})
        refused = await doctor_ws.subscribe(alerts)
        with pytest.raises(SubscriptionEnded) as ended:  # a clinician may not watch the alerts
            await doctor_ws.next(refused)
        assert "FORBIDDEN" in json.dumps(ended.value.doc)
        await asyncio.sleep(0.2)  # the officer's subscription is registered on the bus
        doctor = world.server.client(world.token("primary_doctor"))
        grant = (await doctor.execute(glass, id="pat2", r="患者昏迷, 急诊需要既往病史"))["breakGlass"]
        alert = (await officer.next(sid))["securityAlerts"]
        assert alert == {"id": grant["id"], "user": "doc1", "patientId": "pat2", "reason": "患者昏迷, 急诊需要既往病史",
                         "status": "ACTIVE", "acknowledgedBy": None}
        officer_http = world.server.client(officer_token)
        await officer_http.execute('mutation($id: ID!) { acknowledgeBreakGlass(id: $id) { id } }', id=grant["id"])
        acknowledged = (await officer.next(sid))["securityAlerts"]
        assert acknowledged["id"] == grant["id"] and acknowledged["acknowledgedBy"]
