"""The ``huizhen`` command as a new user runs it: demo, serve, token, workflow, restart.

Each test starts the real server as a child process on a free port, with a
data folder of its own, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import stat

import pytest

from tests.e2e.instance import Instance


def demo_ids(out: str) -> dict[str, str]:
    ids = {}
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]{32})\s+(\S+)", line)
        if m:
            ids[m.group(2)] = m.group(1)
    return ids


WALK = [
    ("doctor", "mutation($id: ID!) { submitConsultation(id: $id) { status } }", {}),
    ("coordinator", "mutation($id: ID!, $e: ID) { assignExpert(id: $id, expertId: $e) { status } }", {"e": "expert"}),
    ("expert", "mutation($id: ID!) { startConsultation(id: $id) { status } }", {}),
    (
        "expert",
        'mutation($id: ID!) { completeConsultation(id: $id, diagnosis: "不稳定型心绞痛", treatmentPlan: "收住院观察") '
        "{ status } }",
        {},
    ),
]


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_new_user_walks_a_consultation_and_restart_keeps_it(instance: Instance) -> None:
    demo = instance.run("demo")
    ids = demo_ids(demo.stdout)
    assert {"王建国", "孙丽", "吴桂兰"} <= set(ids)
    instance.start()
    tokens = {
        "doctor": instance.run(
            "token", "--sub", ids["孙丽"], "--role", "primary_doctor", "--facility", "TWN001"
        ).stdout.strip(),
        "coordinator": instance.run(
            "token", "--sub", "coord-1", "--role", "coordinator", "--role", "auditor"
        ).stdout.strip(),
        "expert": instance.run("token", "--sub", ids["王建国"], "--role", "expert", "--ttl", "600").stdout.strip(),
    }
    created = instance.gql(
        tokens["doctor"],
        "mutation($input: ConsultationInput!) { requestConsultation(input: $input) { id number status } }",
        input={
            "patientId": ids["吴桂兰"],
            "department": "心血管内科",
            "urgency": "URGENT",
            "chiefComplaint": "胸闷三天",
        },
    )["data"]["requestConsultation"]
    assert created["status"] == "DRAFT" and re.fullmatch(r"HZ-\d{8}-0001", created["number"])
    cid = created["id"]
    statuses = []
    for who, query, extra in WALK:
        variables = {"id": cid, **{k: ids["王建国"] for k in extra}}
        body = instance.gql(tokens[who], query, **variables)
        statuses.append(next(iter(body["data"].values()))["status"])
    assert statuses == ["PENDING", "ASSIGNED", "IN_PROGRESS", "COMPLETED"]

    # a primary doctor may cancel (RBAC), but not a COMPLETED consultation (workflow)
    cancel = 'mutation($id: ID!) { cancelConsultation(id: $id, reason: "重复") { status } }'
    bad = instance.gql(tokens["doctor"], cancel, id=cid)
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    wrong_role = instance.gql(tokens["doctor"], "mutation($id: ID!) { startConsultation(id: $id) { status } }", id=cid)
    assert wrong_role["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    read = "query($id: ID!) { consultation(id: $id) { number status diagnosis timeline { at type actor } } }"
    before = instance.gql(tokens["doctor"], read, id=cid)["data"]["consultation"]
    assert [e["type"] for e in before["timeline"]] == ["CREATED", "SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]

    instance.stop()
    instance.start()
    after = instance.gql(tokens["doctor"], read, id=cid)["data"]["consultation"]
    assert after == before


def test_first_start_creates_private_data_folder_and_never_prints_keys(instance: Instance) -> None:
    instance.start()
    data = instance.workdir / "huizhen-data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("keys.json", "jwt-signing.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    assert (data / "huizhen.db").exists() and stat.S_IMODE((data / "huizhen.db").stat().st_mode) & 0o077 == 0
    keys = json.loads((data / "keys.json").read_text())
    secrets = [*keys["keys"].values(), keys["index_key"], (data / "jwt-signing.key").read_text().strip()]
    instance.stop()
    output = instance.log.read_text()
    for secret in secrets:
        assert secret not in output
    first = (data / "keys.json").read_bytes()
    instance.start()
    assert (data / "keys.json").read_bytes() == first  # restart reuses, never regenerates


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"HUIZHEN_HTTP_PORT": "eighty"}, ["http_port", "HUIZHEN_HTTP_PORT"]),
        ({"HUIZHEN_ENV": "staging"}, ["env", "development, production"]),
        ({"HUIZHEN_DATABASE_URL": "mysql://db"}, ["database_url", "postgresql+asyncpg://"]),
    ],
)
def test_bad_setting_stops_start_up_with_one_line(instance: Instance, env: dict[str, str], words: list[str]) -> None:
    instance.env.update(env)
    result = instance.run("serve", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words)


def test_db_upgrade_and_config_file(instance: Instance) -> None:
    cfg = instance.workdir / "custom.toml"
    cfg.write_text('[huizhen]\ndata_dir = "./elsewhere"\n', encoding="utf-8")
    out = instance.run("--config", str(cfg), "db", "upgrade")
    assert "database at revision" in out.stdout
    assert (instance.workdir / "elsewhere" / "huizhen.db").exists()
