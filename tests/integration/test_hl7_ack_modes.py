"""Enhanced acknowledgement mode (MSH-15/16) and inbound ACK messages, over real MLLP sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from huizhen.adapters.hl7_send import send_files
from huizhen.adapters.mllp_framing import encode
from huizhen.integration.model import MessageStatus, OutboundMessage
from tests.helpers import RunningServer, running_server
from tests.integration.test_hl7_mllp import CORPUS, PID_ZHANG, SIU, ack_fields, msg

END = b"\x1c\r"


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        yield srv


class Peer:
    """A raw MLLP peer: writes frames, reads every frame that comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(encode(p) for p in payloads))
        await self.writer.drain()

    async def frame(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readuntil(END), 30)
        return data[data.index(b"\x0b") + 1 : -len(END)]


@pytest.fixture
async def peer(server: RunningServer) -> AsyncIterator[Peer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["mllp"])
    yield Peer(reader, writer)
    writer.close()


def enhanced(accept: str, application: str, *segments: str, version: str = "2.5", **kw: str) -> bytes:
    raw = msg(*segments, version=version, **kw)
    return raw.replace(f"|P|{version}".encode(), f"|P|{version}|||{accept}|{application}".encode(), 1)


async def journal(server: RunningServer) -> dict[str, tuple[MessageStatus, str | None, list[str], str | None]]:
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp", first=100)
    return {m.control_id or "": (m.status, m.ack, [e.type for e in m.effects], m.error) for m, _ in page.items}


async def test_enhanced_al_al_sends_commit_then_application_ack(server: RunningServer, peer: Peer) -> None:
    await peer.send(enhanced("AL", "AL", PID_ZHANG, control_id="EN-1"))
    accept, application = await peer.frame(), await peer.frame()
    assert ack_fields(accept)[:2] == ("CA", "EN-1")
    assert ack_fields(application)[:2] == ("AA", "EN-1")
    for ack in (accept, application):
        msh = ack.split(b"\r", 1)[0].split(b"|")
        assert msh[8].startswith(b"ACK") and msh[14:16] == [b"NE", b"NE"]  # an ACK asks for no ACK back
    assert accept.split(b"|")[9] != application.split(b"|")[9]  # each ACK has its own control id
    status, ack, effects, _ = (await journal(server))["EN-1"]
    assert status is MessageStatus.PROCESSED and "Patient" in effects
    assert ack is not None and "MSA|CA|EN-1" in ack and "MSA|AA|EN-1" in ack  # both journaled


async def test_enhanced_failure_gets_ca_then_ae_with_err(server: RunningServer, peer: Peer) -> None:
    # a booking for an order nobody placed: journaled (CA), not applied (AE with ERR)
    await peer.send(enhanced("AL", "AL", *SIU, type="SIU^S12^SIU_S12", control_id="EN-2"))
    accept, application = await peer.frame(), await peer.frame()
    assert ack_fields(accept)[:2] == ("CA", "EN-2") and b"ERR|" not in accept
    code, echoed, text = ack_fields(application)
    assert (code, echoed) == ("AE", "EN-2") and "ERR|" in text
    assert (await journal(server))["EN-2"][0] is MessageStatus.ERROR


async def test_enhanced_conditions_decide_which_acks_are_sent(server: RunningServer, peer: Peer) -> None:
    await peer.send(
        enhanced("NE", "AL", PID_ZHANG, control_id="APP-ONLY"),   # only the application ACK
        enhanced("AL", "NE", PID_ZHANG, control_id="ACC-ONLY"),   # only the commit ACK
        enhanced("ER", "ER", PID_ZHANG, control_id="SILENT"),     # success: nothing at all
        enhanced("SU", "SU", PID_ZHANG, control_id="BOTH-SU"),    # success: both
        enhanced("AL", "AL", PID_ZHANG, control_id="BAD", version="9.9"),  # rejected: CR, no application ACK
        msg(PID_ZHANG, control_id="ORIGINAL"),                    # original mode: one AA
    )
    got = [ack_fields(await peer.frame())[:2] for _ in range(6)]
    assert got == [("AA", "APP-ONLY"), ("CA", "ACC-ONLY"), ("CA", "BOTH-SU"), ("AA", "BOTH-SU"),
                   ("CR", "BAD"), ("AA", "ORIGINAL")]
    entries = await journal(server)
    assert entries["SILENT"][0] is MessageStatus.PROCESSED and entries["SILENT"][1] is None
    assert [v[0] for k, v in entries.items() if k not in ("APP-ONLY", "ACC-ONLY", "SILENT", "BOTH-SU", "ORIGINAL")] == [
        MessageStatus.ERROR]  # the rejected one, journaled before its header was read


