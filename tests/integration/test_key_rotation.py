"""Data-key rotation on both back ends, while a "running server" (a Store with the old ring) keeps working."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from huizhen.adapters.objects import ObjectStore
from huizhen.integration import tables
from huizhen.integration.consultations import ConsultationRequest, ConsultationService
from huizhen.integration.crypto import KeyRing, load_or_create_keyring, rotate_key_file
from huizhen.integration.events import InProcessBus
from huizhen.integration.model import (
    Actor,
    Coding,
    HumanName,
    ImagingStudy,
    Message,
    Observation,
    OutboundMessage,
    Patient,
    Urgency,
)
from huizhen.integration.rekey import encrypted_columns, plaintext_left, reencrypt_all, values_by_key_id
from huizhen.integration.store import Store
from tests.integration.test_store import DOCTOR, MRN, TZ, seed

RAW = "MSH|^~\\&|HIS|TWN001|HZ|HZ|20261127||ADT^A04|C1|P|2.5\rPID|1||M001^^^TWN001||欧阳^志远\r".encode()
LEGACY = "0" * 31 + "9"  # the id of a study row written under 0013
SECRETS = ("欧阳", "志远", "M001", "ID77", "13800000004", "东城区", "胸闷三天", "不稳定型心绞痛", "ST段压低")


async def populate(store: Store) -> tuple[str, str, str]:
    p, e = await seed(store)
    svc = ConsultationService(store, InProcessBus(), TZ)
    c = await svc.request(ConsultationRequest(p.id, "心血管内科", Urgency.URGENT, "胸闷三天", expert_id=e.id), DOCTOR)
    await svc.submit(c.id, DOCTOR)
    await svc.assign(c.id, DOCTOR)
    await svc.start(c.id, Actor(e.id, ("expert",)))
    await svc.complete(c.id, Actor(e.id, ("expert",)), "不稳定型心绞痛", "收住院")
    msg = Message(channel="mllp", raw=RAW, received_at=datetime.now(UTC), sender="HIS^TWN001", control_id="C1")
    obs = Observation(patient_id=p.id, code=Coding("ECG", "urn:local"), value_type="ST", value_string="ST段压低")
    async with store.write() as repo:
        await repo.journal.add(msg)
        await repo.clinical.add_observations([obs])
    return p.id, c.id, msg.id


async def read_everything(store: Store, patient_id: str, consultation_id: str, message_id: str) -> None:
    async with store.read() as repo:
        p = await repo.patients.get(patient_id)
        c = await repo.consultations.get(consultation_id)
        m = await repo.journal.get(message_id)
        obs = (await repo.clinical.observations_for_patients([patient_id]))[patient_id]
        found = await repo.patients.by_identifier(MRN, "M001")
    assert p is not None and p.name.text == "欧阳志远" and p.phone == "13800000004"
    assert found is not None and found.id == patient_id  # the blind index did not change
    assert c is not None and c.chief_complaint == "胸闷三天" and c.diagnosis == "不稳定型心绞痛"
    assert m is not None and m.raw == RAW
    assert [o.display_value for o in obs] == ["ST段压低"]


async def raw_dump(store: Store) -> str:
    dump = []
    async with store.engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            for row in await conn.execute(text(f'SELECT * FROM "{table.name}"')):
                dump.append(" ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else repr(v) for v in row))
                dump.append(repr(tuple(row)))
    return "\n".join(dump)


async def test_rotation_reencrypts_everything_while_a_server_keeps_reading(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    running = store.keyring  # the server's ring, loaded from keys.json before the rotation
    assert running.source is not None
    old = running.active
    ids = await populate(store)

    new = rotate_key_file(running.source.parent)
    rotator = Store(db_url, load_or_create_keyring(running.source.parent))
    try:
        report = await reencrypt_all(rotator, batch=2)  # small batches: the keyset walk crosses pages
        assert report.total >= 10 and report.reencrypted["messages.raw_enc"] == 1
        counts = await values_by_key_id(rotator)
        assert set(counts) == {new} and old not in counts
        await read_everything(rotator, *ids)
    finally:
        await rotator.close()

    # the running server meets a key id it does not know, re-reads the key file, and carries on
    await read_everything(store, *ids)
    assert running.active == new and old in running.keys
    async with store.write() as repo:
        await repo.patients.save(Patient(name=HumanName.of("李", ("四",))))
    assert set(await values_by_key_id(store)) == {new}

    blob = await raw_dump(store)
    for secret in SECRETS:
        assert secret not in blob, secret


async def test_outbox_answers_are_encrypted_and_older_plaintext_is_sealed(store: Store) -> None:
    """The other system's ACK to our report, and the last error, can quote the report: encrypted,
    and sealed by the rotation when written before 0010."""
    ack = "MSH|^~\\&|HIS|TWN001|HZ|HZ|20261127||ACK|H1|P|2.5\rMSA|AE|R1\rERR|||103|E||||PID-3 'M001' unknown"
    sent = OutboundMessage(channel="mllp-out", destination="TWN001", payload=b"MSH|...", created_at=datetime.now(UTC),
                           last_error="AE: PID-3 'M001' unknown", ack=ack)
    older = OutboundMessage(channel="mllp-out", destination="TWN001", payload=b"MSH|...",
                            created_at=datetime.now(UTC))
    async with store.write() as repo:
        await repo.outbox.enqueue(sent)
        await repo.outbox.enqueue(older)
        await repo.conn.execute(tables.outbox.update().where(tables.outbox.c.id == older.id).values(
            last_error="AE: PID-3 'M002' unknown", ack=ack.replace("M001", "M002")))
    blob = await raw_dump(store)
    assert "'M001'" not in blob and "'M002'" in blob
    report = await reencrypt_all(store)
    assert report.sealed == {"outbox.last_error": 1, "outbox.ack": 1}
    assert "'M002'" not in await raw_dump(store)
    async with store.read() as repo:
        found = {m.id: m for m in await repo.outbox.claim_due(datetime.now(UTC), lease=timedelta(seconds=1))}
        stats = await repo.outbox.channel_stats()
    assert (found[sent.id].last_error, found[sent.id].ack) == (sent.last_error, ack)
    assert found[older.id].last_error == "AE: PID-3 'M002' unknown" and "'M002'" in (found[older.id].ack or "")
    assert stats["mllp-out"][0].last_error is not None and "unknown" in stats["mllp-out"][0].last_error


async def test_every_encrypted_column_is_walked() -> None:
    walked = {f"{t.name}.{c.name}" for t, cols in encrypted_columns() for c in cols}
    assert {"patients.phi_enc", "patient_identifiers.value_enc", "messages.raw_enc", "consultations.clinical_enc",
            "timeline_events.detail_enc", "observations.value_enc", "outbox.payload_enc",
            "messages.error_enc", "messages.ack_enc", "imaging_studies.study_id_enc"} <= walked


async def test_journal_errors_and_acks_are_encrypted_and_older_plaintext_is_sealed(store: Store) -> None:
    """An error names the value it refused and the ACK's ERR repeats it: neither is stored in
    plaintext. A row journaled before 0009 is read as it is, and sealed by the rotation's pass."""
    error = "PID-7 '19491301' is not an HL7 date/time"
    ack = "MSH|^~\\&|HZ|HZ|HIS|TWN001|20261127||ACK|A1|P|2.5\rMSA|AE|C9\rERR|||102|E||||" + error
    new = Message(channel="mllp", raw=RAW, received_at=datetime.now(UTC), sender="HIS^TWN001", control_id="C9",
                  error=error, ack=ack)
    old = Message(channel="mllp", raw=RAW, received_at=datetime.now(UTC), sender="HIS^TWN001", control_id="C8")
    async with store.write() as repo:
        await repo.journal.add(new)
        await repo.journal.add(old)
        # as a server before 0009 wrote it: the text in the plaintext columns
        await repo.conn.execute(tables.messages.update().where(tables.messages.c.id == old.id).values(
            error=error.replace("1301", "1302"), ack=ack.replace("1301", "1302")))
    assert "19491301" not in await raw_dump(store)
    async with store.read() as repo:
        got_new, got_old = await repo.journal.get(new.id), await repo.journal.get(old.id)
    assert got_new is not None and (got_new.error, got_new.ack) == (error, ack)
    assert got_old is not None and got_old.error is not None and "19491302" in got_old.error
    none_left = {"messages.error": 0, "messages.ack": 0, "outbox.last_error": 0, "outbox.ack": 0,
                 "imaging_studies.study_id": 0}
    assert await plaintext_left(store) == none_left | {"messages.error": 1, "messages.ack": 1}

    report = await reencrypt_all(store, batch=1)  # batches of one: the walk goes on past a full batch
    assert report.sealed == {"messages.error": 1, "messages.ack": 1}
    assert await plaintext_left(store) == none_left
    assert "19491302" not in await raw_dump(store)
    async with store.read() as repo:
        again = await repo.journal.get(old.id)
    assert again is not None and (again.error, again.ack) == (got_old.error, got_old.ack)


