"""Consultation workflow throughput of the canonical store.

Creates N consultations with C concurrent workers and walks each through
DRAFT → PENDING → ASSIGNED → IN_PROGRESS → COMPLETED (5 write transactions,
each with its audit event), on SQLite (WAL, synchronous=FULL) and, with
--postgres URL, on PostgreSQL. Prints JSON; asserts nothing.

    python bench/consultation_store.py [--n 300] [--concurrency 1 8] [--postgres postgresql+asyncpg://…]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from huizhen.integration import migrate
from huizhen.integration.consultations import ConsultationRequest, ConsultationService
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.events import InProcessBus
from huizhen.integration.model import Actor, HumanName, Identifier, Patient, Practitioner, Urgency
from huizhen.integration.store import Store
from huizhen.settings import Settings

ACTOR = Actor("bench", ("coordinator",))


async def run_one(url: str, keydir: Path, n: int, concurrency: int) -> dict[str, object]:
    store = Store(url, load_or_create_keyring(keydir))
    svc = ConsultationService(store, InProcessBus(), Settings().tz)
    async with store.write() as repo:
        patient = await repo.patients.save(
            Patient(name=HumanName.of("测", ("试",)), identifiers=[Identifier("bench", secrets.token_hex(6))])
        )
        expert = await repo.directory.save_practitioner(
            Practitioner(name=HumanName.of("专", ("家",)), department="心血管内科")
        )
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            c = await svc.request(ConsultationRequest(patient.id, "心血管内科", Urgency.URGENT, f"胸闷 {i}"), ACTOR)
            await svc.submit(c.id, ACTOR)
            await svc.assign(c.id, ACTOR, expert.id)
            await svc.start(c.id, ACTOR)
            await svc.complete(c.id, ACTOR, "诊断", "方案")
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await store.close()
    latencies.sort()
    return {
        "concurrency": concurrency,
        "consultations": n,
        "consultations_per_s": round(n / elapsed, 1),
        "transactions_per_s": round(5 * n / elapsed, 1),
        "walk_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "walk_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
    }


def pg_admin(base: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(base)

    async def go() -> None:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database or "postgres",
        )
        await conn.execute(sql)
        await conn.close()

    asyncio.run(go())


@contextlib.contextmanager
def bench_databases(tmp: str, postgres: str | None) -> Iterator[dict[str, str]]:
    """SQLite in ``tmp`` and, with ``postgres``, a fresh PostgreSQL database dropped afterwards: name -> URL."""
    from sqlalchemy.engine import make_url

    targets = {"sqlite": f"sqlite+aiosqlite:///{tmp}/bench.db"}
    pg_name = f"hz_bench_{secrets.token_hex(3)}"
    if postgres:
        pg_admin(postgres, f'CREATE DATABASE "{pg_name}"')
        targets["postgresql"] = make_url(postgres).set(database=pg_name).render_as_string(False)
    try:
        yield targets
    finally:
        if postgres:
            pg_admin(postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--postgres", default=None, help="postgresql+asyncpg:// URL of a server to create a database on")
    args = ap.parse_args()
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp, bench_databases(tmp, args.postgres) as targets:
        for backend, url in targets.items():
            migrate.upgrade(url)
            results[backend] = [asyncio.run(run_one(url, Path(tmp), args.n, c)) for c in args.concurrency]
    print(json.dumps({"benchmark": "consultation_store", "results": results}, indent=2))


if __name__ == "__main__":
    main()
