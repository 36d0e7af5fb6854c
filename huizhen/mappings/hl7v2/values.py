"""OBX-5 by OBX-2, and OBX-7 reference ranges."""

from __future__ import annotations

import re
from datetime import tzinfo
from decimal import Decimal, InvalidOperation

from huizhen.integration.model import Coding, ReferenceRange

from .datatypes import codings, parse_dtm
from .errors import MappingError
from .parse import Composite, Segment
from .tables import ErrorCode

TEXT_TYPES = frozenset({"ST", "TX", "FT"})
CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})
TIME_TYPES = frozenset({"DT", "DTM", "TS"})
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_INTERVAL = re.compile(rf"\s*({_NUMBER})\s*(?:-|–|—|~|to)\s*({_NUMBER})", re.IGNORECASE)
_BOUND = re.compile(rf"\s*(<=|>=|≤|≥|<|>)\s*({_NUMBER})")
_UPPER = frozenset({"<", "<=", "≤"})

Value = tuple[Decimal | None, str | None, tuple[Coding, ...]]  # quantity, string, codings (first: the value)
_DATE_ONLY = re.compile(r"\s*(\d{4})(\d{2})?(\d{2})?\s*\Z")


def observation_value(obx: Segment, value_type: str, local: tzinfo) -> Value:
    """NM → Decimal; SN → its text (and a Decimal when it is a plain number);
    ST/TX/FT → text with repetitions on new lines; CE/CWE → its codings, the alternate triplet
    after the primary one; DT/DTM/TS → ISO 8601 (the contract's form of a time, and FHIR's
    valueDateTime), at the precision sent; others → text."""
    if not obx.first(5):
        return None, None, ()
    if value_type == "NM":
        return _number(obx, obx.get(5)), None, ()
    if value_type == "SN":
        return _structured_numeric(obx)
    if value_type in CODED_TYPES:
        found = tuple(codings(obx.first(5)))
        return (None, None, found) if found else (None, obx.text(5) or None, ())
    if value_type in TIME_TYPES:
        return None, _iso_time(obx.get(5), local), ()
    return None, obx.text(5) or None, ()


def _iso_time(text: str, local: tzinfo) -> str | None:
    """An HL7 DT/DTM as ISO 8601: a date alone (or a year, a month) stays one, without a zone; a
    time gets the sender's offset, or the local one. Text that is no HL7 time is kept as sent."""
    if date_only := _DATE_ONLY.match(text):
        return "-".join(part for part in date_only.groups() if part)
    try:
        return parse_dtm(text, local).isoformat()
    except ValueError:
        return text.strip() or None


def _structured_numeric(obx: Segment) -> Value:
    comparator, first, separator, second = (obx.get(5, n) for n in (1, 2, 3, 4))
    for number in (first, second):
        if number:
            _number(obx, number)
    text = f"{comparator}{first}{separator}{second}"
    plain = first and comparator in ("", "=") and not separator and not second
    return (_number(obx, first) if plain else None), text, ()


def _number(obx: Segment, text: str) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise MappingError(
            f"OBX-5 {text!r} is not a number although OBX-2 is {obx.get(2)}",
            code=ErrorCode.DATA_TYPE_ERROR,
            location=obx.location(5),
        )
    return number


def reference_range(rep: Composite) -> ReferenceRange | None:
    """``3.5-5.5``, ``0 to 2``, ``3.5–5.5 mg/dL``, ``<5``, ``>=10``, or ``3.5&5.5``."""
    if not rep:
        return None
    plain = rep.single()
    if plain is None:
        return ReferenceRange(*_range(rep))
    # a lab repeats its ranges on every result: each one is read once
    found = _RANGES.get(plain)
    if found is None:
        if len(_RANGES) >= _MAX_RANGES:
            _RANGES.clear()
        found = _RANGES[plain] = _range(rep)
    return ReferenceRange(*found)  # a fresh object each time: ReferenceRange is mutable


Range = tuple[Decimal | None, Decimal | None, str | None]  # low, high, text
_RANGES: dict[str, Range] = {}
_MAX_RANGES = 4096


def _range(rep: Composite) -> Range:
    parts = [p for p in rep.subcomponents(1) if p]
    if len(parts) == 2 and all(_decimal(p) is not None for p in parts):
        return _decimal(parts[0]), _decimal(parts[1]), f"{parts[0]}-{parts[1]}"
    text = rep.text()
    interval = _INTERVAL.match(text)
    if interval:
        return _decimal(interval.group(1)), _decimal(interval.group(2)), text
    bound = _BOUND.match(text)
    if bound:
        limit = _decimal(bound.group(2))
        upper = bound.group(1) in _UPPER
        return (None if upper else limit), (limit if upper else None), text
    return None, None, text


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
