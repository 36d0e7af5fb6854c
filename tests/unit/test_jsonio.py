"""The store's JSON reader: orjson, and the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

from huizhen.integration import jsonio


def test_reads_what_the_standard_library_wrote() -> None:
    doc = {"name": "吴桂兰", "given": ["桂兰"], "n": 5, "x": 0.1, "none": None, "big": 2**70}
    assert jsonio.loads(json.dumps(doc, ensure_ascii=False).encode()) == doc
    assert jsonio.loads(json.dumps(doc)) == doc


def test_nan_written_by_the_standard_library_still_reads() -> None:
    assert math.isnan(jsonio.loads(json.dumps({"v": float("nan")}))["v"])
