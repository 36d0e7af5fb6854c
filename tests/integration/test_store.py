"""The canonical store on both back ends: a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from huizhen.integration import tables
from huizhen.integration.consultations import ConsultationRequest, ConsultationService
from huizhen.integration.errors import Conflict, InvalidTransition, NotFound
from huizhen.integration.events import InProcessBus
from huizhen.integration.model import (
    Actor,
    AuditEvent,
    Coding,
    ConsultationStatus,
    Facility,
    FacilityLevel,
    Gender,
    HumanName,
    Identifier,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
    PractitionerTitle,
    ReferenceRange,
    Urgency,
)
from huizhen.integration.store import Store
from huizhen.settings import Settings

TZ = Settings().tz
DOCTOR = Actor("doc-1", ("primary_doctor",), "TWN001")
MRN = "urn:test:TWN001:mrn"


async def seed(store: Store) -> tuple[Patient, Practitioner]:
    async with store.write() as repo:
        f = await repo.directory.save_facility(Facility("TWN001", "石桥镇卫生院", FacilityLevel.PRIMARY))
        p = await repo.patients.save(
            Patient(
                name=HumanName.of("欧阳", ("志远",)),
                identifiers=[Identifier(MRN, "M001"), Identifier("urn:id", "ID77")],
                gender=Gender.MALE,
                birth_date=date(1949, 1, 5),
                phone="13800000004",
                address="东城区1号",
                facility_id=f.id,
            )
        )
        e = await repo.directory.save_practitioner(
            Practitioner(
                name=HumanName.of("王", ("建国",)),
                identifiers=[Identifier("urn:staff", "E1")],
                department="心血管内科",
                title=PractitionerTitle.CHIEF,
                expertise=["I20"],
                online=True,
            )
        )
    return p, e


async def test_migrations_match_the_tables(store: Store) -> None:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), tables.metadata))
    assert diff == []


async def test_patient_round_trip_with_identifiers(store: Store) -> None:
    p, _ = await seed(store)
    async with store.read() as repo:
        got = await repo.patients.get(p.id)
        by_id = await repo.patients.by_identifier(MRN, "M001")
    assert got is not None and by_id is not None and by_id.id == p.id
    assert got.name.text == "欧阳志远" and got.name.family == "欧阳"
    assert got.identifiers == [Identifier(MRN, "M001"), Identifier("urn:id", "ID77")]
    assert (got.gender, got.birth_date, got.phone, got.address) == (
        Gender.MALE,
        date(1949, 1, 5),
        "13800000004",
        "东城区1号",
    )
    assert got.created_at is not None and got.created_at.tzinfo is not None


async def test_no_plaintext_phi_in_the_database(store: Store) -> None:
    p, _ = await seed(store)
    async with store.write() as repo:  # a modality that puts the PatientID in StudyID, as the corpus's do
        await repo.imaging.add_study(ImagingStudy(patient_id=p.id, study_instance_uid="1.2.826.0.1.3",
                                                  study_id="M001-X1EXAMPLE"))
    async with store.engine.connect() as conn:
        dump = []
        for table in ("patients", "patient_identifiers", "patient_search_tokens", "imaging_studies"):
            for row in await conn.execute(text(f"SELECT * FROM {table}")):
                dump.append(repr(tuple(row)))
    blob = "\n".join(dump)
    # the birth date in the forms a driver or a column could show it (a bare "1949" also turns up
    # by chance in random hex: ids and digests)
    secrets = ("欧阳", "志远", "M001", "ID77", "13800000004", "东城区", "1949-01-05", "19490105", "1949, 1, 5",
               "X1EXAMPLE")
    for secret in secrets:
        assert secret not in blob
    if store.dialect == "sqlite":  # and the file itself, its write-ahead log with it
        db = Path(store.engine.url.database or "")
        raw = b"".join(f.read_bytes() for f in (db, db.with_name(db.name + "-wal")) if f.exists())
        assert b"1.2.826.0.1.3" in raw  # the study is in what is read
        for secret in secrets:
            assert secret.encode() not in raw, secret


async def test_identifier_belongs_to_one_patient(store: Store) -> None:
    await seed(store)
    async with store.write() as repo:
        with pytest.raises(Conflict, match="M001"):
            await repo.patients.save(Patient(name=HumanName.of("李", ("四",)), identifiers=[Identifier(MRN, "M001")]))


async def test_search_by_name_and_identifier_with_paging(store: Store) -> None:
    async with store.write() as repo:
        for i in range(5):
            await repo.patients.save(
                Patient(name=HumanName.of("张", (f"三{i}",)), identifiers=[Identifier(MRN, f"P{i}")])
            )
    async with store.read() as repo:
        by_family = await repo.patients.search(search="张", first=2)
        assert by_family.total == 5 and len(by_family.items) == 2 and by_family.has_next
        seen = [p.id for p, _ in by_family.items]
        cursor = by_family.items[-1][1]
        while cursor:
            page = await repo.patients.search(search="张", first=2, after=cursor)
            seen += [p.id for p, _ in page.items]
            cursor = page.items[-1][1] if page.has_next else None
        assert len(seen) == len(set(seen)) == 5
        assert [p.name.text for p, _ in (await repo.patients.search(search="张三3")).items] == ["张三3"]
        assert (await repo.patients.search(identifier="P4")).total == 1
        assert (await repo.patients.search(identifier=f"{MRN}|P2")).total == 1
        assert (await repo.patients.search(identifier="other|P2")).total == 0


async def test_observation_keeps_exact_decimal(store: Store) -> None:
    p, _ = await seed(store)
    obs = Observation(
        patient_id=p.id,
        code=Coding("2345-7", "http://loinc.org", "Glucose"),
        value_type="NM",
        value_quantity=Decimal("5.60"),
        unit="mmol/L",
        reference_range=ReferenceRange(Decimal("3.9"), Decimal("6.1")),
        interpretation="N",
        effective_at=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    )
    async with store.write() as repo:
        await repo.clinical.add_observations([obs])
    async with store.read() as repo:
        [got] = (await repo.clinical.observations_for_patients([p.id]))[p.id]
    assert str(got.value_quantity) == "5.60" and got.display_value == "5.60"
    assert got.reference_range == ReferenceRange(Decimal("3.9"), Decimal("6.1"), None)
    assert got.effective_at == obs.effective_at


async def test_latest_observations_are_the_newest_of_each_patient_undated_last(store: Store) -> None:
    p, _ = await seed(store)
    glucose = Coding("2345-7", "http://loinc.org", "Glucose")

    def at(day: int | None) -> Observation:
        return Observation(
            id=f"o-{day}", patient_id=p.id, code=glucose, value_type="NM", value_quantity=Decimal(day or 0),
            effective_at=datetime(2026, 11, day, tzinfo=UTC) if day else None,
        )

    async with store.write() as repo:
        await repo.clinical.add_observations([at(3), at(None), at(9), at(1), at(5)])
    async with store.read() as repo:
        every = (await repo.clinical.observations_for_patients([p.id, "nobody"]))
        latest = (await repo.clinical.observations_for_patients([p.id, "nobody"], latest=2))
        none = (await repo.clinical.observations_for_patients([p.id], latest=0))
    assert [o.id for o in every[p.id]] == ["o-9", "o-5", "o-3", "o-1", "o-None"]
    assert [o.id for o in latest[p.id]] == ["o-9", "o-5"] and latest["nobody"] == every["nobody"] == []
    assert latest[p.id][0].value_quantity == Decimal(9) and none[p.id] == []



async def test_latest_observations_agree_with_all_of_them_ties_and_undated_included(store: Store) -> None:
    """The latest N of each patient (SQLite: a LIMIT per patient; PostgreSQL: a window) are the first
    N of the full list, ties on the time broken by id, undated last; a patient named twice counts once."""
    p, _ = await seed(store)
    async with store.write() as repo:
        q = await repo.patients.save(Patient(name=HumanName(family="王", given=["芳"]), gender=Gender.FEMALE))
    glucose = Coding("2345-7", "http://loinc.org", "Glucose")
    noon = datetime(2026, 11, 5, 12, tzinfo=UTC)
    times = {"b": noon, "a": noon, "c": None, "e": datetime(2026, 11, 6, tzinfo=UTC), "d": None, "f": noon}
    async with store.write() as repo:
        await repo.clinical.add_observations([
            Observation(id=f"{tag}-{k}", patient_id=who.id, code=glucose, value_type="NM",
                        value_quantity=Decimal(1), effective_at=at)
            for tag, who in (("p", p), ("q", q)) for k, at in times.items()
        ])
    async with store.read() as repo:
        every = await repo.clinical.observations_for_patients([p.id, q.id])
        assert [o.id for o in every[p.id]] == ["p-e", "p-a", "p-b", "p-f", "p-c", "p-d"]
        for n in range(8):
            latest = await repo.clinical.observations_for_patients([q.id, p.id, q.id, "nobody"], latest=n)
            assert {k: [o.id for o in v] for k, v in latest.items()} == {
                p.id: [o.id for o in every[p.id][:n]], q.id: [o.id for o in every[q.id][:n]], "nobody": []
            }

async def test_consultation_workflow_persists_timeline(store: Store) -> None:
    p, e = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    c = await svc.request(ConsultationRequest(p.id, "心血管内科", Urgency.URGENT, "胸闷三天", expert_id=e.id), DOCTOR)
    assert c.number.startswith("HZ-") and c.status is ConsultationStatus.DRAFT
    await svc.submit(c.id, DOCTOR)
    await svc.assign(c.id, DOCTOR)  # the preferred expert
    await svc.start(c.id, Actor(e.id, ("expert",)))
    await svc.complete(c.id, Actor(e.id, ("expert",)), "不稳定型心绞痛", "收住院")
    async with store.read() as repo:
        got = await repo.consultations.get(c.id)
    assert got is not None and got.status is ConsultationStatus.COMPLETED and got.expert_id == e.id
    assert [t.type for t in got.timeline] == ["CREATED", "SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    assert [t.actor for t in got.timeline][-1] == e.id
    assert got.diagnosis == "不稳定型心绞痛" and got.chief_complaint == "胸闷三天"
    with pytest.raises(InvalidTransition):
        await svc.cancel(c.id, DOCTOR, "too late")


async def test_unknown_ids_are_not_found(store: Store) -> None:
    p, _ = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    with pytest.raises(NotFound):
        await svc.request(ConsultationRequest("nope", "x", Urgency.ROUTINE, "y"), DOCTOR)
    c = await svc.request(ConsultationRequest(p.id, "x", Urgency.ROUTINE, "y"), DOCTOR)
    await svc.submit(c.id, DOCTOR)
    with pytest.raises(NotFound):
        await svc.assign(c.id, DOCTOR, "no-such-expert")
    with pytest.raises(NotFound):
        await svc.start("no-such-consultation", DOCTOR)


async def test_stale_version_is_a_conflict(store: Store) -> None:
    p, _ = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    c = await svc.request(ConsultationRequest(p.id, "x", Urgency.ROUTINE, "y"), DOCTOR)
    async with store.read() as repo:
        stale = await repo.consultations.get(c.id)
    await svc.submit(c.id, DOCTOR)
    assert stale is not None
    stale.chief_complaint = "overwritten"
    async with store.write() as repo:
        with pytest.raises(Conflict):
            await repo.consultations.save(stale)


async def test_200_concurrent_creations_get_distinct_numbers(store: Store) -> None:
    p, _ = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    made = await asyncio.gather(
        *(
            svc.request(ConsultationRequest(p.id, "心血管内科", Urgency.ROUTINE, f"complaint {i}"), DOCTOR)
            for i in range(200)
        )
    )
    numbers = {c.number for c in made}
    assert len(numbers) == 200
    day = datetime.now(UTC).astimezone(TZ).strftime("%Y%m%d")
    assert numbers == {f"HZ-{day}-{n:04d}" for n in range(1, 201)}


async def test_audit_chain_links_every_write(store: Store) -> None:
    p, _ = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    c = await svc.request(ConsultationRequest(p.id, "x", Urgency.ROUTINE, "y"), DOCTOR)
    await svc.submit(c.id, DOCTOR)
    async with store.read() as repo:
        events = [e async for e in repo.audit.all()]
    assert [e.action for e in events] == ["create", "submit"]
    assert events[0].prev_hash is None and events[1].prev_hash == events[0].hash


def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    import sqlite3

    from huizhen.integration import migrate
    from huizhen.integration.crypto import load_or_create_keyring

    db = tmp_path / "wal.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{db}")

    async def touch() -> None:
        s = Store(f"sqlite+aiosqlite:///{db}", load_or_create_keyring(tmp_path))
        async with s.write() as repo:
            await repo.directory.save_facility(Facility("F", "F"))
        await s.close()

    asyncio.run(touch())
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_statistics_are_gathered_for_tables_never_analyzed(store: Store) -> None:
    await seed(store)
    first = await store.gather_statistics()
    if store.dialect == "sqlite":
        assert first == []
        return
    assert {"patients", "practitioners"} <= set(first)
    assert "messages" not in first  # empty: its statistics would say "no rows" until autovacuum comes
    assert await store.gather_statistics() == []  # analyzed now: left to autovacuum
    async with store.engine.connect() as conn:
        tuples = (await conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'patients'"))).scalar()
        empty = (await conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'messages'"))).scalar()
    assert tuples is not None and tuples >= 0
    assert empty is not None and empty < 0  # never analyzed: the planner goes by its actual size


async def test_batched_jobs_mixing_sqlalchemy_and_driver_statements_commit_or_roll_back_whole(store: Store) -> None:
    """A batch's transaction is begun on the driver (SQLite) and joined by SQLAlchemy statements:
    each job's writes, by either path, are committed together or not at all."""
    from huizhen.integration.repo.prepared import connections

    async def facility(repo: Any, code: str) -> None:  # through SQLAlchemy
        await repo.directory.save_facility(Facility(code, code))

    async def journal(repo: Any, code: str, name: str = "!") -> None:  # straight on the driver where it can be
        driver, _ = await connections(repo.conn)
        if store.dialect == "sqlite":
            driver.sqlite.execute("UPDATE facilities SET name = ? WHERE code = ?", (code + name, code)).close()
        else:
            update = text("UPDATE facilities SET name = :n WHERE code = :c")
            await repo.conn.execute(update, {"n": code + name, "c": code})

    async def good(repo: Any, code: str) -> str:
        await facility(repo, code)
        await journal(repo, code)
        return code

    async def bad(repo: Any) -> None:
        await facility(repo, "BAD")
        await journal(repo, "BAD")
        raise RuntimeError("job failed")

    async def driver_only(repo: Any) -> None:  # no SQLAlchemy statement at all: begun and committed on sqlite3
        await journal(repo, "A", "*")

    results = await asyncio.gather(
        store.batched(lambda r: good(r, "A")), store.batched(bad), store.batched(lambda r: good(r, "B")),
        return_exceptions=True,
    )
    assert results[0] == "A" and results[2] == "B" and isinstance(results[1], RuntimeError)
    with pytest.raises(RuntimeError):
        await store.batched(bad)  # alone in its transaction
    await store.batched(driver_only)
    async with store.read() as repo:
        rows = (await repo.conn.execute(text("SELECT code, name FROM facilities ORDER BY code"))).all()
    assert [tuple(r) for r in rows] == [("A", "A*"), ("B", "B!")]


