"""``huizhen policy export/import`` and ``huizhen audit verify/export``, run as a user runs them."""

from __future__ import annotations

import json
import sqlite3

from tests.e2e.instance import Instance


def test_policy_export_import_round_trip_and_a_bad_file_changes_nothing(instance: Instance) -> None:
    out = instance.workdir / "policy.csv"
    instance.run("policy", "export", str(out))
    exported = out.read_text(encoding="utf-8")
    assert "p, security_officer, *, policy, write" in exported and "p, his_system, *, patient, write" in exported

    bad = instance.workdir / "bad.csv"
    bad.write_text(exported + "g, 张医生, expert, TWN001\np, surgeon, *, patient, read\n", encoding="utf-8")
    result = instance.run("policy", "import", str(bad), check=False)
    assert result.returncode == 1
    line = len(exported.splitlines()) + 2
    assert f"line {line}: unknown role 'surgeon'" in result.stderr and "nothing imported" in result.stderr
    instance.run("policy", "export", str(out))
    assert out.read_text(encoding="utf-8") == exported

    good = instance.workdir / "good.csv"
    good.write_text("p, auditor, *, audit, read\ng, aud1, auditor, TWN001\n", encoding="utf-8")
    assert "imported 2 rule(s)" in instance.run("policy", "import", str(good)).stdout
    instance.run("policy", "export", str(out))
    assert out.read_text(encoding="utf-8").splitlines()[1:] == ["g, aud1, auditor, TWN001",
                                                                "p, auditor, *, audit, read"]

    # the export edited in Excel comes back with a UTF-8 byte order mark: still the same policy
    excel = instance.workdir / "excel.csv"
    excel.write_text(out.read_text(encoding="utf-8") + "g, 张医生, expert, TWN001\n", encoding="utf-8-sig")
    assert "imported 3 rule(s)" in instance.run("policy", "import", str(excel)).stdout
    instance.run("policy", "export", str(out))
    assert "g, 张医生, expert, TWN001" in out.read_text(encoding="utf-8").splitlines()


def test_audit_verify_names_the_first_tampered_event_and_export_writes_fhir_lines(instance: Instance) -> None:
    good = instance.workdir / "p.csv"
    for n in range(3):  # each import is one audited policy change
        good.write_text(f"p, auditor, *, audit, read\ng, aud{n}, auditor, *\n", encoding="utf-8")
        instance.run("policy", "import", str(good))
    assert "audit chain intact: 3 event(s)" in instance.run("audit", "verify").stdout

    exported = instance.workdir / "audit.jsonl"
    instance.run("audit", "export", str(exported))
    events = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert len(events) == 3 and {e["resourceType"] for e in events} == {"AuditEvent"}
    assert events[0]["subtype"] == [{"code": "policy-import"}] and events[0]["outcome"] == "0"

    db = sqlite3.connect(instance.workdir / "huizhen-data" / "huizhen.db")
    with db:
        second = db.execute("SELECT id FROM audit_events ORDER BY seq LIMIT 1 OFFSET 1").fetchone()[0]
        db.execute("UPDATE audit_events SET actor = 'someone-else' WHERE id = ?", (second,))
    db.close()
    result = instance.run("audit", "verify", check=False)
    assert result.returncode == 1
    assert f"broken at event #2 (id {second})" in result.stderr and "content" in result.stderr
