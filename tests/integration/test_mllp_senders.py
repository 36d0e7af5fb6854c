"""MLLP senders bound to their facility by client certificate or source address; MSH-4 spoofing refused (AR)."""

from __future__ import annotations

from pathlib import Path

import hl7
import trustme

from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_tls import client_ssl_context
from huizhen.integration.model import MessageStatus
from tests.helpers import RunningServer, running_server
from tests.integration.test_hl7_mllp import PID_ZHANG, ack_fields, msg


async def audit_and_patients(server: RunningServer) -> tuple[list[str], int]:
    store = server.services.store
    async with store.read() as repo:
        events = [f"{e.action}|{e.outcome}|{e.detail}|{e.source}" async for e in repo.audit.all()]
        total = (await repo.patients.search(identifier="Q1001")).total
    return events, total


def err_segment(ack: bytes) -> str:
    return str(hl7.parse(ack.decode()).segment("ERR"))


async def test_source_address_allow_list_binds_msh4(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "d", db_url, mllp_sender_addresses="127.0.0.0/8=QSWSY") as server:
        client = MllpClient("127.0.0.1", server.ports["mllp"])
        try:
            assert ack_fields(await client.send(msg(PID_ZHANG, control_id="OK-1")))[0] == "AA"
            spoofed = await client.send(msg(PID_ZHANG, control_id="SPOOF-1", sender="HIS|CITYHOSP"))
            code, control, _ = ack_fields(spoofed)
            assert (code, control) == ("AR", "SPOOF-1")
            err = err_segment(spoofed)
            assert "MSH^1^4" in err and "CITYHOSP" in err and "QSWSY" in err
            # the connection keeps serving after a refusal
            assert ack_fields(await client.send(msg(PID_ZHANG, control_id="OK-2")))[0] == "AA"
        finally:
            await client.close()
        events, total = await audit_and_patients(server)
        async with server.services.store.read() as repo:
            refused = (await repo.journal.search(status=MessageStatus.ERROR)).items
    denied = [e for e in events if e.startswith("hl7-receive|denied")]
    assert len(denied) == 1 and "CITYHOSP" in denied[0] and "127.0.0.1:" in denied[0]
    assert total == 1
    # the journal row of the refusal names the sender it claimed and the message
    assert [(m.sender, m.control_id, m.type) for m, _ in refused] == [("HIS^CITYHOSP", "SPOOF-1", "ADT^A01")]


async def test_unknown_source_address_is_refused(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "d", db_url, mllp_sender_addresses="10.9.0.0/16=QSWSY") as server:
        client = MllpClient("127.0.0.1", server.ports["mllp"])
        try:
            ack = await client.send(msg(PID_ZHANG, control_id="U-1"))
        finally:
            await client.close()
        events, total = await audit_and_patients(server)
    assert ack_fields(ack)[0] == "AR" and "not an allowed MLLP sender" in err_segment(ack)
    assert total == 0 and any("denied" in e for e in events)


async def test_client_certificate_names_the_facility(tmp_path: Path, db_url: str) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    town = ca.issue_cert("his.qswsy.example")
    city = ca.issue_cert("pacs.city.example")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "town", "city")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    town.private_key_and_cert_chain_pem.write_to_path(str(files["town"]))
    city.private_key_and_cert_chain_pem.write_to_path(str(files["city"]))
    settings = {
        "tls_cert_file": str(files["cert"]), "tls_key_file": str(files["key"]),
        "tls_client_ca_file": str(files["ca"]), "mllp_require_client_cert": True,
        "mllp_sender_certs": "his.qswsy.example=QSWSY,pacs.city.example=CITYHOSP",
    }
    async with running_server(tmp_path / "d", db_url, **settings) as server:
        port = server.ports["mllp"]

        def client(pem: Path) -> MllpClient:
            ctx = client_ssl_context(str(files["ca"]), str(pem), str(pem))
            return MllpClient("127.0.0.1", port, ssl_context=ctx, server_hostname="127.0.0.1")

        city_client, town_client = client(files["city"]), client(files["town"])
        try:
            # the city hospital's certificate cannot write as the township clinic
            ack = await city_client.send(msg(PID_ZHANG, control_id="X-1", sender="HIS|QSWSY"))
            assert ack_fields(ack)[0] == "AR" and "QSWSY" in err_segment(ack)
            ack = await town_client.send(msg(PID_ZHANG, control_id="X-2", sender="HIS|QSWSY"))
            assert ack_fields(ack)[0] == "AA"
        finally:
            await city_client.close()
            await town_client.close()
        events, total = await audit_and_patients(server)
    assert total == 1
    assert [e.split("|")[0:2] for e in events if "denied" in e] == [["hl7-receive", "denied"]]