async def test_upgrade_keeps_messages_answered_twice_before_the_unique_index(db_url: str, keyring: Any) -> None:
    """0008's unique index: a database holding one sender + control id answered twice (a reprocess
    after a resend, before the index) upgrades, keeps both rows, and refuses a third."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from huizhen.integration import migrate

    await asyncio.to_thread(command.downgrade, migrate.alembic_config(db_url), "0007")
    store = Store(db_url, keyring)
    try:
        def row(n: int, status: str = "PROCESSED") -> dict[str, Any]:
            return {"id": f"{n:032x}", "channel": "mllp", "sender": "HIS|QSWSY",
                    "control_id": "MSG1", "type": "ADT^A01", "raw_enc": b"x", "status": status, "effects": [],
                    "received_at": datetime(2026, 12, 1, 8, n, tzinfo=UTC)}

        async with store.engine.begin() as conn:
            await conn.execute(tables.messages.insert(), [row(1), row(2), row(3, "DUPLICATE")])
    finally:
        await store.close()
    await asyncio.to_thread(migrate.upgrade, db_url)
    store = Store(db_url, keyring)
    try:
        async with store.engine.connect() as conn:
            kept = (await conn.execute(text("SELECT status FROM messages ORDER BY id"))).scalars().all()
        assert kept == ["PROCESSED", "PROCESSED", "DUPLICATE"]
        with pytest.raises(IntegrityError):
            async with store.engine.begin() as conn:
                await conn.execute(tables.messages.insert(), [row(4)])
        async with store.engine.begin() as conn:  # another control id is answered once as before
            await conn.execute(tables.messages.insert(), [{**row(5), "control_id": "MSG2"}])
    finally:
        await store.close()


def test_shared_sqlite_stores_chain_one_audit_trail_and_give_the_write_lock_back(tmp_path: Path, keyring: Any) -> None:
    """Two stores sharing one SQLite file (as two worker processes do) take turns by the lock file,
    given back by each commit's thread: every event lands in one unbroken chain, the lock ends free."""
    import fcntl

    from huizhen.integration import migrate
    from huizhen.rbac.audit import AuditBuffer, AuditLog, verify

    db = tmp_path / "shared.db"
    url = f"sqlite+aiosqlite:///{db}"
    migrate.upgrade(url)

    async def go() -> None:
        stores = [Store(url, keyring, shared=True), Store(url, keyring, shared=True)]
        try:
            async def flush(n: int) -> None:
                buffer = AuditBuffer(f"user-{n}", ["coordinator"], None)
                for k in range(5):
                    buffer.add("read", "Patient", f"p-{n}-{k}")
                await AuditLog(stores[n % 2]).flush(buffer)

            await asyncio.gather(*(flush(n) for n in range(40)))
            result = await verify(stores[0])
            assert result.ok and result.checked == 200
            fd = os.open(f"{db}.writer-lock", os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
            finally:
                os.close(fd)
        finally:
            for s in stores:
                await s.close()

    asyncio.run(go())


async def test_reads_end_and_a_write_in_a_read_transaction_is_still_committed(store: Store) -> None:
    """On SQLite a transaction that changed no row commits on the loop, one that did on the commit's
    thread: either way what it wrote is there afterwards, and the next transaction starts clean."""
    await seed(store)
    async with store.read() as repo:
        await repo.conn.execute(text("SELECT count(*) FROM facilities"))
    async with store.read() as repo:  # begun as a read (no IMMEDIATE on SQLite), then writes
        await repo.conn.execute(text("UPDATE facilities SET name = 'renamed' WHERE code = 'TWN001'"))
    async with store.read() as repo:
        name = (await repo.conn.execute(text("SELECT name FROM facilities WHERE code = 'TWN001'"))).scalar()
    assert name == "renamed"
    async with store.write() as repo:
        await repo.directory.save_facility(Facility("F2", "F2"))
    async with store.read() as repo:
        codes = (await repo.conn.execute(text("SELECT count(*) FROM facilities"))).scalar()
    assert codes == 2


async def _chain_of_three(store: Store) -> list[str]:
    from huizhen.rbac.audit import AuditLog

    for n in range(3):
        event = AuditEvent(at=datetime.now(UTC), actor=f"user-{n}", roles=["auditor"], action="read",
                           entity_type="Patient", entity_id=f"p-{n}", outcome="success")
        await AuditLog(store).write([event])
    async with store.read() as repo:
        return [e.id async for e in repo.audit.all()]


async def test_audit_verify_finds_the_newest_events_deleted_and_an_anchor_rewritten(store: Store) -> None:
    """Deleting the newest events leaves a chain that holds; its anchor (count, last hash, HMAC under
    the blind-index key, which the database never holds) does not match it."""
    from huizhen.rbac.audit import verify

    ids = await _chain_of_three(store)
    intact = await verify(store)
    assert (intact.ok, intact.checked, intact.unsigned) == (True, 3, False)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[2]})
    cut = await verify(store)
    assert (cut.ok, cut.checked, cut.broken_at) == (False, 2, 3) and "newest were deleted" in (cut.reason or "")
    async with store.engine.begin() as conn:  # the anchor moved back by someone without the key
        head = (await conn.execute(text("SELECT hash FROM audit_events WHERE id = :id"), {"id": ids[1]})).scalar()
        await conn.execute(text("UPDATE audit_anchor SET events = 2, head = :head"), {"head": head})
    forged = await verify(store)
    assert (forged.ok, forged.broken_at) == (False, 1) and "HMAC" in (forged.reason or "")
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_anchor"))
    missing = await verify(store)
    assert not missing.ok and "anchor is missing" in (missing.reason or "")


