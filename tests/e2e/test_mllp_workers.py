"""``mllp_workers = 2``: two processes behind one MLLP port, one database, the same promises.

Many connections at once (the server hands them out over both processes): every
message is applied once and in order per connection, a control id sent on every
connection at once is applied once, the events of the child reach the parent's
subscribers, and the child leaves with the parent, even after SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from huizhen.adapters.hl7_send import ack_code
from huizhen.adapters.mllp_client import MllpClient
from tests.e2e.instance import Instance
from tests.e2e.test_hl7_durability import journal

CONNECTIONS = 12
PER_CONNECTION = 15


def adt(tag: str, patient: str, trigger: str = "A04", name: str = "测试") -> bytes:
    return (
        f"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||ADT^{trigger}^ADT_A01|{tag}|P|2.5\r"
        f"PID|1||{patient}^^^QSWSY^MR||{name}^{tag}||19700101|M\r"
    ).encode()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


async def connection(port: int, n: int) -> list[str]:
    async with MllpClient("127.0.0.1", port, ack_timeout_s=60) as client:
        codes = [ack_code(await client.send(adt(f"W{n:02d}-{i:03d}", f"W{n:02d}"))) for i in range(PER_CONNECTION)]
        # the last message of each connection renames its patient: in order, it is the name that stays
        codes.append(ack_code(await client.send(adt(f"W{n:02d}-LAST", f"W{n:02d}", "A08", "最后"))))
    return codes


async def everyone_sends(port: int) -> tuple[list[list[str]], list[str]]:
    streams = await asyncio.gather(*(connection(port, n) for n in range(CONNECTIONS)))
    same = adt("SAME-1", "SAME")

    async def once() -> str:
        async with MllpClient("127.0.0.1", port, ack_timeout_s=60) as client:
            return ack_code(await client.send(same))

    return list(streams), list(await asyncio.gather(*(once() for _ in range(CONNECTIONS))))


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_two_processes_keep_exactly_once_and_order(instance: Instance) -> None:
    instance.env["HUIZHEN_MLLP_WORKERS"] = "2"
    instance.start()
    assert instance.proc is not None
    [child] = children(instance.proc.pid)
    streams, same = asyncio.run(everyone_sends(int(instance.env["HUIZHEN_MLLP_PORT"])))
    assert all(code == "AA" for codes in streams for code in codes) and same == ["AA"] * CONNECTIONS

    token = instance.run("token", "--sub", "admin-1", "--role", "integration_admin").stdout.strip()
    rows = journal(instance, token)
    processed = [cid for cid, status in rows if status == "PROCESSED"]
    assert len(processed) == len(set(processed)) == CONNECTIONS * (PER_CONNECTION + 1) + 1
    assert sorted(status for cid, status in rows if cid == "SAME-1") == ["DUPLICATE"] * (CONNECTIONS - 1) + [
        "PROCESSED"]
    query = "query($id: String) { patients(identifier: $id) { edges { node { name { text } } } } }"
    reader = instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()  # reads patients
    for n in range(CONNECTIONS):
        found = instance.gql(reader, query, id=f"W{n:02d}")
        assert [e["node"]["name"]["text"] for e in found["data"]["patients"]["edges"]] == [f"最后W{n:02d}-LAST"]

    os.kill(instance.proc.pid, signal.SIGKILL)
    instance.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
