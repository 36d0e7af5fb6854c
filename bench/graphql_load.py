"""GraphQL load: the work-list at 8 concurrent clients, and subscription fan-out.

For each back end (SQLite, and PostgreSQL with --postgres URL): seed N
consultations (each with a patient, 5 observations, a CT study; experts and
facilities), start ``huizhen serve`` as a child process, then

* work-list: C clients page through ``consultations(first: 50)`` with patient,
  expert, the patient's latest 5 observations and the imaging studies,
  following cursors; requests/s and p50/p99 latency;
* fan-out: S WebSocket subscribers (``graphql-transport-ws``) on
  ``consultationUpdated``; probe mutations until all of them have received
  one (so all are registered), then one measured mutation: the delay from
  sending it to each subscriber's receipt, p50/p99/max.

Prints JSON; asserts nothing. Targets (2 cores): work-list p99 < 100 ms,
fan-out to 1,000 subscribers p99 < 500 ms.

The work-list's clients are lean (raw asyncio streams, keep-alive, orjson; ``--client httpx``
for the former httpx ones): the load generator shares the two cores, so it reports its own CPU
per request (``client_cpu_ms_per_request``) beside the server's.

``--http-workers 1 2`` runs the same seeded store (a fresh copy each run) with
``HUIZHEN_HTTP_WORKERS`` = 1, then 2, back to back; each run reports the
server's CPU seconds (all its processes) for the work-list, and per request.

    python bench/graphql_load.py [--n 10000] [--clients 8] [--requests 400] [--subscribers 1000]
                                 [--http-workers 1 [2 …]] [--client lean httpx] [--seed-dir DIR]
                                 [--postgres postgresql+asyncpg://…]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the seed the tests use (tests/graphql_seed.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from consultation_store import bench_databases, pg_admin  # noqa: E402

from huizhen.integration import migrate  # noqa: E402
from huizhen.integration.crypto import load_or_create_keyring  # noqa: E402
from huizhen.integration.store import Store  # noqa: E402
from huizhen.rbac.identity import TokenService, load_or_create_signing_key  # noqa: E402
from tests.graphql_seed import seed  # noqa: E402

WORKLIST = """query($after: String) { consultations(first: 50, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id number status urgency department createdAt
    patient { id name { text } age observations(first: 5) { code value unit effectiveAt } }
    expert { id name { text } title }
    imagingStudies { studyInstanceUid modalities } } } } }"""
UPDATED = "subscription { consultationUpdated { cursor event { type } consultation { id status } } }"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2)


class _Lean:
    """One keep-alive HTTP/1.1 connection posting the work-list query: the request bytes built
    once per cursor, the answer framed by its Content-Length and read with orjson, so that the
    load generator spends little of the two cores the server needs (httpx + json took several
    ms of CPU per request)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.requests: dict[str | None, bytes] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, after: str | None) -> bytes:
        data = self.requests.get(after)
        if data is None:
            body = orjson.dumps({"query": WORKLIST, "variables": {"after": after}})
            data = self.requests[after] = self.head + str(len(body)).encode() + b"\r\n\r\n" + body
        return data

    async def post(self, after: str | None) -> Any:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request(after))
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        return orjson.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def worklist(base: str, token: str, clients: int, requests: int, lean: bool = True) -> dict[str, Any]:
    """``clients`` closed-loop clients, each on its own keep-alive connection, following cursors."""
    latencies: list[float] = []
    errors = 0
    per_client = requests // clients
    host, port = base.removeprefix("http://").rsplit(":", 1)

    async def pages(post: Callable[[str | None], Awaitable[dict[str, Any]]]) -> None:
        """Follow the cursors with ``post(after)``, timing each request."""
        nonlocal errors
        after = None
        for _ in range(per_client):
            t0 = time.perf_counter()
            body = await post(after)
            latencies.append(time.perf_counter() - t0)
            if body.get("errors"):
                errors += 1
                after = None
                continue
            page = body["data"]["consultations"]
            after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None

    async def client_lean(k: int) -> None:
        http = _Lean(host, int(port), token)
        try:
            await pages(http.post)
        finally:
            await http.close()

    async def client_httpx(k: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            async def post(after: str | None) -> dict[str, Any]:
                r = await http.post("/graphql", json={"query": WORKLIST, "variables": {"after": after}})
                return r.json()  # type: ignore[no-any-return]

            await pages(post)

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        await http.post("/graphql", json={"query": WORKLIST, "variables": {"after": None}})  # warm-up
    client = client_lean if lean else client_httpx
    cpu0 = _own_cpu_s()
    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    client_cpu = _own_cpu_s() - cpu0
    return {
        "client": "lean" if lean else "httpx",
        "clients": clients, "requests": len(latencies), "errors": errors, "page_size": 50,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 2), "latency_ms_p99": pct(latencies, 0.99),
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(latencies)), 2),
    }


