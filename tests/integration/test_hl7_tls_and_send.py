"""MLLP over TLS (and mutual TLS) through the server's own settings, and ``huizhen send``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_framing import MllpError
from huizhen.adapters.mllp_tls import client_ssl_context
from tests.helpers import running_server
from tests.integration.test_hl7_mllp import PID_ZHANG, ack_fields, msg


@pytest.fixture
def url(tmp_path: Path) -> str:
    from huizhen.integration import migrate

    database = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    migrate.upgrade(database)
    return database


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("his.qswsy.example")
    files = {
        "ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return {k: str(v) for k, v in files.items()}


async def test_mllp_over_tls(tmp_path: Path, pki: dict[str, str], url: str) -> None:
    async with running_server(tmp_path / "d", url, tls_cert_file=pki["cert"], tls_key_file=pki["key"]) as server:
        client = MllpClient("127.0.0.1", server.ports["mllp"], ssl_context=client_ssl_context(pki["ca"]),
                            server_hostname="127.0.0.1")
        try:
            assert ack_fields(await client.send(msg(PID_ZHANG, control_id="TLS-1")))[:2] == ("AA", "TLS-1")
        finally:
            await client.close()
        plain = MllpClient("127.0.0.1", server.ports["mllp"], ack_timeout_s=5, connect_timeout_s=5)
        with pytest.raises((MllpError, OSError)):  # a plain-text sender gets nothing on a TLS port
            await plain.send(msg(PID_ZHANG, control_id="PLAIN-1"))
        await plain.close()


async def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, pki: dict[str, str], url: str) -> None:
    settings = {"tls_cert_file": pki["cert"], "tls_key_file": pki["key"], "tls_client_ca_file": pki["ca"],
                "mllp_require_client_cert": True}
    async with running_server(tmp_path / "d", url, **settings) as server:
        port = server.ports["mllp"]
        with_cert = MllpClient("127.0.0.1", port, server_hostname="127.0.0.1",
                               ssl_context=client_ssl_context(pki["ca"], pki["client"], pki["client"]))
        try:
            assert ack_fields(await with_cert.send(msg(PID_ZHANG, control_id="MTLS-1")))[0] == "AA"
        finally:
            await with_cert.close()
        without = MllpClient("127.0.0.1", port, server_hostname="127.0.0.1", ack_timeout_s=5,
                             ssl_context=client_ssl_context(pki["ca"]))
        with pytest.raises((MllpError, OSError)):
            await without.send(msg(PID_ZHANG, control_id="MTLS-2"))
        await without.close()


async def test_huizhen_send_prints_each_ack(tmp_path: Path, url: str) -> None:
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(
        msg(PID_ZHANG, control_id="S-1").replace(b"\r", b"\n")  # a file edited on a PC: LF endings
        + msg("PID|1||Q9^^^QSWSY^MR||李^四", control_id="S-2")
        + msg("PID|1||Q9", type="ZZZ^Z01", control_id="S-3")
    )
    async with running_server(tmp_path / "d", url) as server:
        import asyncio

        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "huizhen", "send", str(feed), "--host", "127.0.0.1",
             "--port", str(server.ports["mllp"])],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[1:] for line in lines] == [["S-1", "AA"], ["S-2", "AA"], ["S-3", "AR"]]
    assert "sent 3 message(s): AA 2, AR 1" in result.stderr
    assert result.returncode == 1  # not everything was accepted
