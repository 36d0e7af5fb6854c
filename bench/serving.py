"""A `huizhen serve` child process for the benchmarks: fresh ports, no inherited HUIZHEN_* settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, database_url: str | None, **settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server in ``workdir`` with ``settings`` (``MLLP_PORT="…"`` → ``HUIZHEN_MLLP_PORT``);
    returns the process and its HTTP port once ``/readyz`` answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    http = free_port()
    env.update(HUIZHEN_HTTP_PORT=str(http), HUIZHEN_MLLP_PORT="0", HUIZHEN_DICOM_PORT="0",
               HUIZHEN_LOG_LEVEL="WARNING")
    env.update({f"HUIZHEN_{k.upper()}": v for k, v in settings.items()})
    if database_url:
        env["HUIZHEN_DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "huizhen", "serve"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=(workdir / "serve.log").open("wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{http}/readyz", timeout=1).status_code == 200:
                return proc, http
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start: " + (workdir / "serve.log").read_text()[-2000:])