async def test_study_ids_are_encrypted_and_older_plaintext_is_sealed(store: Store) -> None:
    """A modality's StudyID is often the PatientID (the corpus MR: 4MR1): encrypted, and a study
    indexed before 0014 is read from its plaintext column and sealed by the rotation's pass."""
    p, _ = await seed(store)
    new = ImagingStudy(patient_id=p.id, study_instance_uid="1.2.826.0.1.1", study_id="X1EXAMPLE",
                       started_at=datetime(2004, 8, 26, 22, 50, 59, tzinfo=UTC))
    old = ImagingStudy(patient_id=p.id, study_instance_uid="1.2.826.0.1.2", study_id="M001")
    async with store.write() as repo:
        await repo.imaging.add_study(new)
        await repo.imaging.add_study(old)
        # as a server before 0014 wrote it: the StudyID in the plaintext column
        await repo.conn.execute(tables.imaging_studies.update().where(tables.imaging_studies.c.id == old.id).values(
            study_id="X2EXAMPLE", study_id_enc=None))
    blob = await raw_dump(store)
    assert "X1EXAMPLE" not in blob and "X2EXAMPLE" in blob
    async with store.read() as repo:
        got = {s.id: s.study_id for s in await repo.clinical.studies_by_ids([new.id, old.id])}
        summary = await repo.clinical.studies_by_ids([new.id, old.id], instances=False)
    assert got == {new.id: "X1EXAMPLE", old.id: "X2EXAMPLE"}
    assert [s.study_id for s in summary] == [None, None]  # the API's summary read leaves it sealed
    assert (await plaintext_left(store))["imaging_studies.study_id"] == 1

    report = await reencrypt_all(store)
    assert report.sealed == {"imaging_studies.study_id": 1}
    assert (await plaintext_left(store))["imaging_studies.study_id"] == 0
    assert "X2EXAMPLE" not in await raw_dump(store)
    async with store.read() as repo:
        again = {s.id: s.study_id for s in await repo.clinical.studies_by_ids([new.id, old.id])}
        by_patient = (await repo.clinical.studies_for_patients([p.id]))[p.id]
    assert again == got and {s.study_id for s in by_patient} == {"X1EXAMPLE", "X2EXAMPLE"}


