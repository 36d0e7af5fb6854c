"""HIS FHIR servers configured per facility (``fhir_his_servers``): pulls through a static bearer and
SMART backend services against a real Huizhen /fhir on another port, and each server's state in GraphQL
``channels`` — a dead one reports ``failing`` with its last error while the others stay ``up``."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from huizhen.adapters.fhir_client import FhirUnavailable
from huizhen.adapters.fhir_his import load_his_servers
from huizhen.integration.errors import ConfigurationError
from huizhen.mappings.fhir import systems
from tests.conftest import free_port
from tests.helpers import running_server
from tests.integration.fhir_support import fhir_server
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
            db = f"sqlite+aiosqlite:///{tmp_path / 'huizhen.db'}"
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
