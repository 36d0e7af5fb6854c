"""Bytes → a parsed HL7 v2 message: charset, split, typed access.

The split follows python-hl7's rules exactly (its tolerance of real-world
messages is why it was chosen: Z-segments, missing fields, components beyond
the standard), but lazily: a segment is cut into field texts when the message
is parsed, and a field into repetitions, components and subcomponents only
when a mapping reads it. python-hl7 builds every container of every field up
front, which measured as the largest single cost of the ingest path (0.6 ms of
an ORU^R01 with 10 OBX), while a mapping reads a few dozen fields.
``tests/unit/hl7v2/test_parse_split.py`` holds this split against python-hl7's.

:class:`Segment` and :class:`Composite` give mappings one regular, 1-based view
that returns unescaped, stripped text and treats the HL7 null ``""`` as empty.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

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
        d = self._delimiters
        # most values hold no escape: skip the call (this is the innermost loop of every mapping)
        return (d.unescape(value, self._codec) if d.escape in value else value).strip()

    def single(self) -> str | None:
        """The repetition's one value as sent, when it holds one without escapes (else ``None``):
        a key under which readers of plain values may remember what they made of it."""
        parts = self._parts
        if len(parts) == 1 and len(parts[0]) == 1 and self._delimiters.escape not in parts[0][0]:
            return parts[0][0]
        return None

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

    __slots__ = ("_codec", "_delimiters", "_fields", "_literal", "_seen", "name", "sequence")

    def __init__(self, line: str, sequence: int, delimiters: Delimiters, codec: str) -> None:
        self._fields, self._literal, self.name = _split_segment(line, delimiters)
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
        text, d, codec = self._fields[field], self._delimiters, self._codec
        if not text:
            return ()
        # MSH-1 and MSH-2 hold the delimiters themselves; most other fields hold one plain value
        if field < self._literal or not (
            d.repetition in text or d.component in text or d.subcomponent in text
        ):
            return (Composite([[text]], d, codec),) if text != _NULL and not text.isspace() else ()
        reps = []
        for rep in text.split(d.repetition):
            composite = Composite([c.split(d.subcomponent) for c in rep.split(d.component)], d, codec)
            if composite:
                reps.append(composite)
        return tuple(reps)

    def first(self, field: int) -> Composite:
        reps = self._seen.get(field)
        if reps is None:
            reps = self._seen[field] = self._read(field)
        return reps[0] if reps else _EMPTY

    def get(self, field: int, component: int = 1, subcomponent: int = 1) -> str:
        """First repetition's value, unescaped; ``""`` when absent."""
        reps = self._seen.get(field)
        if reps is None:
            reps = self._seen[field] = self._read(field)
        return reps[0].get(component, subcomponent) if reps else ""

    def plain(self, field: int) -> str | None:
        """The field as sent when it holds no escape sequence (else ``None``; ``""`` when absent):
        with the delimiters, a key under which readers of a value sent over and over (OBX-3) may
        remember what they made of it, as :meth:`Composite.single` is for one plain value."""
        text = self._fields[field] if 0 < field < len(self._fields) else ""
        return None if self._delimiters.escape in text else text

    @property
    def delimiters(self) -> Delimiters:
        return self._delimiters

    def text(self, field: int, separator: str = "\n") -> str:
        """All repetitions of a text field (TX, FT), each unescaped whole."""
        return separator.join(rep.text() for rep in self.repetitions(field)).strip()

    def location(self, field: int | None = None, component: int | None = None) -> ErrorLocation:
        return ErrorLocation(self.name, self.sequence, field, None, component)

    def __repr__(self) -> str:
        return f"<Segment {self.name}[{self.sequence}]>"


_HEADER_SEGMENTS = ("MSH", "BHS", "FHS")


def _split_segment(line: str, d: Delimiters) -> tuple[list[str], int, str]:
    """Field texts, how many leading fields are literal, and the segment id, as python-hl7 has them.

    Its quirks are kept on purpose, since they decide what is accepted: a line
    without any delimiter is one field whose "id" is its first character; a
    line starting MSH/BHS/FHS takes its own fourth character as the field
    separator of MSH-1 and MSH-2, which stay literal; the id is the first
    repetition of field 0.
    """
    if not (d.field in line or d.repetition in line or d.component in line or d.subcomponent in line):
        return [line], 1, line[0]
    if line[:3] in _HEADER_SEGMENTS:
        own = line[3]
        end = line.find(own, 4)
        rest = line[end + 1 :]
        return [line[:3], own, line[4:end], *(rest.split(d.field) if rest else ())], 3, line[:3]
    fields = line.split(d.field)
    return fields, 0, fields[0].split(d.repetition, 1)[0]


def _valued(value: str) -> bool:
    return bool(value) and value != _NULL and not value.isspace()


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
    text = text.strip()
    # the usual message holds no \n: a plain split, not the regular expression's
    lines = text.split("\r") if "\n" not in text else _LINE_BREAKS.split(text)
    return "\r".join(line for line in lines if line.strip())


_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


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
    counts: dict[str, int] = {}
    segments: list[Segment] = []
    for line in text.split("\r"):
        segment = Segment(line, 0, delimiters, codec)
        name = segment.name
        if not _SEGMENT_ID.match(name):
            raise NotHl7(
                f"segment {len(segments) + 1} has no valid segment id: {name[:20]!r}",
                location=ErrorLocation(name[:3] or "MSH", 1),
            )
        segment.sequence = counts[name] = counts.get(name, 0) + 1
        segments.append(segment)
    return tuple(segments)
