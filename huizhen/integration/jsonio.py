"""Reading the JSON the store holds: JSON columns and encrypted JSON documents.

orjson parses a work-list page's some 500 documents (each observation's
encrypted value and its identifiers) in a fifth of the standard library's
time. It is stricter in two corners the standard library writes but JSON
does not allow (``NaN``/``Infinity``) or orjson does not hold (integers past
64 bits); such a document is read by the standard library, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
