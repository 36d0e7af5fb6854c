"""What ``huizhen import`` makes of a file: HL7 v2, ndjson or one FHIR document, and the write it becomes."""

from __future__ import annotations

import json
from pathlib import Path

from huizhen.adapters.fhir_import import Item, Kind, as_batch, collect_files, read_items, request_for


def test_files_are_judged_by_content(tmp_path: Path) -> None:
    hl7 = tmp_path / "feed.txt"
    hl7.write_bytes(b"\xef\xbb\xbfMSH|^~\\&|A|B\r\nPID|1\nMSH|^~\\&|A|B\rPID|2\r")
    lines = tmp_path / "export.json"  # ndjson under a .json name
    lines.write_text('{"resourceType": "Patient"}\n{"resourceType": "Patient", "id": "2"}\n\n', encoding="utf-8")
    one = tmp_path / "patient.json"
    one.write_text(json.dumps({"resourceType": "Patient", "name": [{"text": "张三"}]}, indent=2), encoding="utf-8")

    [first, second] = read_items(hl7)
    assert (first.kind, first.source, first.payload) == (Kind.HL7, f"{hl7}#1", b"MSH|^~\\&|A|B\rPID|1\r")
    assert first.size + second.size == hl7.stat().st_size
    assert [(i.kind, i.source) for i in read_items(lines)] == [(Kind.FHIR, f"{lines}:1"), (Kind.FHIR, f"{lines}:2")]
    [whole] = read_items(one)
    assert whole.kind is Kind.FHIR and json.loads(whole.payload)["name"][0]["text"] == "张三"


def test_folders_are_walked_in_order_and_other_files_skipped(tmp_path: Path) -> None:
    for name in ("b/2.ndjson", "a.json", "c.hl7", "notes.md", ".hidden/x.json", "image.dcm"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    files, skipped = collect_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.json", "b/2.ndjson", "c.hl7"]
    assert sorted(p.name for p in skipped) == ["image.dcm", "notes.md", "x.json"]


def item(data: object) -> Item:
    payload = json.dumps(data).encode() if not isinstance(data, bytes) else data
    return Item("f", Path("f"), Kind.FHIR, payload, len(payload))


def test_each_document_becomes_the_write_a_his_would_send() -> None:
    put = request_for(item({"resourceType": "Patient", "id": "p1"}), "s", None)
    assert (put.method, put.path) == ("PUT", "Patient/p1")
    assert request_for(item({"resourceType": "Observation"}), "s", "QSWSY").path == "Observation"
    assert request_for(item({"resourceType": "Bundle", "type": "transaction"}), "s", None).path == ""
    assert request_for(item(b"{broken"), "s", None).path == ""  # refused by the pipeline, journaled
    collection = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": {"resourceType": "Observation"}, "search": {"mode": "match"}},
    ]}
    batch = as_batch(collection)
    assert batch["type"] == "batch"
    assert [e["request"] for e in batch["entry"]] == [{"method": "PUT", "url": "Patient/p1"},
                                                      {"method": "POST", "url": "Observation"}]
    assert batch["entry"][0]["fullUrl"] == "urn:uuid:1" and "search" not in batch["entry"][1]