async def test_upgrade_anchors_an_existing_chain_unsigned_and_the_next_event_signs_it(
    db_url: str, keyring: Any
) -> None:
    from alembic import command

    from huizhen.integration import migrate
    from huizhen.integration.repo.audit import chain_hash
    from huizhen.rbac.audit import AuditLog, verify

    await asyncio.to_thread(command.downgrade, migrate.alembic_config(db_url), "0012")
    store = Store(db_url, keyring)
    try:
        prev, rows = None, []
        for n in range(2):  # a chain written before 0013
            e = AuditEvent(actor="dr-1", roles=["expert"], action="read", entity_type="Patient",
                           entity_id=f"p-{n}", outcome="success", at=datetime(2026, 12, 1, 8, n, tzinfo=UTC))
            e.prev_hash, e.hash = prev, chain_hash(prev, e)
            prev = e.hash
            rows.append({"id": e.id, "at": e.at, "actor": e.actor, "roles": e.roles, "action": e.action,
                         "entity_type": e.entity_type, "entity_id": e.entity_id, "outcome": e.outcome,
                         "detail": None, "source": None, "prev_hash": e.prev_hash, "hash": e.hash})
        async with store.engine.begin() as conn:
            await conn.execute(tables.audit_events.insert(), rows)
    finally:
        await store.close()
    await asyncio.to_thread(migrate.upgrade, db_url)
    store = Store(db_url, keyring)
    try:
        before = await verify(store)
        assert (before.ok, before.checked, before.unsigned) == (True, 2, True)
        await AuditLog(store).write([AuditEvent(at=datetime.now(UTC), actor="dr-1", roles=["expert"], action="read",
                                                entity_type="Patient", entity_id="p-2", outcome="success")])
        after = await verify(store)
        assert (after.ok, after.checked, after.unsigned) == (True, 3, False)
    finally:
        await store.close()


