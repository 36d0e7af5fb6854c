"""FHIR data types → canonical values (inbound side).

Dates: FHIR ``dateTime`` may be partial. A full date with no time becomes a
naive midnight ``datetime`` (the canonical model has no precision field, and
:mod:`.render` writes a naive midnight back as a date, so ``2016-03-28``
round-trips). Times with an offset keep it. Partial dates (``2016``,
``2016-03``) become the first instant of the period, naive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from typing import Any

from fhir.resources.R4B.address import Address
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.humanname import HumanName as FhirHumanName
from fhir.resources.R4B.identifier import Identifier as FhirIdentifier

from huizhen.integration.model import Coding, HumanName, Identifier

_NAME_USE_RANK = {"official": 0, "usual": 1, None: 2}
_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2}))?")


def identifiers(items: Iterable[FhirIdentifier] | None) -> list[Identifier]:
    """Every identifier with a value; a missing system is kept as ``""``."""
    found: list[Identifier] = []
    for item in items or ():
        if item.value and (ident := Identifier(item.system or "", item.value)) not in found:
            found.append(ident)
    return found


def has_type(item: FhirIdentifier, code: str) -> bool:
    return bool(item.type and any(c.code == code for c in item.type.coding or ()))


def coding(concept: CodeableConcept | None, prefer: Sequence[str] = ()) -> Coding | None:
    """The first coding with a code (from a preferred system if any), else the text."""
    if concept is None:
        return None
    codings = [c for c in concept.coding or () if c.code]
    for system in prefer:
        for c in codings:
            if c.system == system:
                return Coding(c.code or "", c.system, c.display or concept.text)
    if codings:
        c = codings[0]
        return Coding(c.code or "", c.system, c.display or concept.text)
    return None


def alternates(concept: CodeableConcept | None, chosen: Coding | None) -> tuple[Coding, ...]:
    """The codings of ``concept`` other than ``chosen`` (the one the model keeps as the code):
    the same meaning in other systems, kept so that none is lost."""
    if concept is None or chosen is None:
        return ()
    return tuple(
        Coding(c.code, c.system, c.display) for c in concept.coding or ()
        if c.code and (c.code, c.system) != (chosen.code, chosen.system)
    )


def codings_of(concepts: Iterable[CodeableConcept] | None) -> tuple[Coding, ...]:
    """Every coding of a list of concepts (a text-only concept as its text)."""
    found: list[Coding] = []
    for cc in concepts or ():
        coded = [Coding(c.code, c.system, c.display) for c in cc.coding or () if c.code]
        found += coded or ([Coding(cc.text, None, cc.text)] if cc.text else [])
    return tuple(found)


def text(concept: CodeableConcept | None) -> str | None:
    """What a person would read: text, else a display, else a code."""
    if concept is None:
        return None
    if concept.text:
        return concept.text
    for c in concept.coding or ():
        if c.display:
            return c.display
    return next((c.code for c in concept.coding or () if c.code), None)


def codings(concepts: Iterable[CodeableConcept] | None) -> list[tuple[str | None, str]]:
    """(system, code) of every coding in a list of concepts."""
    return [(c.system, c.code) for cc in concepts or () for c in cc.coding or () if c.code]


def human_name(names: Sequence[FhirHumanName] | None) -> HumanName | None:
    """The best name: official, then usual; among equals one in Chinese script first."""
    usable = [n for n in names or () if n.text or n.family or n.given]
    if not usable:
        return None
    best = min(
        usable,
        key=lambda n: (
            _NAME_USE_RANK.get(n.use, 3),
            not is_cjk(n.text or (n.family or "") + "".join(g for g in n.given or () if g)),
        ),
    )
    given = tuple(g for g in best.given or () if g)
    return HumanName.of(best.family, given, best.text or None)


def phone(telecom: Sequence[ContactPoint] | None) -> str | None:
    phones = [t for t in telecom or () if t.system in ("phone", "sms") and t.value]
    phones.sort(key=lambda t: (t.use != "mobile", t.use == "old"))
    return phones[0].value if phones else None


def address(addresses: Sequence[Address] | None) -> str | None:
    """Address text; composed from parts in Chinese order when in Chinese script."""
    for a in sorted(addresses or (), key=lambda a: a.use == "old"):
        if a.text:
            return a.text
        parts = [p for p in (a.country, a.state, a.city, a.district, *(a.line or ())) if p]
        if not parts:
            continue
        if any(is_cjk(p) for p in parts):
            return "".join(parts)
        western = [*(a.line or ()), a.city, a.district, a.state, a.postalCode, a.country]
        return ", ".join(p for p in western if p)
    return None


def region(addresses: Sequence[Address] | None) -> str | None:
    """Province, city, district of the first address (a facility's region), else its text."""
    for a in addresses or ():
        parts = [p for p in (a.state, a.city, a.district) if p]
        if parts:
            return "".join(parts) if any(is_cjk(p) for p in parts) else ", ".join(reversed(parts))
        if a.text:
            return a.text
    return None


def when(value: Any) -> datetime | None:
    """A dateTime / instant / date value from the model as a canonical datetime."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        return value.replace(tzinfo=timezone(offset)) if offset is not None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and (m := _PARTIAL.fullmatch(value)):
        return datetime(int(m[1]), int(m[2] or 1), 1)
    return None


def day(value: Any) -> date | None:
    """A full date only; partial dates (``1990``) cannot be canonical dates."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def is_cjk(s: str) -> bool:
    """Han characters: such names are written family-first, without spaces."""
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in s)


def attachment_text(content_type: str | None, data: bytes | None) -> str | None:
    """The text of a ``text/*`` attachment (charset from the media type, UTF-8 by default)."""
    if data is None or not (content_type or "").lower().startswith("text/"):
        return None
    charset = "utf-8"
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None
