"""The HL7 v2 corpus (../shared/corpus/hl7v2, see SOURCES.md) and hand-built messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from huizhen.mappings.codes import CodeTables, load_code_tables
from huizhen.mappings.hl7v2.context import MappingContext, MappingResult
from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.registry import default_registry

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config" / "mappings"
CORPUS = ROOT.parent / "shared" / "corpus"
MANIFEST: list[dict[str, Any]] = [
    f for f in json.loads((CORPUS / "manifest.json").read_text())["files"] if f["kind"] == "hl7v2"
]


def corpus(name: str) -> bytes:
    """A corpus message by file name, whichever source folder holds it."""
    (path,) = (CORPUS / "hl7v2").glob(f"*/{name}")
    return path.read_bytes()


def message(
    *segments: str,
    type: str = "ADT^A01^ADT_A01",
    version: str = "2.5",
    charset: str = "",
    encoding: str = "utf-8",
    sender: str = "HIS|QSWSY",
    control_id: str = "MSG0001",
    processing_id: str = "P",
    ack_types: str = "|",
) -> bytes:
    """An inbound message with the default delimiters, encoded as a sender would."""
    msh = (
        f"MSH|^~\\&|{sender}|HUIZHEN|HZ|20240301101500+0800||{type}|{control_id}|"
        f"{processing_id}|{version}|||{ack_types}||{charset}"
    )
    return "\r".join((msh.rstrip("|"), *segments)).encode(encoding) + b"\r"


def map_raw(raw: bytes, context: MappingContext) -> MappingResult:
    return default_registry().map(parse_message(raw), context)


@pytest.fixture(scope="session")
def tables() -> CodeTables:
    return load_code_tables(CONFIG)


@pytest.fixture
def context(tables: CodeTables) -> MappingContext:
    return MappingContext(tables)


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields at their HL7 positions, the rest empty."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join((name, *values))
