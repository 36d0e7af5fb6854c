"""HIS FHIR servers configured per facility (``fhir_his_servers``): pulls through a static bearer and
SMART backend services against a real Huizhen /fhir on another port, and each server's state in GraphQL
``channels`` — a dead one reports ``failing`` with its last error while the others stay ``up``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from huizhen.adapters.fhir_client import FhirUnavailable
from huizhen.adapters.fhir_his import load_his_servers
from huizhen.integration.errors import ConfigurationError
from huizhen.integration.model import Actor, MessageStatus, OutboundStatus
from huizhen.mappings.fhir import systems
from tests.conftest import free_port
from tests.helpers import running_server
from tests.integration.fhir_support import CONSULT_CODE, fhir_server
from tests.integration.test_fhir_client import his_client, token_endpoint

MRN = "http://his.qswsy.example.cn/mrn"
CHANNELS = "{ channels { name direction state errors lastError lastMessageAt } }"


async def test_his_servers_pull_and_report_their_state_in_channels(tmp_path: Path, db_url: str) -> None:
    async with fhir_server(tmp_path / "his", db_url) as his:
        async with his_client(his) as seed:
            await seed.put({"resourceType": "Patient", "id": "p1", "name": [{"text": "黄蓉"}],
                            "identifier": [{"system": MRN, "value": "M-HR"}]})
            for n in range(3):
                await seed.create({
                    "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": systems.LOINC, "code": "2345-7"}]},
                    "effectiveDateTime": f"2026-11-0{n + 1}T08:00:00+08:00",
                    "valueQuantity": {"value": 5 + n, "unit": "mmol/L"},
                })
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        secrets = tmp_path / "config" / "secrets"
        secrets.mkdir(parents=True, mode=0o700)
        (secrets / "qswsy.token").write_text(his.token("huizhen", "his_system", facility="QSWSY") + "\n")
        (secrets / "smart.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        async with token_endpoint(his, key.public_key()) as token_url:
            config = tmp_path / "config" / "his.toml"
            config.write_text(
                f'[QSWSY]\nbase_url = "{his.base_url}/fhir"\ntoken_file = "secrets/qswsy.token"\n\n'
                f'[SMART]\nbase_url = "{his.base_url}/fhir"\ntoken_url = "{token_url}"\nclient_id = "hz"\n'
                'private_key_file = "secrets/smart.pem"\n\n'
                f'[DEAD]\nbase_url = "http://127.0.0.1:{free_port()}/fhir"\ntoken_file = "secrets/qswsy.token"\n'
                "retry_attempts = 1\ntimeout_seconds = 2\n",
                encoding="utf-8",
            )
            db = f"sqlite+aiosqlite:///{tmp_path / 'main.db'}"  # not the HIS's database
            async with running_server(tmp_path / "data", db, fhir_his_servers=config) as server:
                gql = server.client(server.token("ops-1", "integration_admin"))
                before = {c["name"]: c for c in (await gql.execute(CHANNELS))["channels"]}
                assert {before[f"fhir-out:{f}"]["state"] for f in ("QSWSY", "SMART", "DEAD")} == {"idle"}
                clients = server.services.his
                assert clients is not None
                [patient] = await clients.client("QSWSY").patients_by_identifier(MRN, "M-HR")
                values = await clients.client("QSWSY").observations(f"Patient/{patient['id']}", "2345-7",
                                                                    page_size=2)  # two pages: follows next
                assert sorted(v["valueQuantity"]["value"] for v in values) == [5, 6, 7]
                assert (await clients.client("SMART").patient(patient["id"]) or {})["name"][0]["text"] == "黄蓉"
                with pytest.raises(FhirUnavailable):
                    await clients.client("DEAD").patient("p1")
                after = {c["name"]: c for c in (await gql.execute(CHANNELS))["channels"]}
                await gql.aclose()
    assert after["fhir-out:QSWSY"]["state"] == after["fhir-out:SMART"]["state"] == "up"
    dead = after["fhir-out:DEAD"]
    assert dead["direction"] == "outbound" and dead["state"] == "failing" and dead["errors"] == 1
    assert "cannot connect" in dead["lastError"] and dead["lastMessageAt"]
    assert after["fhir-out:QSWSY"]["lastError"] is None


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[A]\nbase_url = "ftp://x"\ntoken_file = "t"\n', ["[A]", "base_url"]),
        ('[A]\nbase_url = "http://x"\n', ["[A]", "token_file"]),
        ('[A]\nbase_url = "http://x"\ntoken_file = "missing.token"\n', ["[A]", "missing.token"]),
        ("[A\n", ["his.toml"]),
    ],
)
def test_a_bad_his_server_config_names_the_facility_and_the_key(tmp_path: Path, toml: str, words: list[str]) -> None:
    path = tmp_path / "his.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigurationError) as refused:
        load_his_servers(path)
    assert all(w in str(refused.value) for w in words), str(refused.value)


async def test_a_completed_consultation_is_pushed_to_the_his_fhir_server(tmp_path: Path, db_url: str) -> None:
    async with fhir_server(tmp_path / "his", db_url) as his:
        async with his_client(his) as seed:  # the HIS knows its patient by its MRN
            await seed.put({"resourceType": "Patient", "id": "p7", "name": [{"text": "郭靖"}],
                            "identifier": [{"system": MRN, "value": "M-GJ"}]})
        secrets = tmp_path / "config"
        secrets.mkdir()
        (secrets / "his.token").write_text(his.token("huizhen", "his_system", facility="QSWSY"))
        config = secrets / "his.toml"
        config.write_text(f'[QSWSY]\nbase_url = "{his.base_url}/fhir"\ntoken_file = "his.token"\n'
                          f'patient_identifier_system = "{MRN}"\n', encoding="utf-8")
        db = f"sqlite+aiosqlite:///{tmp_path / 'main.db'}"  # not the HIS's database
        async with running_server(tmp_path / "data", db, fhir_his_servers=config) as server:
            async with his_client(server) as hz:  # the same HIS sends the request to Huizhen
                await hz.put({"resourceType": "Patient", "id": "p7", "name": [{"text": "郭靖"}],
                              "identifier": [{"system": MRN, "value": "M-GJ"}]})
                expert = await hz.put({"resourceType": "Practitioner", "id": "dr", "name": [{"text": "洪医生"}]}) or {}
                request = await hz.put({
                    "resourceType": "ServiceRequest", "id": "sr-7", "status": "active", "intent": "order",
                    "code": CONSULT_CODE, "subject": {"reference": "Patient/p7"},
                    "performerType": {"text": "神经内科"}}) or {}
            services, actor = server.services, Actor("coordinator-1", ("coordinator",))
            cid = request["id"]
            await services.consultations.assign(cid, actor, expert["id"])
            await services.consultations.start(cid, actor)
            done = await services.consultations.complete(cid, actor, "偏头痛", "休息")
            assert services.fhir_push is not None
            services.fhir_push.poke()
            for _ in range(200):
                async with services.store.read() as repo:
                    [queued] = await repo.outbox.for_consultation(cid)
                if queued.status is not OutboundStatus.PENDING:
                    break
                await asyncio.sleep(0.05)
            async with services.store.read() as repo:
                c = await repo.consultations.get(cid)
        async with his.services.store.read() as repo:
            page = await repo.journal.search(channel="fhir", status=MessageStatus.PROCESSED, first=20)
        [pushed] = [m for m, _ in page.items if m.type == "PUT DiagnosticReport"]
        [effect] = [e for e in pushed.effects if e.type == "Document"] or pushed.effects[-1:]
        async with his_client(his) as read:
            report = await read.read("DiagnosticReport", effect.id) or {}
            [patient] = await read.patients_by_identifier(MRN, "M-GJ")
    assert queued.status is OutboundStatus.SENT, queued.last_error
    assert queued.channel == "fhir-out:QSWSY" and queued.type == "Encounter+DiagnosticReport"
    assert c is not None and c.timeline[-1].type == "REPORT_SENT"
    assert pushed.sender == "QSWSY" and done.status.value == "COMPLETED"
    assert report["conclusion"].startswith("偏头痛"), (pushed.effects, report)
    assert report["subject"]["reference"] == f"Patient/{patient['id']}"  # found on the HIS by its MRN
