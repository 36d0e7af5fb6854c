"""C-FIND query semantics (PS3.4 C.2.2.2) as pure functions.

A C-FIND identifier is parsed once into a :class:`FindQuery`: its level and,
for each key that carries a value, a :class:`MatchKey` saying which kind of
matching the standard asks for. Candidates are flat *records* (attribute
keyword → value, built by :mod:`huizhen.mappings.dicom_find`) tested with
:meth:`FindQuery.matches`. The store can push the cheap kinds (UID lists,
single values, date ranges) down into SQL and leave the rest to this module.

Rules implemented:

* empty value → universal matching; ``*`` alone → universal too;
* ``""`` (two double quotes) → empty value matching (PS3.4 C.2.2.2.8);
* ``*`` and ``?`` wildcards for the string VRs (AE CS LO LT PN SH ST UC UR UT);
* ``a-b``, ``-b`` and ``a-`` ranges for DA, TM and DT; a partial bound covers
  what it stands for (``-2020`` ends on 2020-12-31); a single DA/TM/DT value
  is the range from itself to itself at the same precision;
* backslash-separated UID lists for UI; for other VRs several values match if
  any does, and a multi-valued record attribute matches if any value does;
* case-sensitive for every VR except PN, which is case-insensitive unless the
  caller asks otherwise (the standard leaves PN to the implementation);
* PN compares component group by group (``Wang^XiaoDong=王^小東``); a
  one-group key matches any group, and a CJK group also without its ``^``.

Keys the record does not carry are not used for matching (an SCP may ignore
optional keys); keys it carries with no value only match universally or by
``""``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom_values import clean_text, has_cjk, temporal_bound

RecordValue = str | int | Sequence[str] | None
Record = Mapping[str, RecordValue]

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
NUMERIC_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"})
_DT_BOUND = r"\d+(?:\.\d+)?(?:[+-]\d{4})?"
_DT_WITH_OFFSET = re.compile(r"\d{4,}(?:\.\d+)?[+-]\d{4}")
_DT_RANGE = re.compile(rf"(?P<low>{_DT_BOUND}|)-(?P<high>{_DT_BOUND}|)")
# what a DA/TM/DT bound may look like (partial values included; ':' and a DA's '.' are the
# ACR-NEMA separators temporal_bound drops): anything else matches nothing, so it is refused
_TEMPORAL = {
    "DA": re.compile(r"\d{4}(?:\d{2}(?:\d{2})?)?"),
    "TM": re.compile(r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"),
    "DT": re.compile(r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"),
}
_NOT_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"})


class QueryLevel(enum.StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class MatchKind(enum.StrEnum):
    UNIVERSAL = "UNIVERSAL"
    EMPTY = "EMPTY"
    SINGLE = "SINGLE"
    WILDCARD = "WILDCARD"
    RANGE = "RANGE"
    UID_LIST = "UID_LIST"


@dataclass(frozen=True, slots=True)
class MatchKey:
    keyword: str
    vr: str
    kind: MatchKind
    values: tuple[str, ...] = ()  # SINGLE / WILDCARD / UID_LIST patterns
    low: str | None = None  # RANGE bounds as written (None: open)
    high: str | None = None


def parse_key(keyword: str, vr: str, raw: str | Sequence[str] | None) -> MatchKey:
    """The kind of matching a key value asks for."""
    values = _values(raw)
    if not values or (vr in WILDCARD_VRS and values == ("*",)):
        return MatchKey(keyword, vr, MatchKind.UNIVERSAL)
    if values == ('""',):
        return MatchKey(keyword, vr, MatchKind.EMPTY)
    if vr in RANGE_VRS:
        bounds = _range(vr, values[0])
        if bounds is None:
            return MatchKey(keyword, vr, MatchKind.RANGE, low=_temporal(keyword, vr, values[0]),
                            high=values[0])
        if not any(bounds):
            return MatchKey(keyword, vr, MatchKind.UNIVERSAL)
        low, high = (_temporal(keyword, vr, b) if b else None for b in bounds)
        return MatchKey(keyword, vr, MatchKind.RANGE, low=low, high=high)
    if vr == "UI":
        return MatchKey(keyword, vr, MatchKind.UID_LIST if len(values) > 1 else MatchKind.SINGLE, values)
    wild = vr in WILDCARD_VRS and any("*" in v or "?" in v for v in values)
    return MatchKey(keyword, vr, MatchKind.WILDCARD if wild else MatchKind.SINGLE, values)


def _temporal(keyword: str, vr: str, bound: str) -> str:
    """``bound`` if it is a (partial) DA/TM/DT value; :class:`BadInput` otherwise (C-FIND 0xA900,
    QIDO-RS 400), rather than a key that silently matches nothing."""
    text = bound.strip().replace(":", "")
    if vr == "DA":
        text = text.replace(".", "")
    if not _TEMPORAL[vr].fullmatch(text):
        raise BadInput(f"{keyword} {bound!r} is not a {vr} value or range")
    return bound


def _range(vr: str, text: str) -> tuple[str, str] | None:
    """The two bounds of a range value, or None for a single value.

    DT values may end in a UTC offset (``-0500``) whose sign is not a range dash.
    """
    if vr != "DT":
        low, dash, high = text.partition("-")
        return (low, high) if dash else None
    if _DT_WITH_OFFSET.fullmatch(text):
        return None
    match = _DT_RANGE.fullmatch(text)
    return (match["low"], match["high"]) if match else None


def match_value(key: MatchKey, value: RecordValue, *, pn_case_sensitive: bool = False) -> bool:
    """Whether a record value satisfies a key."""
    if key.kind is MatchKind.UNIVERSAL:
        return True
    candidates = _values(value)
    if key.kind is MatchKind.EMPTY:
        return not candidates
    if not candidates:
        return False
    if key.kind is MatchKind.RANGE:
        return any(_in_range(key, v) for v in candidates)
    return any(
        _matches_one(key.vr, pattern, v, key.kind, pn_case_sensitive) for pattern in key.values for v in candidates
    )


def _in_range(key: MatchKey, value: str) -> bool:
    point = temporal_bound(key.vr, value, upper=False)
    if key.low is not None and point < temporal_bound(key.vr, key.low, upper=False):
        return False
    return key.high is None or point <= temporal_bound(key.vr, key.high, upper=True)


def _matches_one(vr: str, pattern: str, value: str, kind: MatchKind, pn_cs: bool) -> bool:
    if vr == "PN":
        return _match_person_name(pattern, value, wildcard=kind is MatchKind.WILDCARD, cs=pn_cs)
    if vr in NUMERIC_VRS:
        return _number(pattern) is not None and _number(pattern) == _number(value)
    if kind is MatchKind.WILDCARD:
        return _wildcard(pattern).fullmatch(value) is not None
    return pattern == value


def _match_person_name(pattern: str, value: str, *, wildcard: bool, cs: bool) -> bool:
    def norm(text: str) -> str:
        return text if cs else text.casefold()

    def one(pat: str, group: str) -> bool:
        forms = {group, group.replace("^", "")} if has_cjk(group) else {group}
        if wildcard:
            regex = _wildcard(norm(pat))
            return any(regex.fullmatch(norm(f)) for f in forms)
        return any(norm(pat) == norm(f) for f in forms)

    groups = [g.rstrip("^ ") for g in value.split("=")]
    pat_groups = [g.rstrip("^ ") for g in pattern.split("=")]
    if len(pat_groups) == 1:
        return any(one(pat_groups[0], g) for g in groups if g)
    groups += [""] * (len(pat_groups) - len(groups))
    return all(one(p, g) for p, g in zip(pat_groups, groups, strict=False) if p and p != "*")


def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _values(raw: RecordValue | MultiValue) -> tuple[str, ...]:
    """Non-empty values, stripped of padding, as strings."""
    if raw is None:
        return ()
    items = list(raw) if isinstance(raw, MultiValue | list | tuple) else [raw]
    out = (clean_text(str(v)).strip() for v in items if v is not None)
    return tuple(v for v in out if v)


@dataclass(frozen=True, slots=True)
class FindQuery:
    level: QueryLevel
    keys: Mapping[str, MatchKey]  # keys that carry a value (matching keys)
    requested: tuple[str, ...]  # every keyword in the identifier, for the response

    @classmethod
    def from_identifier(cls, identifier: Dataset) -> FindQuery:
        level_text = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        try:
            level = QueryLevel(level_text)
        except ValueError as exc:
            raise BadInput(f"QueryRetrieveLevel {level_text!r} is not one of PATIENT, STUDY, SERIES, IMAGE") from exc
        keys: dict[str, MatchKey] = {}
        requested: list[str] = []
        for elem in identifier:
            if not elem.keyword or elem.keyword in _NOT_KEYS:
                continue
            requested.append(elem.keyword)
            if elem.VR == "SQ":
                continue  # sequence matching is not supported: a return key
            key = parse_key(elem.keyword, elem.VR, elem.value)
            if key.kind is not MatchKind.UNIVERSAL:
                keys[elem.keyword] = key
        return cls(level=level, keys=keys, requested=tuple(requested))

    def matches(self, record: Record, *, pn_case_sensitive: bool = False) -> bool:
        return all(
            match_value(key, record[kw], pn_case_sensitive=pn_case_sensitive)
            for kw, key in self.keys.items()
            if kw in record
        )