async def test_enhanced_duplicate_gets_both_acks_again(server: RunningServer, peer: Peer) -> None:
    raw = enhanced("AL", "AL", PID_ZHANG, control_id="EN-DUP")
    await peer.send(raw)
    first = [await peer.frame(), await peer.frame()]
    await peer.send(raw)
    again = [await peer.frame(), await peer.frame()]
    assert first == again and [ack_fields(a)[0] for a in again] == ["CA", "AA"]


async def test_send_tool_reads_the_application_ack(server: RunningServer, tmp_path: Path) -> None:
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(enhanced("AL", "AL", PID_ZHANG, control_id="TOOL-1") + b"\n"
                     + msg(PID_ZHANG, control_id="TOOL-2"))
    report = await send_files([feed], "127.0.0.1", server.ports["mllp"], timeout_s=30)
    assert [line.split("\t")[1:] for line in report.lines] == [["TOOL-1", "CA AA"], ["TOOL-2", "AA"]]
    assert report.all_accepted


def ack_message(code: str, acknowledged: str, control_id: str, sender: str = "HIS|QSWSY") -> bytes:
    return msg(f"MSA|{code}|{acknowledged}", type="ACK^R01^ACK", control_id=control_id, sender=sender)


async def test_inbound_ack_is_journaled_linked_and_never_answered(server: RunningServer, peer: Peer) -> None:
    report = OutboundMessage(channel="mllp-out", destination="QSWSY", payload=b"MSH|^~\\&|...",
                             created_at=datetime.now(UTC), control_id="HZR-OUT-1", type="ORU^R01")
    async with server.services.store.write() as repo:
        await repo.outbox.enqueue(report)
    # pipelined: the first answer on the connection is the ADT's, nothing answered either ACK
    await peer.send(ack_message("AA", "HZR-OUT-1", "HIS-ACK-1"), ack_message("AE", "NOBODY", "HIS-ACK-2"),
                    msg(PID_ZHANG, control_id="AFTER-ACK"))
    assert ack_fields(await peer.frame())[:2] == ("AA", "AFTER-ACK")
    entries = await journal(server)
    linked, unlinked = entries["HIS-ACK-1"], entries["HIS-ACK-2"]
    assert linked[0] is unlinked[0] is MessageStatus.FILTERED
    assert linked[1] is None and unlinked[1] is None  # no ACK sent for either
    assert linked[2] == ["OutboundMessage"] and unlinked[2] == []
    assert "HZR-OUT-1" in (linked[3] or "") and "not answered" in (linked[3] or "")
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp", first=100)
    [ack_entry] = [m for m, _ in page.items if m.control_id == "HIS-ACK-1"]
    assert ack_entry.effects[0].id == report.id


async def test_an_ack_is_not_answered_even_when_rejected_or_duplicated(server: RunningServer, peer: Peer) -> None:
    corpus_ack = (CORPUS / "pipehat" / "sample-v2.3.1-ack-1.hl7").read_bytes()
    bad_version = msg("MSA|AA|X1", type="ACK", control_id="ACK-V", version="9.9")
    await peer.send(corpus_ack, corpus_ack, bad_version, msg(PID_ZHANG, control_id="LAST"))
    assert ack_fields(await peer.frame())[:2] == ("AA", "LAST")
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp", first=100)
    assert [(m.ack, (m.error or "")[:9]) for m, _ in page.items if m.status is MessageStatus.ERROR] == [
        (None, "rejected:")]
    corpus_entries = sorted(m.status.value for m, _ in page.items if m.control_id == "1125342816253.100000055")
    assert corpus_entries == ["DUPLICATE", "FILTERED"]
