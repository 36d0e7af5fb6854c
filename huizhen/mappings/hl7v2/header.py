"""The message header (MSH), typed, and the checks that reject a message whole.

The header keeps MSH's fields as they came on the wire so the ACK can echo
them byte for byte; the properties give the unescaped values.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from .charset import codec_for, declared_charsets
from .delimiters import Delimiters
from .errors import (
    CharsetError,
    ErrorLocation,
    MalformedHeader,
    NotHl7,
    UnsupportedVersion,
    WrongProcessingId,
)
from .tables import SUPPORTED_VERSIONS, AckCondition, ProcessingId

_DEFAULT_VERSION = "2.5"


@dataclass(frozen=True, slots=True)
class MessageHeader:
    delimiters: Delimiters
    fields: tuple[str, ...]  # wire text; fields[n] is MSH-n (fields[1] is MSH-1)
    codec: str = "utf-8"  # how the message was decoded; the ACK is encoded alike
    # values already read: the engine, the mapping and the ACK read the same few
    # (sender, control id, type) some two dozen times per message
    _values: dict[tuple[int, int], str] = field(default_factory=dict, compare=False, repr=False)

    def raw(self, number: int) -> str:
        return self.fields[number] if number < len(self.fields) else ""

    def value(self, number: int, component: int = 1) -> str:
        """First repetition's component, unescaped and stripped."""
        found = self._values.get((number, component))
        if found is None:
            d = self.delimiters
            first = self.raw(number).split(d.repetition, 1)[0]
            parts = first.split(d.component)
            part = parts[component - 1] if component <= len(parts) else ""
            found = self._values[(number, component)] = d.unescape(part.split(d.subcomponent, 1)[0], self.codec).strip()
        return found

    def _hd(self, number: int) -> str:
        return self.value(number, 1) or self.value(number, 2)

    @property
    def sending_application(self) -> str:
        return self._hd(3)

    @property
    def sending_facility(self) -> str:
        return self._hd(4)

    @property
    def receiving_application(self) -> str:
        return self._hd(5)

    @property
    def receiving_facility(self) -> str:
        return self._hd(6)

    @property
    def sender(self) -> str:
        """``MSH-3^MSH-4``: with MSH-10, the key that finds a duplicate."""
        return f"{self.sending_application}^{self.sending_facility}"

    @property
    def message_type(self) -> str:
        return self.value(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.value(9, 2)

    @property
    def structure(self) -> str:
        return self.value(9, 3)

    @property
    def message_code(self) -> str:
        """``ADT^A01``, as journaled."""
        return f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type

    @property
    def control_id(self) -> str:
        return self.value(10)

    @property
    def processing_id(self) -> str:
        return self.value(11, 1)

    @property
    def version(self) -> str:
        return self.value(12, 1)

    @property
    def accept_ack(self) -> AckCondition | None:
        return _condition(self.value(15))

    @property
    def application_ack(self) -> AckCondition | None:
        return _condition(self.value(16))

    @property
    def charsets(self) -> tuple[str, ...]:
        """MSH-18's repetitions: the default set, then ISO 2022 alternates."""
        return tuple(v.strip() for v in self.raw(18).split(self.delimiters.repetition) if v.strip())


def _condition(value: str) -> AckCondition | None:
    # An unknown condition is read as AL: acknowledging too often is the safe error.
    if not value:
        return None
    return AckCondition.__members__.get(value.upper(), AckCondition.AL)


def read_header(text: str, codec: str = "utf-8") -> MessageHeader:
    """Split the MSH line of a decoded message; raises if there is none."""
    if not text.startswith("MSH") or len(text) < 8:
        raise NotHl7("input does not start with an MSH segment", location=ErrorLocation("MSH"))
    line = text.split("\r", 1)[0]
    separator = line[3]
    parts = line.split(separator)
    delimiters = Delimiters.from_msh(separator, parts[1])
    return MessageHeader(delimiters, ("MSH", separator, *parts[1:]), codec)


PROCESSING_IDS = frozenset("PDT")  # HL7 table 0103: production, debugging, training


def check_header(
    header: MessageHeader,
    versions: Collection[str] = SUPPORTED_VERSIONS,
    processing_id: str | None = None,
) -> None:
    """Reject what no mapping should see: a missing key field, a version or mode we refuse."""
    for number, name in ((9, "message type"), (10, "message control id"), (11, "processing id")):
        if not header.value(number):
            raise MalformedHeader(f"MSH-{number} ({name}) is empty", location=ErrorLocation("MSH", 1, number))
    if header.version not in versions:
        raise UnsupportedVersion(
            f"HL7 version {header.version or '(empty)'} is not accepted; accepted: {', '.join(sorted(versions))}",
            location=ErrorLocation("MSH", 1, 12),
        )
    if header.processing_id not in PROCESSING_IDS:
        raise WrongProcessingId(
            f"processing id {header.processing_id!r} is not one of HL7 table 0103 (P, D, T)",
            location=ErrorLocation("MSH", 1, 11),
        )
    if processing_id and header.processing_id != processing_id:
        raise WrongProcessingId(
            f"processing id {header.processing_id} where this channel expects {processing_id}",
            location=ErrorLocation("MSH", 1, 11),
        )


def salvage_header(raw: bytes) -> MessageHeader:
    """Best effort for the ACK of input that failed to parse; never raises.

    The MSH line is decoded by its own MSH-18 where that names a known set (so a
    Chinese MSH-4 echoes intact), MSH-18 is dropped from the echo where it does
    not, and missing key fields get defaults so the ACK is still well formed.
    """
    start = raw.find(b"MSH")
    line = re.split(rb"[\r\n]", raw[start:] if start >= 0 else b"", maxsplit=1)[0]
    try:
        codec, known = codec_for(declared_charsets(line.decode("latin-1"))), True
    except CharsetError:
        codec, known = "ascii", False
    text = line.decode(codec, errors="replace")
    separator = text[3] if len(text) > 3 and not text[3].isalnum() else "|"
    parts = text.split(separator) if len(text) > 3 else ["MSH"]
    try:
        delimiters = Delimiters.from_msh(separator, parts[1] if len(parts) > 1 else "")
    except MalformedHeader:
        delimiters = Delimiters(field=separator) if separator not in "^~\\&" else Delimiters()
    fields = ["MSH", separator, delimiters.encoding_characters, *parts[2:]]
    fields += [""] * (13 - len(fields))
    fields[11] = fields[11] or ProcessingId.PRODUCTION.value
    fields[12] = fields[12] if fields[12].strip() else _DEFAULT_VERSION
    return MessageHeader(delimiters, tuple(fields if known else fields[:18]), codec)
