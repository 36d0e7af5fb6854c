"""Signaling relay under load: R rooms of 2 peers on one `huizhen serve` (its own process).

Every room is a consultation (ASSIGNED) with its requesting doctor and its
expert connected to /signaling at the same time; once all sockets have
joined, every room runs offer → answer → 10 candidates each way, all rooms at
at once (starts spread over --spread seconds, the answer after the offer
arrives, candidates --gather-interval apart as ICE gathers them). Each relayed
message carries its send time; the receiver (same process, same clock)
records the relay latency, which so includes the client's own scheduling. Prints JSON: p50/p99/max relay latency,
sockets held at once, join time; asserts nothing.

    python bench/signaling.py [--rooms 500] [--candidates 10] [--postgres postgresql+asyncpg://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import websockets
from serving import HOST, start_server

from huizhen.integration.consultations import ConsultationRequest, ConsultationService
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.events import InProcessBus
from huizhen.integration.model import (
    Actor,
    Facility,
    FacilityLevel,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    Urgency,
)
from huizhen.integration.store import Store
from huizhen.rbac.identity import TokenService, load_or_create_signing_key


async def seed(data: Path, url: str, rooms: int) -> list[str]:
    store = Store(url, load_or_create_keyring(data))
    svc = ConsultationService(store, InProcessBus(), ZoneInfo("Asia/Shanghai"))
    async with store.write() as repo:
        f = await repo.directory.save_facility(Facility("TWN001", "石桥镇卫生院", FacilityLevel.PRIMARY))
        for pid in ("doc1", "exp1"):
            await repo.directory.save_practitioner(Practitioner(
                id=pid, name=HumanName.of("王", ("医生",)), identifiers=[Identifier("s", pid)],
                facility_id=f.id if pid == "doc1" else None, department="心血管内科"))
        await repo.patients.save(Patient(id="pat1", name=HumanName.of("吴", ("桂兰",)),
                                         identifiers=[Identifier("mrn", "M1")], facility_id=f.id))
    actor = Actor("doc1", ("primary_doctor",), "TWN001")
    ids = []
    for _ in range(rooms):
        c = await svc.request(ConsultationRequest(
            patient_id="pat1", department="心血管内科", urgency=Urgency.ROUTINE, chief_complaint="胸闷",
            requester_id="doc1", expert_id="exp1", facility_code="TWN001"), actor)
        await svc.submit(c.id, actor)
        await svc.assign(c.id, actor)
        ids.append(c.id)
    await store.close()
    return ids


class Sock:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.peer = ""
        self.other = ""
        self.latencies: list[float] = []
        self.got: dict[str, int] = {}
        self.done = asyncio.Event()
        self.seen = {"offer": asyncio.Event(), "answer": asyncio.Event()}
        self.expected = 0

    async def send(self, **m: Any) -> None:
        await self.ws.send(json.dumps(m))

    async def read(self) -> None:
        async for raw in self.ws:
            m = json.loads(raw)
            now = time.perf_counter()
            if m["type"] in ("offer", "answer"):
                self.latencies.append(now - float(m["sdp"]))
            elif m["type"] == "candidate":
                self.latencies.append(now - float(m["candidate"]["t"]))
            else:
                continue
            self.got[m["type"]] = self.got.get(m["type"], 0) + 1
            if m["type"] in self.seen:
                self.seen[m["type"]].set()
            if sum(self.got.values()) >= self.expected:
                self.done.set()


async def run(
    base: str, tokens: TokenService, rooms: list[str], candidates: int, spread: float, gather_interval: float
) -> dict[str, Any]:
    doctor = tokens.issue("doc1", ["primary_doctor"], "TWN001", ttl_s=3600)
    expert = tokens.issue("exp1", ["expert"], None, ttl_s=3600)
    url = base.replace("http://", "ws://") + "/signaling"

    async def join(room: str, token: str) -> Sock:
        s = Sock(await websockets.connect(f"{url}?token={token}", max_queue=None))
        await s.send(type="join", room=room)
        joined = json.loads(await s.ws.recv())
        if joined["type"] != "joined":
            raise RuntimeError(f"join refused: {joined}")
        s.peer = joined["peer"]
        return s

    t0 = time.perf_counter()
    pairs = []
    for i in range(0, len(rooms), 50):  # join in batches: the joins are database writes
        firsts = await asyncio.gather(*(join(r, doctor) for r in rooms[i:i + 50]))
        seconds = await asyncio.gather(*(join(r, expert) for r in rooms[i:i + 50]))
        for a, b in zip(firsts, seconds, strict=True):
            a.other, b.other = b.peer, a.peer
            pairs.append((a, b))
    join_s = time.perf_counter() - t0
    socks = [s for p in pairs for s in p]
    held = sum(1 for s in socks if s.ws.state.name == "OPEN")
    for a, b in pairs:
        await a.ws.recv()  # the peer-joined of b
        a.expected = 1 + candidates  # offer + candidates
        b.expected = 1 + candidates  # answer + candidates
    readers = [asyncio.create_task(s.read()) for s in socks]

    async def negotiate(a: Sock, b: Sock) -> None:
        """As browsers do it: the offer, the answer once the offer is in, candidates as ICE gathers them."""
        await asyncio.sleep(random.uniform(0, spread))
        await b.send(type="offer", to=a.peer, sdp=repr(time.perf_counter()))
        await a.seen["offer"].wait()
        await a.send(type="answer", to=b.peer, sdp=repr(time.perf_counter()))
        await b.seen["answer"].wait()
        for k in range(candidates):
            await a.send(type="candidate", to=b.peer, candidate={"candidate": f"c{k}", "t": time.perf_counter()})
            await b.send(type="candidate", to=a.peer, candidate={"candidate": f"c{k}", "t": time.perf_counter()})
            await asyncio.sleep(gather_interval)

    t1 = time.perf_counter()
    await asyncio.gather(*(negotiate(a, b) for a, b in pairs))
    await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in socks)), 120)
    exchange_s = time.perf_counter() - t1
    for r in readers:
        r.cancel()
    await asyncio.gather(*(s.ws.close() for s in socks), return_exceptions=True)
    lat = sorted(x * 1000 for s in socks for x in s.latencies)

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)

    return {
        "rooms": len(pairs), "sockets_held_at_once": held, "relayed": len(lat),
        "relay_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(lat[-1], 2)},
        "join_seconds": round(join_s, 2), "exchange_seconds": round(exchange_s, 2),
        "relayed_per_second": round(len(lat) / exchange_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--spread", type=float, default=2.0, help="seconds over which the rooms start negotiating")
    ap.add_argument("--gather-interval", type=float, default=0.01, help="seconds between a peer's candidates")
    ap.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, port = start_server(work, args.postgres)
        try:
            data = work / "huizhen-data"
            url = args.postgres or f"sqlite+aiosqlite:///{(data / 'huizhen.db').resolve()}"
            rooms = asyncio.run(seed(data, url, args.rooms))
            tokens = TokenService(load_or_create_signing_key(data))
            result = asyncio.run(run(f"http://{HOST}:{port}", tokens, rooms, args.candidates, args.spread,
                                     args.gather_interval))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result.update(database="postgresql" if args.postgres else "sqlite", cpus=os.cpu_count(),
                  spread_seconds=args.spread, gather_interval_seconds=args.gather_interval,
                  note="one instance; client and server share this machine's CPUs")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
