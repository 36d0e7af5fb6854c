"""HL7 v2 ingest through the real pipeline: MLLP → journal → parse → map → store → commit → ACK.

Starts ``huizhen serve`` (its own process, a fresh data folder) on SQLite and,
with --postgres, on PostgreSQL; N concurrent MLLP senders (send and wait, one
connection each) stream a mix of ADT^A01 (a new patient each: its own MRN,
visit and national ID) and ORU^R01 (10 OBX for a known patient). Every ACK is AA after the commit, as in
production. In the same run, the bare MLLP endpoint of bench/mllp_bare.py
(ACK without parsing or storing) gives this machine's ceiling. Prints JSON.

    python bench/hl7_ingest.py [--seconds 5] [--concurrency 1 4 16] [--postgres postgresql+asyncpg://…]
                               [--mllp-workers 1 2]

``--mllp-workers`` runs each back end once per value (``HUIZHEN_MLLP_WORKERS``:
server processes behind the one MLLP port); without it, each runs with the
server's default (1 on SQLite, 2 on PostgreSQL with a second core). Besides messages/s, each level
reports the server's CPU time per message and the cores it got (all its
processes, from /proc): on a shared machine the rate follows the CPU the
scheduler grants, the CPU per message does not.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consultation_store import pg_admin
from mllp_bare import percentile
from serving import HOST, free_port, start_server

from huizhen.adapters.hl7_send import ack_code
from huizhen.adapters.mllp_client import MllpClient

_NATIONAL_IDS = itertools.count(110101198000000000)  # one per ADT of the whole run


def adt(tag: str, national_id: int | None = None) -> bytes:
    national = national_id if national_id is not None else next(_NATIONAL_IDS)
    return (
        f"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||ADT^A01^ADT_A01|A{tag}|P|2.5\r"
        "EVN|A01|20261127101500+0800\r"
        f"PID|1||P{tag}^^^QSWSY^MR~{national}^^^CHN^NNCHN||张^三丰||19800101|M|||中山路100号"
        "||13800001111\r"
        f"PV1|1|I|内科病区^201^03||||D001^李^建国||||||||||||V{tag}^^^QSWSY^VN|||||||||||||||||||||||||"
        "20261127093000+0800\r"
        "DG1|1||I20.0^不稳定型心绞痛^ICD10\r"
    ).encode()


def oru(tag: str, patient: str) -> bytes:
    obx = "".join(
        f"OBX|{k}|NM|{code}^{name}^L||{value}|{unit}|{rng}|N|||F|||20261127083000+0800\r"
        for k, (code, name, value, unit, rng) in enumerate(
            [("WBC", "白细胞计数", "6.5", "10*9/L", "3.5-9.5"), ("RBC", "红细胞计数", "4.6", "10*12/L", "4.3-5.8"),
             ("HGB", "血红蛋白", "142", "g/L", "130-175"), ("PLT", "血小板计数", "210", "10*9/L", "125-350"),
             ("GLU", "葡萄糖", "5.6", "mmol/L", "3.9-6.1"), ("K", "钾", "4.1", "mmol/L", "3.5-5.3"),
             ("NA", "钠", "140", "mmol/L", "137-147"), ("CREA", "肌酐", "78", "umol/L", "57-111"),
             ("ALT", "丙氨酸氨基转移酶", "22", "U/L", "9-50"), ("TC", "总胆固醇", "4.8", "mmol/L", "0-5.2")],
            start=1,
        )
    )
    return (
        f"MSH|^~\\&|LIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||ORU^R01^ORU_R01|R{tag}|P|2.5\r"
        f"PID|1||{patient}^^^QSWSY^MR||王^小明||19700101|F\r"
        f"OBR|1|L{tag}|F{tag}|CBC^血常规^L|||20261127080000+0800\r" + obx
    ).encode()


def start_mllp_server(
    workdir: Path, database_url: str | None, workers: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """The server with its MLLP listener (``workers``: None for the server's default); returns
    the process and the MLLP port."""
    mllp = free_port()
    settings = {"mllp_port": str(mllp)} | ({"mllp_workers": str(workers)} if workers else {})
    proc, _ = start_server(workdir, database_url, **settings)
    return proc, mllp


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far (Linux /proc; 0 elsewhere)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{current}/task"):
                pids += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def measured(pid: int, port: int, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    result = asyncio.run(level(port, concurrency, seconds, warmup))
    cpu, wall = cpu_seconds(pid) - cpu, time.perf_counter() - wall
    sent = result["messages"] * (seconds + warmup) / seconds  # the warm-up's messages cost CPU too
    result["server_cpu_ms_per_message"] = round(cpu / sent * 1000, 3) if sent else None
    result["server_cores_used"] = round(cpu / wall, 2)
    return result


async def level(port: int, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    not_aa: list[str] = []
    start = time.perf_counter() + warmup
    end = start + seconds

    async def sender(n: int) -> None:
        run = secrets.token_hex(3)
        async with MllpClient(HOST, port, ack_timeout_s=60) as client:
            first = f"{run}{n:02d}{0:08d}"
            await client.send(adt(first))  # the patient this sender's results are for
            i = 0
            while (now := time.perf_counter()) < end:
                i += 1
                tag = f"{run}{n:02d}{i:08d}"
                payload = adt(tag) if i % 2 else oru(tag, f"P{first}")
                code = ack_code(await client.send(payload))
                if code != "AA":
                    not_aa.append(code)
                if now >= start:
                    latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(sender(n) for n in range(concurrency)))
    latencies.sort()
    return {
        "concurrency": concurrency,
        "messages": len(latencies),
        "messages_per_s": round(len(latencies) / seconds, 1),
        "ack_latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 2),
                           "p99": round(percentile(latencies, 0.99) * 1000, 2)},
        "not_aa": len(not_aa),
    }


def bare_ceiling(args: argparse.Namespace) -> Any:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("mllp_bare.py")), "--seconds", str(args.seconds),
         "--concurrency", *map(str, args.concurrency)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)["results"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--postgres", default=None)
    ap.add_argument("--mllp-workers", type=int, nargs="+", default=[None])
    args = ap.parse_args()
    results: dict[str, Any] = {}
    targets: dict[str, str | None] = {"sqlite": None}
    pg_name = f"hz_bench_{secrets.token_hex(3)}"
    if args.postgres:
        from sqlalchemy.engine import make_url

        pg_admin(args.postgres, f'CREATE DATABASE "{pg_name}"')
        targets["postgresql"] = make_url(args.postgres).set(database=pg_name).render_as_string(False)
    try:
        for (backend, url), workers in itertools.product(targets.items(), args.mllp_workers):
            name = backend if workers is None else f"{backend}_{workers}_workers"
            if url and workers != args.mllp_workers[0]:  # a fresh database for each run
                pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                pg_admin(args.postgres, f'CREATE DATABASE "{pg_name}"')
            with tempfile.TemporaryDirectory() as tmp:
                proc, port = start_mllp_server(Path(tmp), url, workers)
                try:
                    results[name] = [measured(proc.pid, port, c, args.seconds, args.warmup) for c in args.concurrency]
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    finally:
        if args.postgres:
            pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    results["bare_mllp_ceiling"] = bare_ceiling(args)
    print(json.dumps({"bench": "hl7_ingest", "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                      "durable": "ACK after commit",
                      "mix": "ADT^A01 (new patient) / ORU^R01 (10 OBX) alternating",
                      "seconds_per_level": args.seconds, "results": results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
