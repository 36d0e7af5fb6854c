"""HL7 v2 data types → canonical values: DTM, DT, CX, EI, HD, XPN, XAD, XTN, CWE.

Each reader takes one :class:`Composite` (a field repetition). Readers that can
fail take the segment and field number too, so the error names its location.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo

from huizhen.integration.model import Coding, HumanName, Identifier

from .errors import MappingError
from .parse import Composite, Segment
from .tables import ErrorCode

LOINC = "http://loinc.org"
# HL7 table 0396 names → canonical system URIs; any other name is kept as sent.
_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ICD-10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "UCUM": "http://unitsofmeasure.org",
    "CVX": "http://hl7.org/fhir/sid/cvx",
}
_HL7_TABLE = re.compile(r"HL7(\d{4})\Z", re.IGNORECASE)
_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:([+-])(\d{2})(\d{2}))?\Z")
_DATE = re.compile(r"(\d{4})(\d{2})?(\d{2})?")


@functools.lru_cache(maxsize=512)  # a few names (LN, L, I10, 99xxx) on every OBX-3, OBX-5, DG1-3
def coding_system(name: str) -> str | None:
    """A CWE-3 coding system name as a URI where it is a standard one."""
    if not name:
        return None
    table = _HL7_TABLE.match(name)
    if table:
        return f"http://terminology.hl7.org/CodeSystem/v2-{table.group(1)}"
    return _SYSTEMS.get(name.upper(), name)


def codings(rep: Composite) -> list[Coding]:
    """CE/CWE/CNE: the primary triplet, then the alternate one (components 4-6)."""
    found = []
    for first in (1, 4):
        code, display = rep.get(first), rep.get(first + 1)
        if code or display:
            found.append(Coding(code or display, coding_system(rep.get(first + 2)), display or None))
    return found


def coding(rep: Composite) -> Coding | None:
    found = codings(rep)
    return found[0] if found else None


def hd_system(rep: Composite, component: int) -> str:
    """An HD held in one component's subcomponents (CX-4): namespace, else universal id."""
    namespace, universal, kind = (rep.get(component, n) for n in (1, 2, 3))
    if namespace:
        return namespace
    if universal:
        return f"urn:oid:{universal}" if kind.upper() == "ISO" else universal
    return ""


def cx_identifiers(reps: Sequence[Composite], default_system: Callable[[], str]) -> list[Identifier]:
    """CX: id numbers with their assigning authority (CX-4) as the system, in order, once."""
    found: dict[Identifier, None] = {}
    for rep in reps:
        value = rep.get(1)
        if value:
            found[Identifier(hd_system(rep, 4) or default_system(), value)] = None
    return list(found)


def ei_identifier(rep: Composite, default_system: Callable[[], str]) -> Identifier | None:
    """EI: entity id, with its namespace (EI-2) or universal id (EI-3) as the system."""
    value = rep.get(1)
    if not value:
        return None
    namespace, universal = rep.get(2), rep.get(3)
    universal = f"urn:oid:{universal}" if universal and rep.get(4).upper() == "ISO" else universal
    return Identifier(namespace or universal or default_system(), value)


def person_name(reps: Sequence[Composite]) -> HumanName | None:
    """XPN: the first repetition (the primary name, by the standard), unless a later one
    of the same name type is written in ideographs (张三 sent beside ZHANG^SAN)."""
    if not reps:
        return None
    primary = reps[0]
    same_type = [r for r in reps if r.get(7).upper() == primary.get(7).upper()]
    rep = next((r for r in same_type if r.get(8).upper() == "I"), primary)
    family = rep.get(1, 1)
    given = tuple(g for g in (rep.get(2), rep.get(3)) if g)
    if not family and not given:
        return None
    if family and not given and has_cjk(family):
        return HumanName.of(None, (), family)  # 张三 in one component: no safe surname split
    return HumanName.of(family or None, given)


def address_text(rep: Composite) -> str | None:
    """XAD as one line: 省市区街道 without separators for Chinese, comma-separated otherwise."""
    street = " ".join(s for s in rep.subcomponents(1) if s)
    other, city, state, zip_code, country = (rep.get(n) for n in (2, 3, 4, 5, 6))
    district = rep.get(9)
    if has_cjk(street + city + state + district):
        return "".join((state, city, district, street, other)) or None
    region = " ".join(p for p in (state, zip_code) if p)
    return ", ".join(p for p in (street, other, city, region, country) if p) or None


def phone_text(rep: Composite) -> str | None:
    """XTN: the unformatted number (XTN-12), the legacy text (XTN-1), or its parts."""
    if rep.get(12):
        return rep.get(12)
    if rep.get(1):
        return rep.get(1)
    country, area, local, extension = (rep.get(n) for n in (5, 6, 7, 8))
    parts = [f"+{country}" if country else "", area, local, f"x{extension}" if extension else ""]
    return " ".join(p for p in parts if p) or None


def has_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


@functools.lru_cache(maxsize=1024)  # a message repeats its times (each OBX-14); datetimes are immutable
def parse_dtm(value: str, local: tzinfo) -> datetime:
    """HL7 DTM/TS: YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]; no offset means ``local``."""
    match = _DTM.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an HL7 date/time")
    y, mo, d, h, mi, s, frac, sign, oh, om = match.groups()
    zone = local
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "0").ljust(6, "0"))
    return datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), micro, zone)


def parse_date(value: str) -> tuple[date, bool]:
    """DT (or the date of a DTM): the date, and whether it was partial (YYYY, YYYYMM)."""
    match = _DATE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an HL7 date")
    y, mo, d = match.groups()
    return date(int(y), int(mo or 1), int(d or 1)), d is None


def datetime_at(segment: Segment, field: int, local: tzinfo, component: int = 1) -> datetime | None:
    """The DTM in a field (TS-1 for v2.3-2.4 TS fields), or ``None`` when empty."""
    value = segment.get(field, component)
    if not value:
        return None
    try:
        return parse_dtm(value, local)
    except ValueError as exc:
        raise MappingError(
            f"{segment.name}-{field} {value!r} is not an HL7 date/time",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=segment.location(field, component),
        ) from exc
