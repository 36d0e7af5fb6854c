"""``huizhen import`` as a new user runs it: a folder of FHIR JSON, ndjson, a Synthea-style Bundle and
an HL7 v2 file into the embedded store (and PostgreSQL), the summary, idempotent re-import, and what
the server then serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e.instance import Instance

SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea_patient_bundle.json"
MRN = "http://his.qswsy.example.cn/mrn"
ADT = "\r".join((
    "MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||ADT^A01^ADT_A01|IMP-1|P|2.5||||||UNICODE UTF-8",
    "EVN|A01|20261127101500+0800",
    "PID|1||Q2001^^^QSWSY^MR||欧阳^娜娜||19800502|F",
    "PV1|1|O|内科门诊||||||||||||||||V9001^^^QSWSY^VN",
)) + "\r"


def observation(value: float) -> str:
    return json.dumps({
        "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p-imp"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "effectiveDateTime": f"2026-11-2{int(value)}T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "mmol/L"},
    }, ensure_ascii=False)


def import_folder(root: Path) -> Path:
    folder = root / "his-export"
    folder.mkdir()
    (folder / "adt.hl7").write_bytes(ADT.replace("\r", "\r\n").encode())
    (folder / "notes.md").write_text("not data", encoding="utf-8")
    (folder / "patient.json").write_text(json.dumps({
        "resourceType": "Patient", "id": "p-imp", "identifier": [{"system": MRN, "value": "M-IMP"}],
        "name": [{"text": "王小明"}], "gender": "male", "birthDate": "1970-01-02",
    }, ensure_ascii=False), encoding="utf-8")
    (folder / "results.ndjson").write_text("\n".join([observation(5.1), observation(6.2), "{not json"]) + "\n",
                                           encoding="utf-8")
    shutil.copy(SYNTHEA, folder / "synthea.json")
    return folder


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_import_a_folder_then_again_then_serve_it(instance: Instance) -> None:
    folder = import_folder(instance.workdir)
    first = instance.run("import", str(folder), check=False)
    assert first.returncode == 1, first.stderr  # one line of the ndjson is refused
    out = first.stdout.splitlines()
    assert out[-3:] == [
        "accepted 5, rejected 1",
        "Bundle entries validated and journaled, not applied: Claim 1, Immunization 1, Procedure 1",
        "skipped 1 file(s) that are not FHIR JSON, ndjson or HL7 v2",
    ], first.stdout
    [rejected] = [line for line in out if line.startswith("rejected ")]
    assert "results.ndjson:3: " in rejected and "not valid JSON" in rejected
    assert "importing" in first.stderr  # the progress bar, on stderr

    again = instance.run("import", str(folder / "results.ndjson"), str(folder / "adt.hl7"), check=False)
    assert again.stdout.splitlines()[-1] == "accepted 3 (1 already imported), rejected 1", again.stdout

    instance.start()
    admin = instance.run("token", "--sub", "ops-1", "--role", "integration_admin").stdout.strip()
    messages = instance.gql(admin, '{ fhir: messages(channel: "fhir", first: 50) { edges { node { status } } } '
                                   'mllp: messages(channel: "mllp") { edges { node { status } } } }')
    statuses = [e["node"]["status"] for e in messages["data"]["fhir"]["edges"]]
    assert sorted(set(statuses)) == ["DUPLICATE", "ERROR", "PROCESSED"], statuses
    assert [e["node"]["status"] for e in messages["data"]["mllp"]["edges"]] == ["DUPLICATE", "PROCESSED"]
    his = instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()  # platform-wide reader
    with httpx.Client(base_url=instance.base + "/fhir", headers={"Authorization": f"Bearer {his}"}) as fhir:
        [patient] = [e["resource"] for e in fhir.get("/Patient", params={"identifier": f"{MRN}|M-IMP"}).json()["entry"]]
        assert patient["name"][0]["text"] == "王小明"
        found = fhir.get("/Observation", params={"patient": patient["id"]}).json()
        assert sorted(e["resource"]["valueQuantity"]["value"] for e in found["entry"]) == [5.1, 6.2]  # not twice
        assert fhir.get("/Patient", params={"name": "陈美玲"}).json()["total"] == 1
        assert fhir.get("/Patient", params={"identifier": "Q2001"}).json()["total"] == 1  # from the HL7 file
