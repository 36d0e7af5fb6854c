"""Kill the server with SIGKILL in the middle of an HL7 stream: every AA survives, exactly once.

A sender streams ADT messages over MLLP; the server process is killed at an
arbitrary point. After a restart, every message that was acknowledged AA is in
the journal exactly once as PROCESSED with its patient stored, and a sender that
resends everything (as one does after a lost connection) gets exactly-once
effects: the acknowledged ones come back DUPLICATE, the rest are applied now.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from huizhen.adapters.hl7_send import ack_code
from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_framing import MllpError
from tests.e2e.instance import Instance

N = 400
KILL_AFTER = 120


def adt(i: int) -> bytes:
    return (
        f"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||ADT^A04^ADT_A01|K{i:05d}|P|2.5\r"
        f"PID|1||K{i:05d}^^^QSWSY^MR||测试^{i}号||19700101|M\r"
        f"PV1|1|O|内科门诊||||||||||||||||V{i:05d}^^^QSWSY^VN\r"
    ).encode()


async def stream_until_killed(instance: Instance) -> list[int]:
    """Send messages one by one; kill the server after KILL_AFTER ACKs; return the AA'd indexes."""
    port = int(instance.env["HUIZHEN_MLLP_PORT"])
    client = MllpClient("127.0.0.1", port, ack_timeout_s=10)
    acked: list[int] = []
    try:
        for i in range(N):
            if len(acked) == KILL_AFTER:
                assert instance.proc is not None
                os.kill(instance.proc.pid, signal.SIGKILL)  # mid-stream: the next messages are in flight
            try:
                ack = await client.send(adt(i))
            except (MllpError, OSError):
                break
            if ack_code(ack) == "AA":
                acked.append(i)
    finally:
        await client.close()
    return acked


async def resend_all(instance: Instance) -> dict[str, int]:
    client = MllpClient("127.0.0.1", int(instance.env["HUIZHEN_MLLP_PORT"]), ack_timeout_s=30)
    codes: dict[str, int] = {}
    try:
        for i in range(N):
            code = ack_code(await client.send(adt(i)))
            codes[code] = codes.get(code, 0) + 1
    finally:
        await client.close()
    return codes


QUERY = """query($after: String) { messages(channel: "mllp", first: 100, after: $after) {
  totalCount edges { node { controlId status } } pageInfo { hasNextPage endCursor } } }"""


def journal(instance: Instance, token: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    after = None
    while True:
        page = instance.gql(token, QUERY, after=after)["data"]["messages"]
        rows += [(e["node"]["controlId"], e["node"]["status"]) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return rows
        after = page["pageInfo"]["endCursor"]


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the sender may be served by the child (huizhen.workers)
@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_acked_messages_survive_sigkill_exactly_once(instance: Instance, workers: str) -> None:
    instance.env["HUIZHEN_MLLP_WORKERS"] = workers
    instance.start()
    acked = asyncio.run(stream_until_killed(instance))
    assert instance.proc is not None and instance.proc.wait(timeout=30) == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER and acked == list(range(len(acked)))

    instance.start()
    token = instance.run("token", "--sub", "admin-1", "--role", "integration_admin").stdout.strip()
    before = journal(instance, token)
    processed = [cid for cid, status in before if status == "PROCESSED"]
    assert len(processed) == len(set(processed))  # nothing applied twice
    assert {f"K{i:05d}" for i in acked} <= set(processed)  # every AA is durable

    codes = asyncio.run(resend_all(instance))
    assert codes == {"AA": N}
    after = journal(instance, token)
    final = [cid for cid, status in after if status == "PROCESSED"]
    assert sorted(final) == [f"K{i:05d}" for i in range(N)]  # exactly once each, in the end
    duplicates = {cid for cid, status in after if status == "DUPLICATE"}
    assert {f"K{i:05d}" for i in acked} <= duplicates
    clinical = instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()  # not the admin's
    patients = instance.gql(clinical, '{ patients(identifier: "K00000") { totalCount } }')["data"]["patients"]
    assert patients["totalCount"] == 1