async def test_consultation_search_matches_its_conditions_for_every_shape(store: Store) -> None:
    """search() builds its statements once per filter shape and runs them on the driver; the rows
    and totals are those of the same conditions written plainly (consultation_condition, IN lists),
    for viewers' row filters, filters and both sorts, paged by cursor; clinical=False reads the
    same rows without their clinical record."""
    from sqlalchemy import select

    from huizhen.integration.repo.consultations import _RANK, WorkListSort
    from huizhen.integration.repo.visibility import ConsultationRows, consultation_condition
    from tests.graphql_seed import seed as seed_many

    seeded = await seed_many(store, 30, observations=1)
    c = tables.consultations.c
    f0, f1 = (f.id for f in seeded.facilities)
    some = tuple(p.id for p in seeded.patients[:4])
    expert = seeded.experts[0]
    viewers = [
        None, ConsultationRows(everything=True), ConsultationRows(),
        ConsultationRows(facility_ids=(f1,)), ConsultationRows(expert_id=expert.id),
        ConsultationRows(queue_department=expert.department, expert_id=expert.id),
        ConsultationRows(requester_id="doc2", patient_ids=some), ConsultationRows(patient_id=some[0]),
        ConsultationRows(facility_ids=(f0, f1), patient_ids=some[:1]),
    ]
    filters: list[dict[str, Any]] = [
        {}, {"statuses": [ConsultationStatus.PENDING, ConsultationStatus.ASSIGNED]},
        {"department": expert.department, "urgency": Urgency.URGENT}, {"facility_id": f0, "expert_id": expert.id},
        {"patient_id": some[1]},
        {"created_from": seeded.consultations[5].created_at, "created_to": seeded.consultations[20].created_at},
    ]
    for visible in viewers:
        for kw in filters:
            for sort in WorkListSort:
                q = select(c.id)
                if visible is not None and not visible.everything:
                    q = q.where(consultation_condition(visible))
                if kw.get("statuses"):
                    q = q.where(c.status.in_([s.value for s in kw["statuses"]]))
                for name in ("department", "facility_id", "expert_id", "patient_id"):
                    if name in kw:
                        q = q.where(getattr(c, name) == kw[name])
                if "urgency" in kw:
                    q = q.where(c.urgency == kw["urgency"].value)
                if "created_from" in kw:
                    q = q.where(c.created_at >= kw["created_from"], c.created_at < kw["created_to"])
                order = (c.created_at.desc(), c.id.desc())
                q = q.order_by(_RANK, *order) if sort is WorkListSort.MOST_URGENT else q.order_by(*order)
                async with store.read() as repo:
                    expected = list((await repo.conn.execute(q)).scalars())
                    seen: list[str] = []
                    after = None
                    while True:
                        page = await repo.consultations.search(
                            **kw, sort=sort, first=4, after=after, visible=visible, clinical=after is None
                        )
                        assert page.total == len(expected)
                        seen += [x.id for x, _ in page.items]
                        for x, _ in page.items:
                            assert x.chief_complaint == ("胸闷三天" if after is None else "")
                        if not page.has_next:
                            break
                        after = page.items[-1][1]
                assert seen == expected, (visible, kw, sort)