def _own_cpu_s() -> float:
    """This process's CPU (user + system), the load generator's own cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fanout(base: str, token: str, subscribers: int, probes: list[str], measured: str,
                 server_pid: int | None = None) -> dict[str, Any]:
    """Probe mutations until every subscriber has received one (so all are registered on the
    bus), then one measured mutation: the delay from sending it to each subscriber's receipt.
    With ``server_pid``: the server's CPU (all its processes) from the measured mutation to the
    last receipt, in all and per delivery (the machine's speed varies; CPU per delivery compares)."""
    url = base.replace("http://", "ws://") + "/graphql"
    probed: set[int] = set()
    subscribed = 0
    sent_at: list[float] = []
    delays: list[float] = []
    all_in, closing = asyncio.Event(), asyncio.Event()

    async def subscriber(k: int) -> None:
        nonlocal subscribed
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"], open_timeout=300,  # type: ignore[list-item]
                                      max_queue=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            await ws.recv()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": UPDATED}}))
            subscribed += 1
            while True:
                doc = json.loads(await ws.recv())
                if doc.get("type") != "next":
                    continue
                if doc["payload"]["data"]["consultationUpdated"]["consultation"]["id"] == measured:
                    delays.append(time.perf_counter() - sent_at[0])
                    if len(delays) == subscribers:
                        all_in.set()
                    await closing.wait()  # the closes are not part of the fan-out's CPU
                    return
                probed.add(k)

    async def mutate(cid: str) -> Any:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as h:
            r = await h.post("/graphql", json={"query": f'mutation {{ assignExpert(id: "{cid}") {{ status }} }}'})
        return r.json().get("data")

    tasks = []
    for k in range(subscribers):  # connect in waves, as clients would
        tasks.append(asyncio.create_task(subscriber(k)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    while subscribed < subscribers and time.perf_counter() - t0 < 300:  # noqa: ASYNC110 (a poll, bounded)
        await asyncio.sleep(0.5)
    for probe in probes:
        await mutate(probe)
        deadline = time.perf_counter() + 20
        while len(probed) < subscribers and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        if len(probed) == subscribers:
            break
    ready = len(probed)
    cpu0 = cpu_seconds(server_pid) if server_pid is not None else None
    own0 = _own_cpu_s()
    sent_at.append(time.perf_counter())
    result = await mutate(measured)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(120):
            await all_in.wait()
    own = _own_cpu_s() - own0
    cpu = None if cpu0 is None or server_pid is None else \
        sum(b - a for a, b in zip(cpu0, cpu_seconds(server_pid), strict=False))
    closing.set()
    _, pending = await asyncio.wait(tasks, timeout=120)
    for t in pending:
        t.cancel()
    return {
        "subscribers": subscribers, "registered_before_measure": ready, "delivered": len(delays),
        "mutation": result,
        "delivery_ms_p50": round(statistics.median(delays) * 1000, 2) if delays else None,
        "delivery_ms_p99": pct(delays, 0.99) if delays else None,
        "delivery_ms_max": round(max(delays) * 1000, 2) if delays else None,
        "server_cpu_ms": None if cpu is None else round(cpu * 1000, 1),
        "server_cpu_us_per_delivery": round(cpu * 1e6 / len(delays), 1) if cpu is not None and delays else None,
        "client_cpu_ms": round(own * 1000, 1),
    }


def cpu_seconds(pid: int) -> list[float]:
    """utime + stime of ``pid`` and of each of its child processes (the HTTP workers), from /proc."""
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    out = []
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime, stime
    return out


def serve(data: Path, url: str, port: int, http_workers: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    env.update(HUIZHEN_DATA_DIR=str(data), HUIZHEN_DATABASE_URL=url, HUIZHEN_HTTP_PORT=str(port),
               HUIZHEN_MLLP_PORT="0", HUIZHEN_DICOM_PORT="0", HUIZHEN_LOG_LEVEL="WARNING",
               HUIZHEN_HTTP_WORKERS=str(http_workers))
    log = (data.parent / f"serve-{port}.log").open("ab")
    cmd = [sys.executable, "-m", "huizhen", "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=data.parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


async def seeded(url: str, data: Path, n: int) -> None:
    store = Store(url, load_or_create_keyring(data))
    try:
        await seed(store, n, observations=5)
    finally:
        await store.close()


def copy_of(url: str, seeded: str, tmp: Path, postgres: str | None) -> str:
    """A fresh copy of the seeded database (each run mutates what it measures): ``seeded`` is the
    SQLite file, or the PostgreSQL database to use as the template."""
    if url.startswith("sqlite"):
        target = tmp / f"run-{secrets.token_hex(3)}.db"
        shutil.copyfile(seeded, target)
        if Path(seeded + "-wal").exists():
            shutil.copyfile(seeded + "-wal", f"{target}-wal")
        return f"sqlite+aiosqlite:///{target}"
    from sqlalchemy.engine import make_url

    name = f"{make_url(url).database}_{secrets.token_hex(3)}"
    pg_admin(postgres or url, f'CREATE DATABASE "{name}" TEMPLATE "{seeded}"')
    return make_url(url).set(database=name).render_as_string(False)


def _seed(url: str, tmp: Path, args: argparse.Namespace) -> tuple[Path, str, float | None]:
    """The data folder and the seeded SQLite file (PostgreSQL: database) to copy for each run; with
    ``--seed-dir`` a seed made before with the same ``--n`` is used again (on PostgreSQL, a
    database ``hz_seed_<n>`` kept on the server)."""
    from sqlalchemy.engine import make_url

    sqlite = url.startswith("sqlite")
    kept = None if args.seed_dir is None else args.seed_dir / ("sqlite" if sqlite else "postgresql")
    template = f"hz_seed_{args.n}"
    if kept is not None and (kept / "seed.json").exists() \
            and json.loads((kept / "seed.json").read_text()).get("n") == args.n:
        return kept / "data", str(kept / "seeded.db") if sqlite else template, None
    data = tmp / f"data-{secrets.token_hex(3)}"
    data.mkdir(mode=0o700)
    migrate.upgrade(url)
    t0 = time.perf_counter()
    asyncio.run(seeded(url, data, args.n))
    seed_s = round(time.perf_counter() - t0, 1)
    seeded_file = str(tmp / "seeded.db") if sqlite else make_url(url).database or ""
    if sqlite:
        for suffix in ("", "-wal"):
            if Path(url.split("///", 1)[1] + suffix).exists():
                shutil.copyfile(url.split("///", 1)[1] + suffix, seeded_file + suffix)
    elif kept is not None:
        pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        pg_admin(args.postgres, f'CREATE DATABASE "{template}" TEMPLATE "{seeded_file}"')
        seeded_file = template
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        shutil.copytree(data, kept / "data")
        for suffix in ("", "-wal") if sqlite else ():
            if Path(seeded_file + suffix).exists():
                shutil.copyfile(seeded_file + suffix, str(kept / "seeded.db") + suffix)
        (kept / "seed.json").write_text(json.dumps({"n": args.n}))
    return data, seeded_file, seed_s


def run_backend(url: str, tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    data, seeded_file, seed_s = _seed(url, tmp, args)
    tokens = TokenService(load_or_create_signing_key(data), 3600)
    viewer = tokens.issue("coord1", ["coordinator"], "*")
    runs = []
    for workers in args.http_workers:
        run_url = copy_of(url, seeded_file, tmp, args.postgres)
        port = free_port()
        proc = serve(data, run_url, port, workers)
        try:
            base = f"http://127.0.0.1:{port}"
            loads = []
            for kind in [] if args.skip_worklist else args.client:
                cpu0 = cpu_seconds(proc.pid)
                load = asyncio.run(worklist(base, viewer, args.clients, args.requests, lean=kind == "lean"))
                by_process = [round(b - a, 2) for a, b in zip(cpu0, cpu_seconds(proc.pid), strict=True)]
                cpu = sum(by_process)
                load.update(server_cpu_s=round(cpu, 2), server_cpu_s_by_process=by_process,
                            server_cpu_ms_per_request=round(cpu * 1000 / load["requests"], 1))
                loads.append(load)
            # both PENDING and naming no expert: assignExpert takes the best match
            probes = [f"c{i:05d}" for i in range(3, 3 * 20, 3)]  # more PENDING ones
            fan = asyncio.run(fanout(base, viewer, args.subscribers, probes=probes, measured="c00000",
                                     server_pid=proc.pid)) \
                if args.subscribers else None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            if not run_url.startswith("sqlite"):
                from sqlalchemy.engine import make_url

                pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{make_url(run_url).database}" WITH (FORCE)')
        runs.append({"http_workers": workers, "consultations": args.n, "seed_s": seed_s,
                     "load_average": os.getloadavg(), "worklist": loads, "fanout": fan})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--skip-worklist", action="store_true")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--http-workers", type=int, nargs="+", default=[1],
                    help="HUIZHEN_HTTP_WORKERS of the server; several: one run each, on copies of one seed")
    ap.add_argument("--client", nargs="+", choices=["lean", "httpx"], default=["lean"],
                    help="the work-list's client; several: one work-list each, on the same server")
    ap.add_argument("--seed-dir", type=Path, default=None,
                    help="keep the seed here (PostgreSQL: its data folder), and use it again when --n matches")
    ap.add_argument("--postgres", default=None, help="postgresql+asyncpg:// URL of a server to create a database on")
    args = ap.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp, bench_databases(tmp, args.postgres) as targets:
        for backend, url in targets.items():
            results[backend] = run_backend(url, Path(tmp), args)
    print(json.dumps({"benchmark": "graphql_load", "measured": "under load (shared 2-core machine)",
                      "results": results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
