"""Reading and writing the JSON the store holds: JSON columns and encrypted JSON documents.

orjson parses a work-list page's some 500 documents (each observation's
encrypted value and its identifiers) in a fifth of the standard library's
time. It is stricter in two corners the standard library writes but JSON
does not allow (``NaN``/``Infinity``) or orjson does not hold (integers past
64 bits); such a document is read by the standard library, as before.

Writing is the same trade: an HL7 ORU^R01 writes some 25 small documents (each
observation's encrypted value and its identifiers, the journal's effects), at
~4 µs each through the standard library and ~0.4 µs through orjson, which
writes them compact and in UTF-8 (the standard library's ``ensure_ascii``
escapes are a longer spelling of the same text). orjson gets only documents it
writes as the standard library would: a datetime, a dataclass, a subclass of
``str``/``int``/``dict``/``list`` (the model's ``StrEnum``\\ s), a Decimal, a key
that is not text or an integer past 64 bits is refused by it and goes to the
standard library's encoder, whose text is then exactly the former one. The one
value orjson writes otherwise, a float that is not finite (``null`` for
``NaN``), is not JSON; no document of the store holds one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# orjson refuses, rather than writes its own way, what only the standard library's encoder should write
_PLAIN_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps_utf8(value: Any, fallback: Callable[[Any], str]) -> bytes:
    """``value`` as UTF-8 JSON: by orjson where it holds only plain JSON types, else ``fallback``'s
    text (a standard library encoder with the caller's options)."""
    try:
        return orjson.dumps(value, option=_PLAIN_ONLY)
    except orjson.JSONEncodeError:
        return fallback(value).encode("utf-8")


def dumps(value: Any) -> str:
    """A JSON column's text (the engine's ``json_serializer``); ``json.dumps`` for what orjson refuses."""
    return dumps_utf8(value, json.dumps).decode("utf-8")
