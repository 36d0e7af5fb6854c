"""Scale-out: two ``huizhen serve`` processes on one PostgreSQL and one Redis.

A mutation sent to instance A reaches a subscriber connected to instance B,
through the Redis bus (``HUIZHEN_BROKER_URL``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.store import Store
from tests.conftest import PostgresDatabases, free_port
from tests.e2e.instance import Instance
from tests.graphql_seed import seed
from tests.ws_client import graphql_socket

UPDATED = "subscription { consultationUpdated { event { type } consultation { id status } } }"


@pytest.fixture
def pair(tmp_path: Path, postgres_databases: PostgresDatabases, redis_url: str) -> Iterator[tuple[Instance, Instance]]:
    shared = tmp_path / "data"  # one data folder for both: the same signing and PHI keys
    shared.mkdir(mode=0o700)
    database = postgres_databases.new()  # migrated (from the template)
    instances = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
        env.update(
            HUIZHEN_HTTP_PORT=str(free_port()), HUIZHEN_MLLP_PORT="0", HUIZHEN_DICOM_PORT="0",
            HUIZHEN_DATA_DIR=str(shared), HUIZHEN_DATABASE_URL=database, HUIZHEN_BROKER_URL=redis_url,
        )
        instances.append(Instance(workdir, env))
    a, b = instances
    try:
        yield a, b
    finally:
        for inst in instances:
            inst.stop(signal.SIGKILL)


async def test_mutation_on_a_reaches_subscriber_on_b(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    shared = Path(a.env["HUIZHEN_DATA_DIR"])
    store = Store(a.env["HUIZHEN_DATABASE_URL"], load_or_create_keyring(shared))
    try:
        await seed(store, 2)
    finally:
        await store.close()
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    doctor = a.run("token", "--sub", "doc1", "--role", "primary_doctor", "--facility", "TWN001").stdout.strip()
    coordinator = b.run("token", "--sub", "coord1", "--role", "coordinator", "--facility", "*").stdout.strip()

    async with graphql_socket(b.base) as ws:
        assert (await ws.init({"Authorization": f"Bearer {doctor}"}))["type"] == "connection_ack"
        sid = await ws.subscribe(UPDATED)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=a.base, headers={"Authorization": f"Bearer {coordinator}"}) as http:
            r = await http.post("/graphql", json={"query": 'mutation { assignExpert(id: "c00000") { status } }'})
        assert r.json() == {"data": {"assignExpert": {"status": "ASSIGNED"}}}  # the best match, on A
        got = (await ws.next(sid, timeout=30))["consultationUpdated"]
        assert got == {"event": {"type": "ASSIGNED"}, "consultation": {"id": "c00000", "status": "ASSIGNED"}}
