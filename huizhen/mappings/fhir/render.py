"""Canonical values → FHIR R4 JSON fragments (outbound side).

Times: an aware datetime is written with its offset; a naive one at exactly
midnight is a date-precision value (see :mod:`.datatypes`) and is written as a
date; any other naive time is taken to be :data:`LOCAL_TZ` (China Standard
Time, where Huizhen's feeds come from), because FHIR requires an offset
whenever a time is given.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from huizhen.integration.model import Coding, HumanName, Identifier
from huizhen.mappings.fhir import systems

JSON = dict[str, Any]
LOCAL_TZ: Final = timezone(timedelta(hours=8))


def compact(obj: JSON) -> JSON:
    """Drop absent values: FHIR JSON has no nulls, empty strings, arrays or objects."""
    return {k: v for k, v in obj.items() if v is not None and v != "" and v != [] and v != {}}


def date_time(value: datetime) -> str:
    if value.tzinfo is None:
        if value.time() == time(0):
            return value.date().isoformat()
        value = value.replace(tzinfo=LOCAL_TZ)
    return _iso(value)


def instant(value: datetime) -> str:
    return _iso(value if value.tzinfo is not None else value.replace(tzinfo=LOCAL_TZ))


def _iso(value: datetime) -> str:
    spec = "seconds" if not value.microsecond else "milliseconds" if not value.microsecond % 1000 else "microseconds"
    return value.isoformat(timespec=spec)


def day(value: date) -> str:
    return value.isoformat()


def reference(resource_type: str, id: str | None, display: str | None = None) -> JSON | None:
    if not id:
        return None
    return compact({"reference": f"{resource_type}/{id}", "display": display})


def identifier(ident: Identifier, type_code: str | None = None) -> JSON:
    kind = {"coding": [{"system": systems.V2_IDENTIFIER_TYPE, "code": type_code}]} if type_code else None
    return compact({"type": kind, "system": ident.system or None, "value": ident.value})


def identifiers(items: Iterable[Identifier]) -> list[JSON]:
    return [identifier(i) for i in items if i.value]


def coding(c: Coding) -> JSON:
    return compact({"system": c.system, "code": c.code, "display": c.display})


def concept(c: Coding | None, text: str | None = None, more: Sequence[Coding] = ()) -> JSON | None:
    """A CodeableConcept (``more``: its further codings); a system-less coding whose code is its
    display is text only."""
    if c is None:
        return compact({"text": text}) or None
    if c.system is None and c.code == c.display:
        return compact({"coding": [coding(m) for m in more] or None, "text": text or c.code})
    return compact({"coding": [coding(c), *(coding(m) for m in more)], "text": text})


def text_concept(text: str | None) -> JSON | None:
    return {"text": text} if text else None


def quantity(value: Decimal, unit: str | None) -> JSON:
    ucum = unit in systems.UCUM_COMMON
    return compact(
        {"value": value, "unit": unit, "system": systems.UCUM if ucum else None, "code": unit if ucum else None}
    )


def human_name(name: HumanName) -> list[JSON]:
    rendered = compact({"use": "official", "text": name.text, "family": name.family, "given": list(name.given)})
    return [rendered] if len(rendered) > 1 else []


def meta(updated_at: datetime | None = None, version: int | None = None) -> JSON | None:
    return (
        compact(
            {
                "versionId": str(version) if version else None,
                "lastUpdated": instant(updated_at) if updated_at else None,
            }
        )
        or None
    )


def base64_text(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def coding_of(system: str, code: str, display: str | None = None) -> JSON:
    return compact({"system": system, "code": code, "display": display})
