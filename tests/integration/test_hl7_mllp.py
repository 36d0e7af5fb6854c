"""HL7 v2 over real MLLP sockets into the real server and store, on both back ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import hl7
import httpx
import pytest

from huizhen.adapters.hl7_send import application_ack_wait
from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_framing import encode
from huizhen.integration.model import MessageStatus
from tests.helpers import RunningServer, running_server

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7v2"


def msg(*segments: str, type: str = "ADT^A01^ADT_A01", control_id: str = "C1", version: str = "2.5",
        charset: str = "", encoding: str = "utf-8", sender: str = "HIS|QSWSY") -> bytes:
    msh = f"MSH|^~\\&|{sender}|HUIZHEN|HZ|20261127101500+0800||{type}|{control_id}|P|{version}||||||{charset}"
    return "\r".join((msh.rstrip("|"), *segments)).encode(encoding) + b"\r"


PID_ZHANG = "PID|1||Q1001^^^QSWSY^MR~110101195603140022^^^CHN^NNCHN||张^桂兰||19560314|F|||石桥镇1号||13800000001"
PV1 = "PV1|1|O|内科门诊||||||||||||||||V5001^^^QSWSY^VN|||||||||||||||||||||||||20261127090000+0800"


def ack_fields(ack: bytes, encoding: str = "utf-8") -> tuple[str, str, str]:
    parsed = hl7.parse(ack.decode(encoding))
    msa = parsed.segment("MSA")
    return str(msa[1]), str(msa[2]) if len(msa) > 2 else "", ack.decode(encoding)


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        yield srv


@pytest.fixture
async def mllp(server: RunningServer) -> AsyncIterator[MllpClient]:
    client = MllpClient("127.0.0.1", server.ports["mllp"], ack_timeout_s=30)
    await client.connect()
    yield client
    await client.close()


async def test_adt_creates_patient_and_acks_aa(server: RunningServer, mllp: MllpClient) -> None:
    code, echoed, text = ack_fields(await mllp.send(msg(PID_ZHANG, PV1, control_id="ADT-1")))
    assert (code, echoed) == ("AA", "ADT-1")
    assert text.startswith("MSH|^~\\&|HUIZHEN|HZ|HIS|QSWSY|")  # sender and receiver swapped
    async with server.services.store.read() as repo:
        patient = await repo.patients.by_identifier("QSWSY", "Q1001")
        page = await repo.journal.search(channel="mllp")
    assert patient is not None and patient.name.text == "张桂兰" and patient.phone == "13800000001"
    [(journaled, _)] = page.items
    assert journaled.status is MessageStatus.PROCESSED and journaled.control_id == "ADT-1"
    assert ("Patient", patient.id) in [(e.type, e.id) for e in journaled.effects]
    assert journaled.ack is not None and "MSA|AA|ADT-1" in journaled.ack


async def test_gb18030_message_keeps_chinese_and_acks_in_charset(server: RunningServer, mllp: MllpClient) -> None:
    raw = msg("PID|1||G77^^^QSWSY^MR||欧阳^志远||19490105|M", control_id="GB-1", charset="GB 18030-2000",
              encoding="gb18030")
    ack = await mllp.send(raw)
    code, echoed, _ = ack_fields(ack, "gb18030")
    assert (code, echoed) == ("AA", "GB-1")
    async with server.services.store.read() as repo:
        patient = await repo.patients.by_identifier("QSWSY", "G77")
    assert patient is not None and patient.name.text == "欧阳志远"


async def test_duplicate_gets_same_ack_and_is_not_applied_twice(server: RunningServer, mllp: MllpClient) -> None:
    raw = msg(PID_ZHANG, PV1, control_id="DUP-1")
    first = await mllp.send(raw)
    second = await mllp.send(raw)
    assert ack_fields(first)[:2] == ack_fields(second)[:2] == ("AA", "DUP-1")
    assert first == second
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp")
        patients = await repo.patients.search(identifier="Q1001")
    assert sorted(m.status.value for m, _ in page.items) == ["DUPLICATE", "PROCESSED"]
    assert patients.total == 1


async def test_garbage_and_unsupported_types_are_rejected(server: RunningServer, mllp: MllpClient) -> None:
    garbage = await mllp.send(b"this is not HL7 at all")
    assert ack_fields(garbage)[0] == "AR"
    unsupported = await mllp.send(msg("PID|1||X^^^QSWSY", type="ZZZ^Z99", control_id="Z-1"))
    code, echoed, text = ack_fields(unsupported)
    assert (code, echoed) == ("AR", "Z-1") and "ERR|" in text
    version = await mllp.send(msg(PID_ZHANG, control_id="V-1", version="9.9"))
    assert ack_fields(version)[0] == "AR"
    # the listener keeps serving the same connection
    assert ack_fields(await mllp.send(msg(PID_ZHANG, control_id="OK-1")))[0] == "AA"
    async with server.services.store.read() as repo:
        errors = await repo.journal.search(status=MessageStatus.ERROR)
    assert errors.total == 3
    # the journal says who sent each rejected message and which one it was, as far as MSH reads
    journaled = {(m.sender, m.control_id, m.type) for m, _ in errors.items}
    assert journaled == {(None, None, None), ("HIS^QSWSY", "Z-1", "ZZZ^Z99"), ("HIS^QSWSY", "V-1", "ADT^A01")}


async def test_lab_results_attach_to_the_patient(server: RunningServer, mllp: MllpClient) -> None:
    oru = msg(
        "PID|1||U9^^^QSWSY^MR||李^四",
        "OBR|1|ORD1|FIL1|CBC^血常规^L",
        "OBX|1|NM|WBC^白细胞计数^L||6.50|10*9/L|3.5-9.5|N|||F|||20261127083000+0800",
        type="ORU^R01^ORU_R01", control_id="ORU-1",
    )
    assert ack_fields(await mllp.send(oru))[:2] == ("AA", "ORU-1")
    async with server.services.store.read() as repo:
        patient = await repo.patients.by_identifier("QSWSY", "U9")
        assert patient is not None
        [obs] = (await repo.clinical.observations_for_patients([patient.id]))[patient.id]
    assert (obs.code.code, obs.code.system) == ("6690-2", "http://loinc.org")  # local WBC translated by the table
    assert (str(obs.value_quantity), obs.unit, obs.interpretation) == ("6.50", "10*9/L", "N")
    # the local code the lab sent is kept beside the LOINC one: over GraphQL and FHIR
    doctor = server.client(server.token("doc-1", "primary_doctor", facility="QSWSY"))
    try:
        data = await doctor.execute(
            "query($id: ID!) { patient(id: $id) { observations { code alternateCodes { code system display } } } }",
            id=patient.id,
        )
    finally:
        await doctor.aclose()
    [seen] = data["patient"]["observations"]
    assert seen == {"code": "6690-2", "alternateCodes": [{"code": "WBC", "system": "L", "display": "白细胞计数"}]}
    bearer = {"Authorization": f"Bearer {server.token('doc-1', 'primary_doctor', facility='QSWSY')}"}
    async with httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=bearer) as fhir:
        read = (await fhir.get(f"/Observation/{obs.id}")).json()
        by_local = (await fhir.get("/Observation", params={"patient": patient.id, "code": "L|WBC"})).json()
        by_other = (await fhir.get("/Observation", params={"patient": patient.id, "code": "X|WBC"})).json()
    codings = [(c.get("system"), c["code"]) for c in read["code"]["coding"]]
    assert codings == [("http://loinc.org", "6690-2"), ("L", "WBC")]
    assert [e["resource"]["id"] for e in by_local["entry"]] == [obs.id]  # a token matches any coding
    assert by_other["total"] == 0


ORDER = [
    "PID|1||Q2002^^^QSWSY^MR||王^大明||19620101|M",
    "ORC|NW|HZ-ORD-9^QSWSY|||||^^^^^S|||||D001^孙^丽^^^^^^QSWSY",
    "OBR|1|HZ-ORD-9||HZCONSULT-CARD^心内科远程会诊^L|||||||||胸痛3天，加重2小时",
    "DG1|1||I20.000^不稳定型心绞痛^ICD10",
]
SIU = [
    "SCH|APT1^QSWSY||||||||||^^30^20261128100000+0800|||||||||||||||HZ-ORD-9^QSWSY",
    "PID|1||Q2002^^^QSWSY^MR||王^大明",
]


async def test_consultation_order_schedule_and_reprocess(server: RunningServer, mllp: MllpClient) -> None:
    # the booking arrives before its order: journaled, AE, nothing applied
    code, echoed, text = ack_fields(await mllp.send(msg(*SIU, type="SIU^S12^SIU_S12", control_id="SIU-1")))
    assert (code, echoed) == ("AE", "SIU-1") and "ERR|" in text
    async with server.services.store.read() as repo:
        [(failed, _)] = (await repo.journal.search(status=MessageStatus.ERROR)).items
    assert "HZ-ORD-9" in (failed.error or "")
    # the order: a PENDING consultation, idempotent on the placer order number
    for control in ("ORM-1", "ORM-2"):
        assert ack_fields(await mllp.send(msg(*ORDER, type="ORM^O01^ORM_O01", control_id=control)))[0] == "AA"
    async with server.services.store.read() as repo:
        page = await repo.consultations.search()
    [(c, _)] = page.items
    assert c.status.value == "PENDING" and c.department == "心血管内科" and c.urgency.value == "CRITICAL"
    assert c.chief_complaint == "胸痛3天，加重2小时" and c.disease_code and c.disease_code.startswith("I20")
    assert [e.type for e in c.timeline] == ["CREATED", "SUBMITTED"]
    # read as FHIR, the request carries the HIS's own order code (OBR-4) beside SNOMED's "consultation"
    bearer = {"Authorization": f"Bearer {server.token('coord-1', 'coordinator')}"}
    async with httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=bearer) as fhir:
        request = (await fhir.get(f"/ServiceRequest/{c.id}")).json()
    assert [(x.get("system"), x["code"]) for x in request["code"]["coding"]] == [
        ("L", "HZCONSULT-CARD"), ("http://snomed.info/sct", "11429006")
    ]
    # the admin reprocesses the booking: same journal row, now applied
    redone = await server.services.reprocess(failed.id)
    assert redone.status is MessageStatus.PROCESSED and redone.id == failed.id and "MSA|AA|SIU-1" in (redone.ack or "")
    async with server.services.store.read() as repo:
        again = await repo.consultations.get(c.id)
    assert again is not None and again.scheduled_at is not None
    assert [e.type for e in again.timeline][-1] == "SCHEDULED"


def accept_ack_condition(raw: bytes) -> str:
    line = raw.split(b"\r", 1)[0].decode("latin-1")
    fields = line.split(line[3]) if len(line) > 3 else []
    return fields[14].strip() if len(fields) > 14 else ""


def is_ack(raw: bytes) -> bool:
    line = raw.split(b"\r", 1)[0].decode("latin-1")
    fields = line.split(line[3]) if len(line) > 3 else []
    return len(fields) > 8 and fields[8].split("^")[0].strip().upper() == "ACK"


async def test_enhanced_mode_never_ack_is_honoured(server: RunningServer, mllp: MllpClient) -> None:
    never = msg(PID_ZHANG, control_id="NE-1").replace(b"|P|2.5", b"|P|2.5|||NE|NE", 1)
    plain = msg(PID_ZHANG, control_id="AFTER-1")
    # pipelined on one connection: the only answer is the second message's
    await mllp.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["mllp"])
    writer.write(encode(never) + encode(plain))
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
    writer.close()
    assert ack_fields(first.strip(b"\x0b\x1c\r"))[:2] == ("AA", "AFTER-1")
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp")
    assert {(m.control_id, m.status.value) for m, _ in page.items} == {("NE-1", "PROCESSED"), ("AFTER-1", "PROCESSED")}


async def test_corpus_messages_get_an_answer_each(server: RunningServer, mllp: MllpClient) -> None:
    every = sorted(CORPUS.glob("*/*.hl7"))
    # an ACK is never answered, nor a message that asks for no commit ACK (tests/integration/test_hl7_ack_modes.py)
    files = [p for p in every
             if accept_ack_condition(p.read_bytes()) not in ("NE", "ER") and not is_ack(p.read_bytes())]
    assert files, "the shared corpus is missing"
    answered = 0
    for path in files:
        raw = path.read_bytes()
        ack = await mllp.send(raw)
        code = hl7.parse(ack.decode("utf-8", errors="replace")).segment("MSA")[1]
        assert str(code) in ("AA", "AE", "AR", "CA", "CE", "CR"), path.name
        if str(code) == "CA" and (wait := application_ack_wait(raw, 30)) is not None:
            await mllp.receive(wait)  # enhanced mode: the application ACK follows on the connection
        answered += 1
    assert answered == len(files)
    async with server.services.store.read() as repo:
        page = await repo.journal.search(channel="mllp", first=100)
    assert page.total == len(files)
    assert any(m.status is MessageStatus.PROCESSED for m, _ in page.items)


async def test_journal_and_channels_over_graphql(server: RunningServer, mllp: MllpClient) -> None:
    await mllp.send(msg(PID_ZHANG, PV1, control_id="G-1"))
    await mllp.send(msg(*SIU, type="SIU^S12^SIU_S12", control_id="G-2"))  # no such order yet: ERROR
    await mllp.send(b"garbage")
    admin = server.client(server.token("admin-1", "integration_admin"))
    try:
        data = await admin.execute(
            """{ messages(channel: "mllp", first: 10) { totalCount edges { node {
                   id channel status type controlId sender receivedAt error ack effects { type id } } } }
                 errors: messages(status: ERROR) { totalCount }
                 channels { name direction state received errors queued lastError lastMessageAt } }"""
        )
        nodes = [e["node"] for e in data["messages"]["edges"]]
        assert data["messages"]["totalCount"] == 3 and data["errors"]["totalCount"] == 2
        assert [n["controlId"] for n in nodes][1:] == ["G-2", "G-1"]  # newest first
        applied = nodes[2]
        assert applied["status"] == "PROCESSED" and applied["type"] == "ADT^A01"
        assert "QSWSY" in applied["sender"]
        assert "MSA|AA|G-1" in applied["ack"] and {e["type"] for e in applied["effects"]} >= {"Patient", "Encounter"}
        assert applied["receivedAt"].endswith("+08:00")
        [channel] = [c for c in data["channels"] if c["name"] == "mllp"]
        assert channel["state"] == "listening" and channel["received"] == 3 and channel["errors"] == 2
        assert channel["lastError"]
        failed = nodes[1]["id"]
        await mllp.send(msg(*ORDER, type="ORM^O01^ORM_O01", control_id="G-3"))
        redone = (await admin.execute(
            "mutation($id: ID!) { reprocessMessage(id: $id) { id status error ack } }", id=failed
        ))["reprocessMessage"]
        assert redone["id"] == failed and redone["status"] == "PROCESSED" and redone["error"] is None
        again = await admin.error_code("mutation($id: ID!) { reprocessMessage(id: $id) { id } }", id=failed)
        assert again == "BAD_INPUT"
    finally:
        await admin.aclose()


async def test_strictly_validated_sender_gets_ar_for_a_broken_structure(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "v", db_url, hl7_validate_senders="STRICT") as srv:
        client = MllpClient("127.0.0.1", srv.ports["mllp"])
        try:
            # ADT^A01 without its required EVN and PV1: python-hl7 takes it, hl7apy does not
            broken = msg("PID|1||S1^^^STRICT^MR||赵^六", sender="HIS|STRICT", control_id="ST-1")
            code, echoed, text = ack_fields(await client.send(broken))
            assert (code, echoed) == ("AR", "ST-1") and "ERR|" in text
            lenient = msg("PID|1||S1^^^QSWSY^MR||赵^六", control_id="ST-2")  # another sender: not validated
            assert ack_fields(await client.send(lenient))[0] == "AA"
        finally:
            await client.close()


async def test_a_merged_patients_old_identifier_finds_the_survivor(server: RunningServer, mllp: MllpClient) -> None:
    """ADT^A40: queries of the merged record's MRN, over GraphQL and FHIR, answer the survivor."""
    for control, pid in (("M-1", "PID|1||S100^^^QSWSY^MR||周^瑜||19750101|M"),
                         ("M-2", "PID|1||S200^^^QSWSY^MR||周^公瑾||19750101|M")):
        assert ack_fields(await mllp.send(msg(pid, control_id=control)))[0] == "AA"
    merge = msg("EVN|A40|20261201141000", "PID|1||S100^^^QSWSY^MR||周^瑜||19750101|M", "MRG|S200^^^QSWSY^MR",
                type="ADT^A40^ADT_A39", control_id="M-3")
    assert ack_fields(await mllp.send(merge))[0] == "AA"
    async with server.services.store.read() as repo:
        survivor = await repo.patients.by_identifier("QSWSY", "S100")
    assert survivor is not None
    coordinator = server.client(server.token("coord-1", "coordinator"))
    try:
        for wanted in ("S200", "QSWSY|S200", "S100"):
            data = await coordinator.execute(
                "query($i: String) { patients(identifier: $i) { totalCount edges { node { id } } } }", i=wanted
            )
            assert data["patients"]["totalCount"] == 1, wanted
            assert [e["node"]["id"] for e in data["patients"]["edges"]] == [survivor.id], wanted
    finally:
        await coordinator.aclose()
    bearer = {"Authorization": f"Bearer {server.token('coord-1', 'coordinator')}"}
    async with httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=bearer) as fhir:
        found = (await fhir.get("/Patient", params={"identifier": "QSWSY|S200"})).json()
    assert found["total"] == 1 and [e["resource"]["id"] for e in found["entry"]] == [survivor.id]


