"""The dry run of a policy change, as a pure function over rules and audit events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from huizhen.integration.model import AuditEvent
from huizhen.rbac.dryrun import DecisionChange, access_request, dry_run, proposed_rules
from huizhen.rbac.policy import Rule, parse_csv

MODEL = Path(__file__).resolve().parents[2] / "config" / "rbac" / "model.conf"
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def event(actor: str, roles: list[str], action: str, entity_type: str, outcome: str = "success",
          domain: str | None = "TWN001", detail: str | None = None) -> AuditEvent:
    return AuditEvent(at=NOW, actor=actor, roles=roles, action=action, outcome=outcome, entity_type=entity_type,
                      entity_id="x", detail=detail, domain=domain)


CURRENT = parse_csv("""
p, primary_doctor, *, patient, read
p, primary_doctor, *, consultation, read
p, primary_doctor, *, consultation, submit
p, expert, *, patient, read
g, 张医生, coordinator, TWN001
""")


def test_audit_events_become_the_casbin_question_that_was_asked() -> None:
    assert access_request(event("doc1", ["primary_doctor"], "read", "Patient")).object == "patient"  # type: ignore[union-attr]
    denied = access_request(event("doc1", ["primary_doctor"], "assign", "consultation", "denied"))
    assert denied is not None and (denied.object, denied.action) == ("consultation", "assign")
    submit = access_request(event("doc1", ["primary_doctor"], "write", "Consultation", detail="submitConsultation"))
    assert submit is not None and submit.action == "submit"
    raw = access_request(event("adm", ["integration_admin"], "read-raw", "Message"))
    assert raw is not None and (raw.object, raw.action) == ("message", "raw")
    assert access_request(event("sec", ["security_officer"], "policy-add", "Policy")) is None
    assert access_request(event("doc1", ["primary_doctor"], "read", "Patient", domain=None)) is None  # before 0013


def test_removing_a_line_turns_exactly_those_grants_into_denials() -> None:
    events = [
        event("doc1", ["primary_doctor"], "read", "Patient"),
        event("doc1", ["primary_doctor"], "read", "Patient"),
        event("doc1", ["primary_doctor"], "read", "Consultation"),
        event("exp1", ["expert"], "read", "Patient", domain="*"),
        event("sec", ["security_officer"], "policy-add", "Policy"),
    ]
    proposed = proposed_rules(CURRENT, remove=[Rule.permission("primary_doctor", "*", "patient", "read")])
    report = dry_run(MODEL, CURRENT, proposed, events)
    assert report.examined == 4 and report.skipped == 1
    assert report.changes == [DecisionChange("doc1", "TWN001", "patient", "read", True, False, 2)]


def test_adding_a_line_for_one_facility_grants_only_there() -> None:
    events = [
        event("doc1", ["primary_doctor"], "assign", "consultation", "denied"),
        event("doc2", ["primary_doctor"], "assign", "consultation", "denied", domain="TWN002"),
    ]
    proposed = proposed_rules(CURRENT, add=[Rule.permission("primary_doctor", "TWN001", "consultation", "assign")])
    report = dry_run(MODEL, CURRENT, proposed, events)
    assert report.changes == [DecisionChange("doc1", "TWN001", "consultation", "assign", False, True, 1)]


def test_revoking_a_stored_role_counts_and_a_csv_replaces_everything() -> None:
    # 张医生's coordinator role came from the g line, recorded among the event's roles
    events = [event("张医生", ["coordinator", "primary_doctor"], "read", "Consultation")]
    coordinator_reads = [*CURRENT, Rule.permission("coordinator", "*", "consultation", "read")]
    without_doctor = [r for r in coordinator_reads if r.v0 != "primary_doctor"]
    revoked = proposed_rules(without_doctor, remove=[Rule.assignment("张医生", "coordinator", "TWN001")])
    assert dry_run(MODEL, without_doctor, revoked, events).changes == [
        DecisionChange("张医生", "TWN001", "consultation", "read", True, False, 1)
    ]
    csv = "p, expert, *, patient, read\n"
    assert proposed_rules(CURRENT, csv=csv) == [Rule.permission("expert", "*", "patient", "read")]
    assert dry_run(MODEL, CURRENT, CURRENT, events).changes == []
