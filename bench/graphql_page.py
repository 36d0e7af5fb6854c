"""CPU per work-list page, in-process: the app behind httpx's ASGI transport, one client.

Seeds N consultations once into ``--seed-dir`` (kept between runs: seeding 10,000 takes
minutes), copies the database for each run, then pages through ``consultations(first: 50)``
with the query of ``bench/graphql_load.py`` (following cursors) and prints the process CPU
per page. No HTTP server, no sockets: Starlette, strawberry, graphql-core, the store and the
audit trail, as a worker runs them for one request, plus this client's share (httpx, the
answer's JSON decoding: a few ms). The collector's CPU per page is reported apart; the
collector runs with the server's settings (``huizhen.server``: frozen start-up objects,
threshold 50,000).

    python bench/graphql_page.py [--n 10000] [--pages 200] [--seed-dir /tmp/gqlx] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphql_load import WORKLIST  # noqa: E402

from huizhen.app import build_app, create_services  # noqa: E402
from huizhen.integration import migrate  # noqa: E402
from huizhen.integration.crypto import load_or_create_keyring  # noqa: E402
from huizhen.integration.store import Store  # noqa: E402
from huizhen.settings import Settings  # noqa: E402
from tests.graphql_seed import seed  # noqa: E402


def seeded(seed_dir: Path, n: int) -> tuple[Path, Path]:
    """(database file, data folder) of a store seeded with ``n`` consultations, made once."""
    db, data = seed_dir / f"seeded-{n}.db", seed_dir / f"data-{n}"
    if not (seed_dir / f"seeded-{n}.done").exists():
        seed_dir.mkdir(parents=True, exist_ok=True)
        data.mkdir(mode=0o700, exist_ok=True)
        url = f"sqlite+aiosqlite:///{db}"
        migrate.upgrade(url)

        async def go() -> None:
            store = Store(url, load_or_create_keyring(data))
            try:
                await seed(store, n, observations=5)
            finally:
                await store.close()

        asyncio.run(go())
        (seed_dir / f"seeded-{n}.done").touch()
    return db, data


async def pages(url: str, data: Path, count: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    settings = Settings(data_dir=data, database_url=url, http_port=0, mllp_port=0, dicom_port=0, mllp_workers=1)
    services = await create_services(settings)
    try:
        token = services.tokens.issue("coord1", ["coordinator"], "*")
        transport = httpx.ASGITransport(app=build_app(services))
        gc.freeze()  # as huizhen.server.run does once the app is built
        gc.set_threshold(50_000, 20, 100)
        collecting: list[float] = [0.0, 0.0]  # [started at, total]: the collector's own CPU

        def collector(phase: str, _: dict[str, int]) -> None:
            if phase == "start":
                collecting[0] = time.process_time()
            else:
                collecting[1] += time.process_time() - collecting[0]

        gc.callbacks.append(collector)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            after = None

            async def page() -> None:
                nonlocal after
                r = await http.post("/graphql", json={"query": WORKLIST, "variables": {"after": after}})
                body = r.json()
                if body.get("errors"):
                    raise RuntimeError(body["errors"])
                info = body["data"]["consultations"]["pageInfo"]
                after = info["endCursor"] if info["hasNextPage"] else None

            for _ in range(10):  # warm-up: caches, prepared statements
                await page()
            if profile is not None:
                profile.enable()
            chunks: list[float] = []  # CPU ms per page of each run of 10: the least is the least disturbed
            cpu0, wall0, gc0 = time.process_time(), time.perf_counter(), collecting[1]
            for k in range(count):
                if k % 10 == 0:
                    at = time.process_time()
                await page()
                if k % 10 == 9:
                    chunks.append((time.process_time() - at) * 100)
            cpu, wall, in_gc = time.process_time() - cpu0, time.perf_counter() - wall0, collecting[1] - gc0
            gc.callbacks.remove(collector)
            if profile is not None:
                profile.disable()
    finally:
        await services.close()
    chunks.sort()
    return {"pages": count, "cpu_ms_per_page": round(cpu * 1000 / count, 2),
            "cpu_ms_per_page_least_of_10s": round(chunks[0], 2) if chunks else None,
            "cpu_ms_per_page_median_of_10s": round(chunks[len(chunks) // 2], 2) if chunks else None,
            "gc_ms_per_page": round(in_gc * 1000 / count, 2), "wall_ms_per_page": round(wall * 1000 / count, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--seed-dir", type=Path, default=Path("/tmp/gqlx"))
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the measured pages here")
    args = ap.parse_args()
    db, data = seeded(args.seed_dir, args.n)
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp:
        run_db = Path(tmp) / "run.db"
        shutil.copyfile(db, run_db)
        if Path(f"{db}-wal").exists():
            shutil.copyfile(f"{db}-wal", f"{run_db}-wal")
        result = asyncio.run(pages(f"sqlite+aiosqlite:///{run_db}", data, args.pages, profile))
    if profile is not None:
        profile.dump_stats(args.profile)
    print(json.dumps({"benchmark": "graphql_page", "consultations": args.n, "load_average": os.getloadavg(),
                      **result}))


if __name__ == "__main__":
    main()