async def test_coded_and_time_results_read_back_whole_over_fhir(server: RunningServer, mllp: MllpClient) -> None:
    """OBX-5 CWE keeps its alternate triplet and OBX-2 DT/TS read as FHIR valueDateTime (ISO 8601)."""
    oru = msg(
        "PID|1||U10^^^QSWSY^MR||李^四",
        "OBR|1|ORD10||MICRO^微生物^L",
        "OBX|1|CWE|600-7^Bacteria identified^LN||112283007^Escherichia coli^SCT^EC^大肠埃希菌^99LAB||||||F",
        "OBX|2|DT|11778-8^Delivery date Estimated^LN||20270315||||||F",
        "OBX|3|TS|8665-2^Last menstrual period start date^LN||202606080930+0800||||||F",
        type="ORU^R01^ORU_R01", control_id="ORU-10", charset="UNICODE UTF-8",
    )
    assert ack_fields(await mllp.send(oru))[:2] == ("AA", "ORU-10")
    async with server.services.store.read() as repo:
        patient = await repo.patients.by_identifier("QSWSY", "U10")
    assert patient is not None
    bearer = {"Authorization": f"Bearer {server.token('doc-1', 'primary_doctor', facility='QSWSY')}"}
    async with httpx.AsyncClient(base_url=f"{server.base_url}/fhir", headers=bearer) as fhir:
        found = (await fhir.get("/Observation", params={"patient": patient.id})).json()
    by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in found["entry"]}
    culture = by_code["600-7"]["valueCodeableConcept"]["coding"]
    assert [(c["system"], c["code"]) for c in culture] == [("http://snomed.info/sct", "112283007"), ("99LAB", "EC")]
    assert by_code["11778-8"]["valueDateTime"] == "2027-03-15"
    assert by_code["8665-2"]["valueDateTime"] == "2026-06-08T09:30:00+08:00"


