"""The ceiling of this machine for MLLP: a bare endpoint that ACKs without parsing or storing.

The endpoint is :class:`huizhen.adapters.mllp.MllpServer` with a handler that
returns one fixed ACK; it runs in its own process (as the real listener would),
and N concurrent clients (:class:`huizhen.adapters.mllp_client.MllpClient`,
send and wait, one connection each) stream a ~1 KB ADT^A01 at it. Prints JSON:
messages/s and ACK latency p50/p99 per concurrency. ``bench/hl7_ingest.py``
compares the real pipeline against these figures.

    python bench/mllp_bare.py [--seconds 5] [--concurrency 1 4 16] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any

from huizhen.adapters.mllp import MllpServer, PeerInfo, RejectReason
from huizhen.adapters.mllp_client import MllpClient

HOST = "127.0.0.1"
ACK = b"MSH|^~\\&|HUIZHEN|HZ|HIS|TOWN|20240101120000||ACK^A01^ACK|1|P|2.5\rMSA|AA|1\r"
NAK = b"MSH|^~\\&|HUIZHEN|HZ|HIS|TOWN|20240101120000||ACK|1|P|2.5\rMSA|AR|1\r"
SEGMENTS = [
    "MSH|^~\\&|HIS|XIANGZHEN_WSY|HUIZHEN|HZ|20240315093000+0800||ADT^A01^ADT_A01|{id}|P|2.5"
    "|||AL|NE||UNICODE UTF-8",
    "EVN|A01|20240315093000+0800|||DOC001^李^建国^^^^^^HIS",
    "PID|1||3301020000123^^^XIANGZHEN_WSY^MR~330102198001011234^^^CHN^NNCHN||张^三丰^^^^^L"
    "||19800101|M|||中山路100号^^杭州市^浙江省^310000^CHN^H||^PRN^PH^^86^571^88886666"
    "~^PRN^CP^^86^^13800001111||||||||||||||||N",
    "NK1|1|张^小明|SON^儿子^HL70063|中山路100号^^杭州市^浙江省^310000^CHN|^PRN^CP^^86^^13900002222",
    "PV1|1|I|NEIKE^201^03^XIANGZHEN_WSY^^^^^内科病区||||DOC001^李^建国^^^^主治医师"
    "|DOC002^王^芳^^^^副主任医师||NEI||||7|||DOC001^李^建国|||||||||||||||||||||||||"
    "20240315093000+0800",
    "PV2|||R07.4^胸痛^ICD10|||||||||||||||||||||||||||||||||||||||",
    "OBX|1|NM|8867-4^Heart rate^LN||88|/min^beats per minute^UCUM|60-100|N|||F"
    "|||20240315092000+0800",
    "OBX|2|NM|8480-6^Systolic blood pressure^LN||146|mm[Hg]^mmHg^UCUM|90-140|H|||F"
    "|||20240315092000+0800",
    "AL1|1|DA|1545^青霉素^LOCAL|SV|皮疹",
    "DG1|1||I20.0^不稳定型心绞痛^ICD10||20240315|A",
]
MESSAGE_TEMPLATE = "\r".join(SEGMENTS) + "\r"


class BareAck:
    async def on_frame(self, payload: bytes, peer: PeerInfo) -> bytes | None:
        return ACK

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        return NAK


def run(coro: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


async def serve() -> None:
    server = MllpServer(BareAck(), HOST, 0, idle_timeout_s=None, max_connections=1024)
    await server.start()
    print(server.port, flush=True)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await server.stop(grace_s=1.0)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def level(port: int, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter() + warmup
    end = start + seconds

    async def sender(n: int) -> None:
        async with MllpClient(HOST, port, ack_timeout_s=30) as client:
            i = 0
            while (now := time.perf_counter()) < end:
                i += 1
                payload = MESSAGE_TEMPLATE.format(id=f"B{n:02d}{i:08d}").encode()
                await client.send(payload)
                if now >= start:
                    latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(sender(n) for n in range(concurrency)))
    latencies.sort()
    return {
        "concurrency": concurrency,
        "messages": len(latencies),
        "messages_per_s": round(len(latencies) / seconds, 1),
        "ack_latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 3),
            "p99": round(percentile(latencies, 0.99) * 1000, 3),
        },
    }


async def bench(port: int, args: argparse.Namespace) -> None:
    results = [await level(port, c, args.seconds, args.warmup) for c in args.concurrency]
    print(
        json.dumps(
            {
                "bench": "mllp_bare",
                "python": platform.python_version(),
                "loop": args.loop,
                "cpus": os.cpu_count(),
                "message_bytes": len(MESSAGE_TEMPLATE.format(id="B0000000000").encode()),
                "mode": "send-and-wait, one connection per client, server in its own process",
                "seconds_per_level": args.seconds,
                "results": results,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run(serve(), args.loop)
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--loop", args.loop],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(child.stdout.readline()) if child.stdout else 0
        run(bench(port, args), args.loop)
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
