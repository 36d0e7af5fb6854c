"""The ingest path's shortcuts keep the promises, on both back ends.

Group commit: messages of several connections share one transaction, yet a
failing one is journaled AE alone and the others are AA and applied; a
duplicate inside one batch is answered as a duplicate. The applier's
per-message memory and the engine's committed facility ids never outlive
what was committed. Statements run straight on the driver read and write
exactly what SQLAlchemy does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from huizhen.adapters.mllp_client import MllpClient
from huizhen.integration import tables
from huizhen.integration.apply import Applier
from huizhen.integration.commands import AddObservations, MergePatients, UpsertPatient
from huizhen.integration.engine import Outcome
from huizhen.integration.errors import Conflict
from huizhen.integration.model import (
    Actor,
    Coding,
    EntityRef,
    Gender,
    HumanName,
    Identifier,
    Message,
    MessageStatus,
    Observation,
    Patient,
)
from huizhen.integration.repo.prepared import Prepared
from huizhen.integration.store import Store
from huizhen.settings import Settings
from tests.helpers import RunningServer, running_server

TZ = Settings().tz


def msg(*segments: str, type: str = "ADT^A01^ADT_A01", control_id: str, facility: str = "QSWSY") -> bytes:
    msh = f"MSH|^~\\&|HIS|{facility}|HUIZHEN|HZ|20261127101500+0800||{type}|{control_id}|P|2.5"
    return "\r".join((msh, *segments)).encode() + b"\r"


def adt(n: int, facility: str = "QSWSY") -> bytes:
    return msg(f"PID|1||B{n}^^^{facility}^MR||张^{n}||19800101|M",
               f"PV1|1|I|内科||||||||||||||||V{n}^^^{facility}^VN", control_id=f"B-{n}", facility=facility)


# a booking for an order nobody sent: mapped fine, fails when applied (NotFound) → AE
ORPHAN_BOOKING = msg("SCH|APT1^QSWSY||||||||||^^30^20261128100000+0800|||||||||||||||NO-SUCH^QSWSY",
                     "PID|1||B1^^^QSWSY^MR||张^1", type="SIU^S12^SIU_S12", control_id="SIU-X")


def ack_code(ack: bytes) -> str:
    msa = next(line for line in ack.decode().split("\r") if line.startswith("MSA"))
    return msa.split("|")[1]


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "data", db_url) as srv:
        yield srv


async def test_connections_share_a_commit_and_a_failing_message_fails_alone(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    group = server.services.store._group
    jobs, batches = group.jobs, group.batches
    results = await asyncio.gather(
        *(engine.receive(codec, adt(n)) for n in range(1, 4)), engine.receive(codec, ORPHAN_BOOKING)
    )
    assert group.jobs - jobs >= 4 and group.batches - batches < group.jobs - jobs  # they did share
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 3 + [Outcome.FAILED]
    assert [ack_code(r.answer or b"") for r in results] == ["AA", "AA", "AA", "AE"]
    async with server.services.store.read() as repo:
        for n in range(1, 4):
            assert await repo.patients.by_identifier("QSWSY", f"B{n}") is not None
        failed = await repo.journal.get(results[3].message.id)
        processed = await repo.journal.search(status=MessageStatus.PROCESSED)
    assert failed is not None and failed.status is MessageStatus.ERROR and failed.effects == []
    assert "NO-SUCH" in (failed.error or "") and "MSA|AE|SIU-X" in (failed.ack or "")
    assert processed.total == 3


async def test_senders_on_their_own_connections_over_mllp(server: RunningServer) -> None:
    async def sender(raws: list[bytes]) -> list[str]:
        async with MllpClient("127.0.0.1", server.ports["mllp"], ack_timeout_s=30) as client:
            return [ack_code(await client.send(raw)) for raw in raws]

    # each connection: a patient, then results for that patient (applied in order, or NotFound)
    def results_for(n: int) -> bytes:
        return msg(f"PID|1||B{n}^^^QSWSY^MR||张^{n}", "OBR|1|L{n}|F{n}|CBC^血常规^L",
                   "OBX|1|NM|WBC^白细胞计数^L||6.5|10*9/L|3.5-9.5|N|||F", type="ORU^R01^ORU_R01",
                   control_id=f"R-{n}")

    codes = await asyncio.gather(*(sender([adt(n), results_for(n)]) for n in range(10, 16)),
                                 sender([ORPHAN_BOOKING]))
    assert codes == [["AA", "AA"]] * 6 + [["AE"]]
    async with server.services.store.read() as repo:
        for n in range(10, 16):
            patient = await repo.patients.by_identifier("QSWSY", f"B{n}")
            assert patient is not None
            assert len((await repo.clinical.observations_for_patients([patient.id]))[patient.id]) == 1


async def test_a_duplicate_within_one_batch_is_answered_as_a_duplicate(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    first, again = await asyncio.gather(engine.receive(codec, adt(7)), engine.receive(codec, adt(7)))
    assert (first.message.status, again.message.status) == (MessageStatus.PROCESSED, MessageStatus.DUPLICATE)
    assert first.answer == again.answer
    async with server.services.store.read() as repo:
        page = await repo.patients.search(identifier="QSWSY|B7")
    assert page.total == 1


async def test_a_duplicate_is_a_duplicate_even_where_applying_it_again_would_fail(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    applied = await engine.receive(codec, adt(9))
    # the same sender + control id again, with content that fails when applied (no such order)
    again = await engine.receive(codec, ORPHAN_BOOKING.replace(b"|SIU-X|", b"|B-9|"))
    assert (applied.message.status, again.message.status) == (MessageStatus.PROCESSED, MessageStatus.DUPLICATE)
    assert again.answer == applied.answer and again.outcome is Outcome.APPLIED


async def test_reprocessing_a_message_applied_since_is_refused(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    failed = await engine.receive(codec, ORPHAN_BOOKING.replace(b"|SIU-X|", b"|R-1|"))
    resent = await engine.receive(codec, adt(10).replace(b"|B-10|", b"|R-1|"))  # the sender's fix, same id
    assert (failed.outcome, resent.outcome) == (Outcome.FAILED, Outcome.APPLIED)
    again = await engine.reprocess(codec, failed.message.id)
    assert again.outcome is Outcome.FAILED and resent.message.id in (again.message.error or "")
    async with server.services.store.read() as repo:
        stored = await repo.journal.get(failed.message.id)
    assert stored is not None and stored.status is MessageStatus.ERROR


async def test_a_facility_registered_by_a_failed_message_is_not_remembered(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    # A03 registers the unknown sender facility, then fails: no such visit → all rolled back
    discharge = msg("PID|1||D1^^^NEWF^MR||李^四", "PV1|1|I|||||||||||||||||V404^^^NEWF^VN",
                    type="ADT^A03^ADT_A03", control_id="D-1", facility="NEWF")
    failed = await engine.receive(codec, discharge)
    assert failed.outcome is Outcome.FAILED
    applied = await engine.receive(codec, adt(8, facility="NEWF"))
    assert applied.outcome is Outcome.APPLIED, applied.message.error
    async with server.services.store.read() as repo:
        facility = await repo.directory.facility_by_code("NEWF")
        patient = await repo.patients.by_identifier("NEWF", "B8")
    assert facility is not None and patient is not None and patient.facility_id == facility.id


async def test_a_visit_sent_again_merges_into_the_stored_encounter(server: RunningServer) -> None:
    engine, codec = server.services.engine, server.services.codecs["mllp"]
    admit = msg("PID|1||E1^^^QSWSY^MR||张^一", "PV1|1|I|内科病区^201^03||||||||||||||||V77^^^QSWSY^VN",
                control_id="E-1")
    # the same visit again: a new ward, no location, another patient record (the visit moves to it)
    update = msg("PID|1||E2^^^QSWSY^MR||张^二", "PV1|1||||||||||||||||||V77^^^QSWSY^VN|||||||||||||||||||||||||"
                 "20261127093000+0800", type="ADT^A08^ADT_A01", control_id="E-2")
    first = await engine.receive(codec, admit)
    second = await engine.receive(codec, update)
    assert first.outcome is second.outcome is Outcome.APPLIED, (first.message.error, second.message.error)
    ids = {e.id for r in (first, second) for e in r.message.effects if e.type == "Encounter"}
    async with server.services.store.read() as repo:
        stored = await repo.clinical.encounter_by_visit(Identifier("QSWSY", "V77"))
        moved_to = await repo.patients.by_identifier("QSWSY", "E2")
        facility = await repo.directory.facility_by_code("QSWSY")
    assert stored is not None and moved_to is not None and facility is not None
    assert ids == {stored.id}  # one encounter, touched by both messages
    assert stored.patient_id == moved_to.id and stored.facility_id == facility.id
    assert stored.location == "内科病区/201/03" and stored.class_code is not None  # kept: the update left them empty
    assert stored.start == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)  # added by the update
    assert stored.identifiers == [Identifier("QSWSY", "V77")]


async def test_results_for_a_merged_identifier_reach_the_survivor(store: Store) -> None:
    survivor, merged = Identifier("H", "S1"), Identifier("H", "M1")
    wbc = Observation(patient_id="", code=Coding("6690-2", "http://loinc.org"), value_quantity=Decimal("6.5"))
    async with store.write() as repo:
        applier = Applier(repo, actor=Actor.system("test"), at=datetime.now(UTC), tz=TZ)
        await applier.apply_all([
            UpsertPatient(Patient(HumanName.of("张", ("三",)), [merged])),
            UpsertPatient(Patient(HumanName.of("张", ("三",)), [survivor])),
            MergePatients(survivor=(survivor,), merged=(merged,)),
            AddObservations(patient=(merged,), observations=(wbc,)),  # named by the merged record's MRN
        ])
        kept = await repo.patients.by_identifier("H", "S1")
        gone = await repo.patients.by_identifier("H", "M1", follow_merge=False)
        assert kept is not None and gone is not None and gone.merged_into == kept.id
        found = await repo.clinical.observations_for_patients([kept.id, gone.id])
    assert len(found[kept.id]) == 1 and found[gone.id] == []


async def test_patient_updates_write_only_what_changed(store: Store) -> None:
    mrn, national = Identifier("H", "U1"), Identifier("CHN", "110101198001010011")
    async with store.write() as repo:
        p = await repo.patients.add(Patient(HumanName.of("王", ("芳",)), [mrn], gender=Gender.FEMALE))
    async with store.write() as repo:
        stored = await repo.patients.find([mrn])
        assert stored is not None and stored.identifiers == [mrn]
        same = await repo.patients.update(stored, Patient(stored.name, list(stored.identifiers), stored.gender,
                                                          id=stored.id))
        assert same.updated_at == stored.updated_at  # nothing changed: nothing written
    async with store.write() as repo:
        stored = await repo.patients.find([national, mrn])
        assert stored is not None
        before = Patient(stored.name, list(stored.identifiers), stored.gender, id=stored.id)
        stored.identifiers.append(national)
        stored.name, stored.birth_date = HumanName.of("王", ("芳芳",)), date(1980, 1, 1)
        await repo.patients.update(stored, before)
    async with store.read() as repo:
        again = await repo.patients.find([national])
        by_new_name = await repo.patients.search(search="王芳芳")
        by_old_name = await repo.patients.search(search="王芳")
    assert again is not None and again.id == p.id and again.identifiers == [mrn, national]
    assert again.birth_date == date(1980, 1, 1)
    assert by_new_name.total == 1 and by_old_name.total == 0
    other = Patient(HumanName.of("李", ("四",)), [Identifier("H", "U2")])
    async with store.write() as repo:
        await repo.patients.add(other)
    with pytest.raises(Conflict):
        async with store.write() as repo:
            stored = await repo.patients.find([Identifier("H", "U2")])
            assert stored is not None
            before = Patient(stored.name, list(stored.identifiers), id=stored.id)
            stored.identifiers.append(national)  # held by the first patient
            await repo.patients.update(stored, before)


async def test_statements_on_the_driver_read_and_write_as_sqlalchemy_does(store: Store) -> None:
    received = datetime(2026, 11, 27, 2, 15, 30, 123456, tzinfo=UTC)
    m = Message(channel="mllp", raw=b"MSH|^~\\&|\xe5\xbc\xa0", received_at=received, status=MessageStatus.PROCESSED,
                sender="HIS^QSWSY", control_id="P-1", type="ADT^A01", ack="MSA|AA|P-1",
                effects=[EntityRef("Patient", "p1")], processed_at=received)
    async with store.write() as repo:
        await repo.journal.add(m)  # straight on the driver
    async with store.read() as repo:
        via_sqlalchemy = await repo.journal.get(m.id)
        via_driver = await repo.journal.processed("HIS^QSWSY", "P-1")
    assert via_sqlalchemy == via_driver == m
    async with store.engine.connect() as conn:  # the rows as stored
        row = (await conn.execute(tables.messages.select())).one()
    assert row.received_at == received and row.effects == [["Patient", "p1"]]
    with pytest.raises(IntegrityError):
        async with store.write() as repo:
            await repo.patients.add(Patient(HumanName.of("甲", ()), [Identifier("H", "X")]))
            await repo.patients.add(Patient(HumanName.of("乙", ()), [Identifier("H", "X")]))
    async with store.read() as repo:
        assert await repo.patients.find([Identifier("H", "X")]) is None  # rolled back whole


async def test_a_statement_on_the_driver_counts_the_rows_it_changed(store: Store) -> None:
    insert = (postgresql.insert if store.dialect == "postgresql" else sqlite.insert)(tables.sequences)
    add = Prepared(insert.on_conflict_do_nothing(index_elements=[tables.sequences.c.name]))
    bump = Prepared(update(tables.sequences).where(tables.sequences.c.name == bindparam("n")).values(value=2))
    async with store.write() as repo:
        assert await repo.journal.run_count(add, {"name": "counted", "value": 1}) == 1
        assert await repo.journal.run_count(add, {"name": "counted", "value": 1}) == 0  # already there
        assert await repo.journal.run_count(bump, {"n": "counted"}) == 1
        assert await repo.journal.run_count(bump, {"n": "absent"}) == 0
