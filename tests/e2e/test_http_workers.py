"""``http_workers = 2`` on SQLite, no broker: two processes behind one HTTP port, one bus.

Which process serves a connection is read from ``/proc`` (the server-side
socket's inode, and which process holds it), so nothing is exposed for the
test. The parent accepts every connection and hands it to the process serving
the fewest: connections are opened, and held, until the wanted process serves
one, so every case below runs on both processes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import websockets

from huizhen.adapters.hl7_send import ack_code
from huizhen.integration import migrate
from huizhen.integration.consultations import ConsultationService
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.events import InProcessBus
from huizhen.integration.store import Store
from huizhen.rbac.identity import TokenService, load_or_create_signing_key
from tests.e2e.instance import Instance
from tests.e2e.test_mllp_workers import adt, children
from tests.graphql_seed import seed
from tests.signaling_support import FACILITY, SignalingClient, assigned_consultation, seed_directory
from tests.ws_client import TRANSPORT_WS, GraphQLSocket

UPDATED = "subscription { consultationUpdated { event { type } consultation { id status } } }"
T = TypeVar("T")


def _server_inode(server_port: int, client_port: int) -> int:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    return inode
    return 0


def accepted_by(pids: list[int], server_port: int, client_port: int) -> int:
    """The process holding the server side of the connection from ``client_port`` (the parent also
    holds it until the child it handed it to has taken it: the one holder once that is over)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        inode = _server_inode(server_port, client_port)  # 0 until a process has accepted it
        holders = set()
        if inode:
            for pid in pids:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                            holders.add(pid)
                    except FileNotFoundError:
                        continue
        if len(holders) == 1:
            return holders.pop()
        time.sleep(0.02)
    raise AssertionError(f"no one process serves the connection from port {client_port}")