def test_a_study_indexed_before_0014_is_read_as_it_was_and_sealed_by_keys_rotate(db_url: str, tmp_path: Path) -> None:
    """A database indexed under 0013 (StudyID in plaintext, no StudyDate/StudyTime kept) upgrades;
    its study reads as before (C-FIND falls back to the start in the server's zone), and ``huizhen
    keys rotate`` moves the StudyID into the encrypted column."""
    from alembic import command

    from huizhen.integration import migrate
    from huizhen.mappings.dicom_find import study_record

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ring = load_or_create_keyring(data)
    command.downgrade(migrate.alembic_config(db_url), "0013")
    started = datetime(2004, 8, 26, 22, 50, 59, tzinfo=UTC)  # 20040826 185059 -0400, as 0013 kept it

    async def index_under_0013() -> str:
        s = Store(db_url, ring)
        try:
            p, _ = await seed(s)
            async with s.engine.begin() as conn:  # columns 0013 had, as its server wrote them
                await conn.execute(tables.imaging_studies.insert().values(
                    id=LEGACY, patient_id=p.id, study_instance_uid="1.2.826.0.1.9", started_at=started,
                    study_id="X1EXAMPLE"))
            return p.id
        finally:
            await s.close()

    async def read(keys: KeyRing) -> tuple[ImagingStudy, str]:
        s = Store(db_url, keys)
        try:
            async with s.read() as repo:
                [study] = await repo.clinical.studies_by_ids([LEGACY])
            return study, await raw_dump(s)
        finally:
            await s.close()

    asyncio.run(index_under_0013())
    migrate.upgrade(db_url)
    before, blob = asyncio.run(read(ring))
    assert "X1EXAMPLE" in blob
    assert (before.study_id, before.study_date, before.started_at) == ("X1EXAMPLE", None, started)
    record = study_record(before, Patient(name=HumanName.of("欧阳", ("志远",))), tz=TZ)
    assert (record["StudyID"], record["StudyDate"], record["StudyTime"]) == ("X1EXAMPLE", "20040827", "065059")

    done = _cli({"HUIZHEN_DATA_DIR": str(data), "HUIZHEN_DATABASE_URL": db_url}, "keys", "rotate", "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sealed"] == {"imaging_studies.study_id": 1}
    after, blob = asyncio.run(read(load_or_create_keyring(data)))
    assert after.study_id == "X1EXAMPLE" and "X1EXAMPLE" not in blob


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")} | env
    return subprocess.run([sys.executable, "-m", "huizhen", *args], env=full, capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_rotate_with_key_file_then_retire(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ring = load_or_create_keyring(data)
    ids = asyncio.run(_populate_and_close(db_url, ring))
    instance = b"DICM" + "欧阳^志远".encode()  # the store takes bytes as they come; enough to be recognised
    stored = ObjectStore(data / "dicom", ring).put("1.2.3.4", instance)
    env = {"HUIZHEN_DATA_DIR": str(data), "HUIZHEN_DATABASE_URL": db_url}
    done = _cli(env, "keys", "rotate", "--grace", "0", "--retire")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["active"] != ring.active and set(out["values_by_key"]) == {out["active"]}
    assert out["objects_resealed"] == 1 and out["objects_by_key"] == {out["active"]: 1}
    assert out["retired"] == [ring.active]
    fresh = load_or_create_keyring(data)
    assert set(fresh.keys) == {out["active"]} and fresh.index_key == ring.index_key
    asyncio.run(_read_and_close(db_url, fresh, ids))
    assert ObjectStore(data / "dicom", fresh).read(stored.key, verify=True) == instance  # under the new key only


def test_cli_rotate_with_environment_keys(db_url: str, tmp_path: Path) -> None:
    first, second = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()
    from huizhen.integration.crypto import keyring_from_environment

    before = keyring_from_environment(first)
    ids = asyncio.run(_populate_and_close(db_url, before))
    env = {"HUIZHEN_DATA_DIR": str(tmp_path / "d"), "HUIZHEN_DATABASE_URL": db_url,
           "HUIZHEN_DATA_KEY": f"{second},{first}"}
    done = _cli(env, "keys", "rotate", "--grace", "0")
    assert done.returncode == 0, done.stderr
    after = keyring_from_environment(f"{second},{first}")
    assert after.index_key == before.index_key  # derived from the oldest key: the index survives
    assert set(json.loads(done.stdout)["values_by_key"]) == {after.active}
    assert not (tmp_path / "d" / "keys.json").exists()  # no key file when the keys come from the environment
    asyncio.run(_read_and_close(db_url, keyring_from_environment(second + "," + first), ids))
    assert "HUIZHEN_DATA_KEY" in _cli({**env, "HUIZHEN_DATA_KEY": "not-base64"}, "keys", "rotate").stderr


async def _populate_and_close(url: str, ring: KeyRing) -> tuple[str, str, str]:
    s = Store(url, ring)
    try:
        return await populate(s)
    finally:
        await s.close()


async def _read_and_close(url: str, ring: KeyRing, ids: tuple[str, str, str]) -> None:
    s = Store(url, ring)
    try:
        await read_everything(s, *ids)
    finally:
        await s.close()
