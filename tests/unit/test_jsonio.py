"""The store's JSON reader: orjson, and the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from huizhen.integration import jsonio
from huizhen.integration.model import Urgency


def test_reads_what_the_standard_library_wrote() -> None:
    doc = {"name": "吴桂兰", "given": ["桂兰"], "n": 5, "x": 0.1, "none": None, "big": 2**70}
    assert jsonio.loads(json.dumps(doc, ensure_ascii=False).encode()) == doc
    assert jsonio.loads(json.dumps(doc)) == doc


def test_nan_written_by_the_standard_library_still_reads() -> None:
    assert math.isnan(jsonio.loads(json.dumps({"v": float("nan")}))["v"])


def test_plain_documents_are_written_compact_in_utf8_with_the_same_values() -> None:
    doc = {"quantity": "6.5", "string": None, "coding": ["WBC", "http://loinc.org", "白细胞计数"],
           "range": ["3.5", "9.5", None], "n": 5, "x": 0.1, "ok": True, "pair": ("a", "b")}
    written = jsonio.dumps(doc)
    assert written == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    assert jsonio.loads(written) == json.loads(json.dumps(doc))


def test_what_orjson_would_write_its_own_way_goes_to_the_standard_library() -> None:
    @dataclass
    class Point:
        x: int

    at = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    encoder = json.JSONEncoder(ensure_ascii=False, default=str)
    for doc in ({"at": at}, [Decimal("1.50")], {"p": Point(1)}, {1: "a"}, [2**70]):
        assert jsonio.dumps_utf8(doc, encoder.encode) == encoder.encode(doc).encode()
    # a StrEnum is written as its value either way
    assert jsonio.loads(jsonio.dumps({"u": Urgency.URGENT})) == {"u": "URGENT"}


def test_a_column_value_the_standard_library_refuses_is_still_refused() -> None:
    with pytest.raises(TypeError):
        jsonio.dumps({"d": Decimal("1")})