async def test_a_sender_stalled_mid_frame_is_cut_off_after_the_setting(tmp_path: Path, db_url: str) -> None:
    """HUIZHEN_MLLP_STALL_TIMEOUT_SECONDS: the message ACKed before the stall stays; the partial one
    is neither journaled nor answered; the listener serves the next connection."""
    async with running_server(tmp_path / "s", db_url, mllp_stall_timeout_seconds=0.3) as srv:
        port = srv.ports["mllp"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(msg(PID_ZHANG, PV1, control_id="STALL-1")) + b"\x0b" + msg(PID_ZHANG)[:40])
        await writer.drain()
        answered = await asyncio.wait_for(reader.read(), timeout=10)  # until the server closes
        writer.close()
        assert answered.startswith(b"\x0b") and answered.endswith(b"\x1c\r")
        assert ack_fields(answered[1:-2])[:2] == ("AA", "STALL-1")
        client = MllpClient("127.0.0.1", port)
        try:
            assert ack_fields(await client.send(msg(PID_ZHANG, PV1, control_id="STALL-2")))[0] == "AA"
        finally:
            await client.close()
        async with srv.services.store.read() as repo:
            page = await repo.journal.search(channel="mllp")
    assert sorted(m.control_id or "" for m, _ in page.items) == ["STALL-1", "STALL-2"]
