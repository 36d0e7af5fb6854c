"""A policy change made through one instance takes effect on another (PostgreSQL + Redis, two processes)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresDatabases, free_port
from tests.e2e.instance import Instance


@pytest.fixture
def pair(tmp_path: Path, postgres_databases: PostgresDatabases, redis_url: str) -> Iterator[tuple[Instance, Instance]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    base.update(
        HUIZHEN_DATABASE_URL=postgres_databases.new(), HUIZHEN_BROKER_URL=redis_url,
        HUIZHEN_DATA_DIR=str(tmp_path / "shared-data"),  # one signing key and data key for both
        HUIZHEN_MLLP_PORT="0", HUIZHEN_DICOM_PORT="0",
    )
    instances = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        instances.append(Instance(workdir, {**base, "HUIZHEN_HTTP_PORT": str(free_port())}))
    try:
        for inst in instances:
            inst.start()
        yield instances[0], instances[1]
    finally:
        for inst in instances:
            inst.stop(signal.SIGKILL)


def test_a_role_assigned_on_one_instance_is_honoured_by_the_other(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    officer = a.run("token", "--sub", "sec1", "--role", "security_officer").stdout.strip()
    user = b.run("token", "--sub", "aud9", "--role", "patient").stdout.strip()
    audit = "{ auditEvents(first: 1) { totalCount } }"
    assert b.gql(user, audit)["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    done = a.gql(officer, 'mutation { assignRole(user: "aud9", role: "auditor", domain: "*") { user } }')
    assert done == {"data": {"assignRole": {"user": "aud9"}}}
    deadline = time.monotonic() + 10  # a generous bound for a loaded machine; the watcher is event-driven
    while "errors" in (answer := b.gql(user, audit)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer["data"]["auditEvents"]["totalCount"] >= 1, answer

    a.gql(officer, 'mutation { revokeRole(user: "aud9", role: "auditor", domain: "*") }')
    deadline = time.monotonic() + 10
    while "errors" not in (answer := b.gql(user, audit)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
