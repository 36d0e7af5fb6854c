"""Bytes → a parsed HL7 v2 message: charset, python-hl7 split, typed access.

python-hl7 does the splitting on the hot path (it is tolerant and fast). Its
containers are irregular (a value without delimiters stays a plain string), so
:class:`Segment` and :class:`Composite` give mappings one regular, 1-based view
that returns unescaped, stripped text and treats the HL7 null ``""`` as empty.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import hl7

from .charset import decode
from .delimiters import Delimiters
from .errors import ErrorLocation, NotHl7
from .header import MessageHeader, check_header, read_header
from .tables import SUPPORTED_VERSIONS

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_NULL = '""'

Parts = list[list[str]]  # components → subcomponents, still escaped


class Composite:
    """One repetition of a field: components of subcomponents."""

    __slots__ = ("_codec", "_delimiters", "_parts")

    def __init__(self, parts: Parts, delimiters: Delimiters, codec: str) -> None:
        self._parts = parts
        self._delimiters = delimiters
        self._codec = codec

    def get(self, component: int = 1, subcomponent: int = 1) -> str:
        parts = self._parts
        if component > len(parts) or subcomponent > len(parts[component - 1]):
            return ""
        value = parts[component - 1][subcomponent - 1]
        if value == _NULL:
            return ""
        return self._delimiters.unescape(value, self._codec).strip()

    def subcomponents(self, component: int = 1) -> list[str]:
        count = len(self._parts[component - 1]) if component <= len(self._parts) else 0
        return [self.get(component, n) for n in range(1, count + 1)]

    def shifted(self, count: int) -> Composite:
        """The same repetition without its first ``count`` components."""
        return Composite(self._parts[count:], self._delimiters, self._codec)

    def text(self) -> str:
        """The whole repetition as one text, delimiters it contained put back."""
        d = self._delimiters
        return d.component.join(
            d.subcomponent.join(d.unescape(v, self._codec) for v in part if v != _NULL) for part in self._parts
        ).strip()

    def __bool__(self) -> bool:
        for part in self._parts:
            for value in part:
                if _valued(value):
                    return True
        return False


class Segment:
    """One segment; ``sequence`` counts segments of the same id, from 1."""

    __slots__ = ("_codec", "_delimiters", "_fields", "_seen", "name", "sequence")

    def __init__(self, fields: hl7.Segment, sequence: int, delimiters: Delimiters, codec: str) -> None:
        self._fields = fields
        self.name: str = str(fields[0][0])
        self.sequence = sequence
        self._delimiters = delimiters
        self._codec = codec
        self._seen: dict[int, tuple[Composite, ...]] = {}  # mappings read a field several times

    def repetitions(self, field: int) -> tuple[Composite, ...]:
        """The field's non-empty repetitions."""
        found = self._seen.get(field)
        if found is None:
            found = self._seen[field] = self._read(field)
        return found

    def _read(self, field: int) -> tuple[Composite, ...]:
        if not 0 < field < len(self._fields):
            return ()
        reps = []
        for rep in self._fields[field]:
            if isinstance(rep, str):  # python-hl7 keeps a value without delimiters as a str
                if _valued(rep):
                    reps.append(Composite([[rep]], self._delimiters, self._codec))
                continue
            composite = Composite(_parts(rep), self._delimiters, self._codec)
            if composite:
                reps.append(composite)
        return tuple(reps)

    def first(self, field: int) -> Composite:
        reps = self._seen.get(field)
        if reps is None:
            reps = self.repetitions(field)
        return reps[0] if reps else _EMPTY

    def get(self, field: int, component: int = 1, subcomponent: int = 1) -> str:
        """First repetition's value, unescaped; ``""`` when absent."""
        return self.first(field).get(component, subcomponent)

    def text(self, field: int, separator: str = "\n") -> str:
        """All repetitions of a text field (TX, FT), each unescaped whole."""
        return separator.join(rep.text() for rep in self.repetitions(field)).strip()

    def location(self, field: int | None = None, component: int | None = None) -> ErrorLocation:
        return ErrorLocation(self.name, self.sequence, field, None, component)

    def __repr__(self) -> str:
        return f"<Segment {self.name}[{self.sequence}]>"


def _valued(value: str) -> bool:
    return bool(value) and value != _NULL and not value.isspace()


def _parts(rep: hl7.Repetition) -> Parts:
    return [[c] if isinstance(c, str) else list(c) for c in rep]


_EMPTY = Composite([], Delimiters(), "utf-8")


@dataclass(frozen=True, slots=True)
class Hl7Message:
    header: MessageHeader
    segments: tuple[Segment, ...]
    text: str  # decoded, segments separated by \r

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)


def normalize(text: str) -> str:
    """Segments separated by \\r only; blank lines and outer whitespace dropped."""
    lines = re.split(r"\r\n|\r|\n", text.strip())
    return "\r".join(line for line in lines if line.strip())


def parse_message(
    raw: bytes,
    *,
    versions: Collection[str] = SUPPORTED_VERSIONS,
    processing_id: str | None = None,
    default_charset: str = "utf-8",
) -> Hl7Message:
    """Decode, split and check one message; raises a :class:`Rejected` error for AR."""
    decoded = decode(raw, default_charset)
    text = normalize(decoded.text)
    header = read_header(text, decoded.codec)
    if text.count("\rMSH" + header.delimiters.field):
        raise NotHl7("input holds more than one message; send one message per frame")
    check_header(header, versions, processing_id)
    return Hl7Message(header, _segments(text, header.delimiters, decoded.codec), text)


def _segments(text: str, delimiters: Delimiters, codec: str) -> tuple[Segment, ...]:
    try:
        parsed = hl7.parse(text)
    except (hl7.ParseException, ValueError, IndexError) as exc:
        raise NotHl7(f"python-hl7 cannot split the message: {exc}") from exc
    counts: dict[str, int] = {}
    segments: list[Segment] = []
    for fields in parsed:
        name = str(fields[0][0])
        if not _SEGMENT_ID.match(name):
            raise NotHl7(
                f"segment {len(segments) + 1} has no valid segment id: {name[:20]!r}",
                location=ErrorLocation(name[:3] or "MSH", 1),
            )
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(fields, counts[name], delimiters, codec))
    return tuple(segments)
