"""The operations command line against a real server in a child process, the way an admin runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huizhen.adapters.mllp_client import MllpClient
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.model import Message, MessageStatus
from huizhen.integration.store import Store
from tests.conftest import free_port
from tests.e2e.instance import Instance
from tests.ops_support import CHINESE_TEXT, adt, booking, order


def send(instance: Instance, *messages: bytes) -> list[bytes]:
    async def go() -> list[bytes]:
        client = MllpClient("127.0.0.1", int(instance.env["HUIZHEN_MLLP_PORT"]), ack_timeout_s=30)
        await client.connect()
        try:
            return [await client.send(m) for m in messages]
        finally:
            await client.close()

    return asyncio.run(go())


def admin_token(instance: Instance) -> str:
    return instance.run("token", "--sub", "ops-test", "--role", "integration_admin").stdout.strip()


def test_status_shows_channels_and_last_errors(instance: Instance) -> None:
    instance.start()
    send(instance, adt("S-1"), booking("S-2"))
    out = instance.run("status", "--url", instance.base, check=False)
    assert out.returncode == 0, out.stderr
    assert "mllp" in out.stdout and "listening" in out.stdout
    assert "1 message(s) in ERROR" in out.stdout and "S-2" in out.stdout and "HZ-ORD-9" in out.stdout
    refused = instance.run("status", "--url", instance.base, "--token", "nonsense", check=False)
    assert refused.returncode == 1 and "huizhen:" in refused.stderr
    instance.stop()
    down = instance.run("status", "--url", instance.base, check=False)
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_logs_carry_request_and_control_ids_and_no_patient_data(instance: Instance) -> None:
    instance.start()
    send(instance, adt("L-1"), booking("L-2"), b"garbage that is not HL7")
    token = admin_token(instance)
    found = instance.gql(token, "{ messages { edges { node { id raw } } } }")  # raw: audited, never logged
    assert CHINESE_TEXT[:2] in json.dumps(found, ensure_ascii=False)
    import httpx

    r = httpx.get(instance.base + "/graphql?token=secret-token-in-url", headers={"X-Request-Id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    instance.stop()
    text = instance.log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines, text[-2000:]
    for name in (CHINESE_TEXT, "欧阳", "翠花", "石桥镇8号", "13900000009", "王^大明"):
        assert name not in text
    assert "secret-token-in-url" not in text
    assert any(line.get("request_id") == "trace-42" for line in lines)
    failed = [line for line in lines if line["msg"].startswith("message not applied")]
    assert failed and all(line.get("control_id") == "L-2" for line in failed)


def test_patient_data_in_logs_only_when_turned_on(tmp_path: Path) -> None:
    import logging

    from huizhen.logs import JsonFormatter

    record = logging.LogRecord("t", logging.INFO, "", 0, "message content", None, None)
    record.phi_raw = CHINESE_TEXT
    record.control_id = "X-1"
    assert CHINESE_TEXT not in JsonFormatter().format(record)
    assert CHINESE_TEXT in JsonFormatter(patient_data=True).format(record)


def test_mappings_reload_and_dry_run(instance: Instance, tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    import shutil

    from huizhen.settings import Settings

    shutil.copytree(Settings().resolved_mappings_dir, mappings)
    instance.env.update(HUIZHEN_MAPPINGS_DIR=str(mappings), HUIZHEN_MAPPINGS_POLL_SECONDS="0")
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(order("T-1") + b"\n" + b"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|2026||ZZZ^Z99|T-2|P|2.5\r")
    dry = instance.run("mappings", "test", str(feed), check=False)
    assert dry.returncode == 1  # the second message would be rejected
    assert "#1 ORM^O01 T-1: would apply" in dry.stdout and '"department": "心血管内科"' in dry.stdout
    assert "#2" in dry.stdout and "would be rejected (AR)" in dry.stdout
    assert not (tmp_path / "huizhen-data" / "huizhen.db").exists()  # nothing stored
    instance.start()
    priorities = mappings / "priorities.csv"
    good = priorities.read_text(encoding="utf-8")
    priorities.write_text(good + ",SOON,WHENEVER\n", encoding="utf-8")
    bad = instance.run("mappings", "reload", "--url", instance.base, check=False)
    assert bad.returncode == 1 and "priorities.csv:" in bad.stderr and "WHENEVER" in bad.stderr
    broken_dry = instance.run("mappings", "test", str(feed), check=False)
    assert broken_dry.returncode == 2 and "priorities.csv:" in broken_dry.stderr
    priorities.write_text(good, encoding="utf-8")
    ok = instance.run("mappings", "reload", "--url", instance.base, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("reloaded:")


async def _fill_journal(url: str, keys: Path, n: int, at: datetime, tag: str) -> None:
    """``n`` answered messages received ``at``, control ids ``{tag}-0`` … (one answer per sender + id)."""
    store = Store(url, load_or_create_keyring(keys))
    try:
        for start in range(0, n, 500):
            async with store.write() as repo:
                for i in range(start, min(n, start + 500)):
                    await repo.journal.add(Message(
                        channel="mllp", raw=os.urandom(2048), received_at=at, status=MessageStatus.PROCESSED,
                        control_id=f"{tag}-{i}", sender="HIS^QSWSY", type="ADT^A01",
                    ))
    finally:
        await store.close()


def _count(url: str, keys: Path) -> int:
    async def go() -> int:
        store = Store(url, load_or_create_keyring(keys))
        try:
            async with store.read() as repo:
                return (await repo.journal.search(first=1)).total
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_prune_deletes_old_messages_and_gives_space_back(instance: Instance) -> None:
    data = instance.workdir / "huizhen-data"
    instance.run("db", "upgrade")
    url = instance.env.get("HUIZHEN_DATABASE_URL") or f"sqlite+aiosqlite:///{(data / 'huizhen.db').resolve()}"
    old = datetime(2025, 1, 1, tzinfo=UTC)
    asyncio.run(_fill_journal(url, data, 3000, old, "OLD"))
    asyncio.run(_fill_journal(url, data, 10, datetime.now(UTC) - timedelta(days=1), "RECENT"))
    db = data / "huizhen.db"
    size_before = db.stat().st_size if "HUIZHEN_DATABASE_URL" not in instance.env else 0
    out = instance.run("messages", "prune", "--before", "2025-06-01", "--yes")
    assert "deleted 3000 message(s)" in out.stdout
    assert _count(url, data) == 10
    if "HUIZHEN_DATABASE_URL" in instance.env:
        assert "VACUUM ANALYZE" in out.stdout
    else:
        assert "VACUUM" in out.stdout and db.stat().st_size < size_before / 3
        assert "database file:" in out.stdout
    again = instance.run("messages", "prune", "--before", "2025-06-01", "--yes")
    assert "deleted 0 message(s)" in again.stdout


def test_backup_while_writing_then_restore(instance: Instance, tmp_path: Path) -> None:
    instance.start()
    send(instance, adt("BK-0"))
    stop = threading.Event()
    sent: list[int] = []

    def keep_sending() -> None:
        i = 1
        while not stop.is_set():
            send(instance, adt(f"BK-{i}", mrn=f"BK{i}"))
            sent.append(i)
            i += 1

    writer = threading.Thread(target=keep_sending)
    writer.start()
    try:
        while len(sent) < 5:
            threading.Event().wait(0.05)
        target = tmp_path / "backup-1"
        out = instance.run("backup", str(target))
    finally:
        stop.set()
        writer.join()
    assert "backed up" in out.stdout and len(sent) >= 5
    manifest = json.loads((target / "manifest.json").read_text())
    assert {"huizhen.db", "data/keys.json", "data/jwt-signing.key"} <= set(manifest["files"])
    with sqlite3.connect(target / "huizhen.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        in_backup = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert 6 <= in_backup <= len(sent) + 1
    instance.stop(signal.SIGTERM)

    # restore into a fresh folder and run a server on it: the data and its keys came back
    fresh = tmp_path / "restored"
    fresh.mkdir()
    env = {**instance.env, "HUIZHEN_HTTP_PORT": str(free_port()), "HUIZHEN_MLLP_PORT": str(free_port())}
    other = Instance(fresh, env)
    restored = other.run("restore", str(target))
    assert "restored" in restored.stdout
    refused = other.run("restore", str(target), check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    other.start()
    try:
        token = other.run("token", "--sub", "c1", "--role", "coordinator", "--facility", "*").stdout.strip()
        body = other.gql(token, '{ patients(search: "欧阳翠花") { totalCount edges { node { name { text } } } } }')
        assert body["data"]["patients"]["totalCount"] == in_backup
        assert body["data"]["patients"]["edges"][0]["node"]["name"]["text"] == CHINESE_TEXT
        admin = other.run("token", "--sub", "a1", "--role", "integration_admin").stdout.strip()
        count = other.gql(admin, "{ messages { totalCount } }")["data"]["messages"]["totalCount"]
        assert count == in_backup
    finally:
        other.stop()
