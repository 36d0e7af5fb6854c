"""A Huizhen server as a child process, the way a new user runs it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import free_port

HUIZHEN = [sys.executable, "-m", "huizhen"]


class Instance:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{env['HUIZHEN_HTTP_PORT']}"
        self.log = workdir / "serve.log"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HUIZHEN, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True, check=check, timeout=120
        )

    def use_tls(self, folder: Path) -> ssl.SSLContext:
        """Serve with a certificate for 127.0.0.1 from a test CA; the context that trusts it."""
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        self.env.update(HUIZHEN_TLS_CERT_FILE=str(folder / "cert.pem"), HUIZHEN_TLS_KEY_FILE=str(folder / "key.pem"))
        self.base = self.base.replace("http://", "https://")
        return ssl.create_default_context(cafile=str(folder / "ca.pem"))

    def start(self, verify: ssl.SSLContext | bool = True) -> None:
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([*HUIZHEN, "serve"], cwd=self.workdir, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/readyz", verify=verify, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def gql(self, token: str, query: str, **variables: object) -> dict:  # type: ignore[type-arg]
        r = httpx.post(
            self.base + "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def instance(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Instance]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    env.update(HUIZHEN_HTTP_PORT=str(free_port()), HUIZHEN_MLLP_PORT=str(free_port()), HUIZHEN_DICOM_PORT="0",
               HUIZHEN_MLLP_WORKERS="1")  # one process on either back end, unless a test asks for more
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        env["HUIZHEN_DATABASE_URL"] = request.getfixturevalue("postgres_databases").new()
    inst = Instance(tmp_path, env)
    yield inst
    inst.stop(signal.SIGKILL)