class Workers:
    """The instance's processes, and connections to the one of our choice."""

    def __init__(self, instance: Instance, tls: ssl.SSLContext | None = None) -> None:
        assert instance.proc is not None
        self.instance = instance
        self.tls = tls
        self.port = int(instance.env["HUIZHEN_HTTP_PORT"])
        self.pids = [instance.proc.pid, *children(instance.proc.pid)]

    async def on(self, pid: int, connect: Callable[[], Awaitable[T]], port_of: Callable[[T], int],
                 close: Callable[[T], Awaitable[object]]) -> T:
        held: list[T] = []  # served elsewhere: held open, so that the next goes to another process
        try:
            for _ in range(20):
                conn = await connect()
                if await asyncio.to_thread(accepted_by, self.pids, self.port, port_of(conn)) == pid:
                    return conn
                held.append(conn)
        finally:
            for conn in held:
                await close(conn)
        raise AssertionError(f"process {pid} served no connection")

    async def post(self, pid: int, token: str, query: str, **variables: Any) -> dict[str, Any]:
        """One GraphQL request over a connection that ``pid`` accepted."""
        async def close(c: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
            c[1].close()

        reader, writer = await self.on(
            pid, lambda: asyncio.open_connection("127.0.0.1", self.port),
            lambda c: int(c[1].get_extra_info("sockname")[1]), close,
        )
        body = json.dumps({"query": query, "variables": variables}).encode()
        writer.write(
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        raw = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        doc: dict[str, Any] = json.loads(raw.partition(b"\r\n\r\n")[2])
        return doc

    async def get(self, pid: int, path: str, token: str) -> str:
        async def close(c: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
            c[1].close()

        reader, writer = await self.on(
            pid, lambda: asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls),
            lambda c: int(c[1].get_extra_info("sockname")[1]), close,
        )
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                     "Connection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        head, _, text = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return text.decode()


async def _workers_env(instance: Instance, tmp_path: Path) -> str:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    url = f"sqlite+aiosqlite:///{tmp_path}/huizhen.db"
    instance.env.update(HUIZHEN_HTTP_WORKERS="2", HUIZHEN_DATA_DIR=str(data), HUIZHEN_DATABASE_URL=url)
    await asyncio.to_thread(migrate.upgrade, url)
    return url


@pytest.fixture
async def workers(instance: Instance, tmp_path: Path) -> AsyncIterator[Workers]:
    url = await _workers_env(instance, tmp_path)
    store = Store(url, load_or_create_keyring(tmp_path / "data"))
    try:
        await seed(store, 48, observations=1)
    finally:
        await store.close()
    await asyncio.to_thread(instance.start)
    yield Workers(instance)


def token(instance: Instance, sub: str, role: str, facility: str = "*") -> str:
    return instance.run("token", "--sub", sub, "--role", role, "--facility", facility).stdout.strip()


async def test_both_processes_serve_and_every_event_reaches_every_subscriber(workers: Workers) -> None:
    inst = workers.instance
    assert len(workers.pids) == 2
    doctor = token(inst, "doc1", "primary_doctor", "TWN001")
    coordinator = token(inst, "coord1", "coordinator")

    async def subscriber(pid: int) -> GraphQLSocket:
        async def connect() -> GraphQLSocket:
            url = inst.base.replace("http://", "ws://") + "/graphql"
            return GraphQLSocket(await websockets.connect(url, subprotocols=[TRANSPORT_WS]), TRANSPORT_WS)  # type: ignore[list-item]

        async def close(ws: GraphQLSocket) -> None:
            await ws.ws.close()

        ws = await workers.on(pid, connect, lambda ws: int(ws.ws.local_address[1]), close)
        assert (await ws.init({"Authorization": f"Bearer {doctor}"}))["type"] == "connection_ack"
        return ws

    sockets = [await subscriber(pid) for pid in workers.pids for _ in range(3)]
    sids = [await ws.subscribe(UPDATED) for ws in sockets]
    await asyncio.sleep(0.3)  # the subscriptions registered on each bus
    pending = [f"c{i:05d}" for i in range(0, 48, 6)]  # PENDING, of TWN001: the doctor sees them
    # concurrently, half through each process: the audit chain has two writers
    answers = await asyncio.gather(*(
        workers.post(workers.pids[n % 2], coordinator, "mutation($id: ID!) { assignExpert(id: $id) { status } }",
                     id=cid)
        for n, cid in enumerate(pending)
    ))
    assert answers == [{"data": {"assignExpert": {"status": "ASSIGNED"}}}] * len(pending)
    for ws, sid in zip(sockets, sids, strict=True):
        seen = {(await ws.next(sid, timeout=30))["consultationUpdated"]["consultation"]["id"] for _ in pending}
        assert seen == set(pending)
    for ws in sockets:
        await ws.ws.close()

    verified = inst.run("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_keep_alive_connections_are_spread_evenly_over_the_processes(workers: Workers) -> None:
    opened = [await asyncio.open_connection("127.0.0.1", workers.port) for _ in range(8)]
    try:
        for _, writer in opened:  # served, not just accepted: each answers
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for reader, _ in opened:
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).startswith(b"HTTP/1.1 200")
        serving = [await asyncio.to_thread(accepted_by, workers.pids, workers.port,
                                           int(writer.get_extra_info("sockname")[1])) for _, writer in opened]
        assert sorted(serving.count(pid) for pid in workers.pids) == [4, 4]
    finally:
        for _, writer in opened:
            writer.close()


async def eventually(ask: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """``ask()`` until ``done``; a generous bound for a loaded machine (the watcher is event-driven)."""
    deadline = time.monotonic() + 10
    answer = await ask()
    while not done(answer) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        answer = await ask()
    return answer


async def test_a_policy_change_holds_in_both_processes(workers: Workers) -> None:
    inst = workers.instance
    officer = token(inst, "sec1", "security_officer")
    user = token(inst, "aud9", "patient")
    audit = "{ auditEvents(first: 1) { totalCount } }"
    parent, child = workers.pids
    for pid in workers.pids:
        assert (await workers.post(pid, user, audit))["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    for changed_on, seen_on in ((parent, child), (child, parent)):
        done = await workers.post(changed_on, officer,
                                  'mutation { assignRole(user: "aud9", role: "auditor", domain: "*") { user } }')
        assert done == {"data": {"assignRole": {"user": "aud9"}}}
        answer = await eventually(functools.partial(workers.post, seen_on, user, audit), lambda a: "errors" not in a)
        assert answer["data"]["auditEvents"]["totalCount"] >= 1, answer

        await workers.post(changed_on, officer, 'mutation { revokeRole(user: "aud9", role: "auditor", domain: "*") }')
        answer = await eventually(functools.partial(workers.post, seen_on, user, audit), lambda a: "errors" in a)
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_channels_and_metrics_are_the_same_from_either_process(workers: Workers) -> None:
    inst = workers.instance
    admin = token(inst, "admin1", "integration_admin")
    query = "{ channels { name state } }"
    states = [await workers.post(pid, admin, query) for pid in workers.pids]
    assert states[0] == states[1]  # the parent's: the child has no MLLP listener of its own
    assert {"name": "mllp", "state": "listening"} in states[0]["data"]["channels"]

    def operations(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("huizhen_graphql_operations_total{"))

    seen = [operations(await workers.get(pid, "/metrics", admin)) for pid in workers.pids]
    assert seen[0] == seen[1] >= 2  # the sum over both processes, whichever answers


async def test_a_worker_that_dies_is_started_again(workers: Workers) -> None:
    """SIGKILL the child (as the OOM killer would): the parent serves on, starts a new child in its
    place, hands it connections, and counts the restart."""
    inst = workers.instance
    admin = token(inst, "admin1", "integration_admin")
    parent, child = workers.pids
    os.kill(child, signal.SIGKILL)
    workers.pids = [parent]  # meanwhile: the parent serves alone

    async def new_children() -> list[int]:
        return [c for c in children(parent) if c != child]

    deadline = time.monotonic() + 90  # a pause of a second, then a child's start-up (seconds of CPU)
    while not (found := await new_children()) and time.monotonic() < deadline:
        assert (await workers.post(parent, admin, "{ channels { name } }"))["data"]["channels"]  # serving meanwhile
        await asyncio.sleep(0.2)
    [replacement] = found
    again = Workers(inst)
    assert again.pids == [parent, replacement]
    metrics = ""
    for _ in range(100):  # the parent adds it to its balancer once it reports ready
        try:
            answer = await again.post(replacement, admin, "{ channels { name state } }")
            metrics = await again.get(replacement, "/metrics", admin)
            break
        except AssertionError:
            await asyncio.sleep(0.2)
    assert {"name": "mllp", "state": "listening"} in answer["data"]["channels"]
    assert "huizhen_worker_restarts_total 1.0" in metrics.splitlines()


def test_the_children_leave_with_the_parent(workers: Workers) -> None:
    parent, child = workers.pids
    os.kill(parent, signal.SIGKILL)
    assert workers.instance.proc is not None
    workers.instance.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


class _Services:
    """What the signaling seed helpers need, on the instance's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.consultations = ConsultationService(store, InProcessBus(), ZoneInfo("Asia/Shanghai"))


async def test_peers_on_the_two_processes_meet_in_one_room(instance: Instance, tmp_path: Path) -> None:
    url = await _workers_env(instance, tmp_path)
    store = Store(url, load_or_create_keyring(tmp_path / "data"))
    try:
        services = _Services(store)
        await seed_directory(services)  # type: ignore[arg-type]
        cid = await assigned_consultation(services)  # type: ignore[arg-type]
    finally:
        await store.close()
    await asyncio.to_thread(instance.start)
    workers = Workers(instance)
    tokens = TokenService(load_or_create_signing_key(tmp_path / "data"))

    async def close(c: SignalingClient) -> None:
        await c.close()

    def port_of(c: SignalingClient) -> int:
        return int(c.ws.local_address[1])

    parent, child = workers.pids
    doctor = await workers.on(parent, lambda: SignalingClient.connect(
        instance.base, tokens.issue("doc1", ["primary_doctor"], FACILITY)), port_of, close)
    expert = await workers.on(child, lambda: SignalingClient.connect(
        instance.base, tokens.issue("exp1", ["expert"])), port_of, close)
    doctor_id = (await doctor.join(cid))["peer"]
    joined = await expert.join(cid)
    assert [p["id"] for p in joined["peers"]] == [doctor_id]  # learned from the other process
    assert (await doctor.expect("peer-joined"))["peer"]["id"] == joined["peer"]
    await expert.send(type="offer", to=doctor_id, sdp="v=0 跨进程")
    assert await doctor.expect("offer") == {"type": "offer", "from": joined["peer"], "sdp": "v=0 跨进程"}
    await doctor.send(type="answer", to=joined["peer"], sdp="v=0 answer")
    assert (await expert.expect("answer"))["from"] == doctor_id
    await doctor.close()
    await expert.close()


def test_the_children_serve_with_the_same_certificate(instance: Instance, tmp_path: Path) -> None:
    asyncio.run(_workers_env(instance, tmp_path))
    context = instance.use_tls(tmp_path)
    instance.start(verify=context)
    workers = Workers(instance, tls=context)
    assert len(workers.pids) == 2
    for pid in workers.pids:  # each process, its own handshake with the one certificate
        assert json.loads(asyncio.run(workers.get(pid, "/healthz", "-")))["status"] == "ok"


async def test_a_child_serving_mllp_and_http_is_handed_both(instance: Instance, tmp_path: Path) -> None:
    await _workers_env(instance, tmp_path)
    instance.env["HUIZHEN_MLLP_WORKERS"] = "2"
    await asyncio.to_thread(instance.start)
    workers = Workers(instance)
    [child] = workers.pids[1:]
    mllp_port = int(instance.env["HUIZHEN_MLLP_PORT"])
    opened = [await asyncio.open_connection("127.0.0.1", mllp_port) for _ in range(2)]  # one each
    try:
        for n, (reader, writer) in enumerate(opened):
            writer.write(b"\x0b" + adt(f"HB{n}", f"HB{n}") + b"\x1c\r")
            assert ack_code(await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 60)) == "AA"
        serving = {await asyncio.to_thread(accepted_by, workers.pids, mllp_port,
                                           int(writer.get_extra_info("sockname")[1])) for _, writer in opened}
        assert serving == set(workers.pids)
    finally:
        for _, writer in opened:
            writer.close()
    assert json.loads(await workers.get(child, "/healthz", "-"))["status"] == "ok"
