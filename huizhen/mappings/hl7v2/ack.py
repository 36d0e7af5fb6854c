"""ACK messages, built the way the inbound message was written.

The ACK swaps MSH-3/4 with MSH-5/6, keeps the sender's delimiters, version,
processing id and MSH-18 (and is encoded in that character set), echoes
MSH-10 in MSA-2, and writes each error as an ERR segment in the layout its
version defines: ERR-2..8 from v2.5 on, ERR-1 (with MSA-3 text) before.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from huizhen.integration.model import new_id

from .charset import encode
from .delimiters import Delimiters
from .errors import ErrorDetail, ErrorLocation
from .header import MessageHeader, salvage_header
from .tables import AckCode, AckCondition, version_tuple

HL7_ERROR_TABLE = "HL70357"


class Outcome(enum.Enum):
    """What became of a message, in the engine's terms."""

    APPLIED = "applied"  # committed (or filtered on purpose): AA / CA
    FAILED = "failed"  # journaled, not applied: AE
    REJECTED = "rejected"  # refused whole: AR / CR


@dataclass(frozen=True, slots=True)
class AckPlan:
    """Which acknowledgements to send: ``accept`` (enhanced mode only) and ``application``."""

    accept: AckCode | None
    application: AckCode | None


_ORIGINAL = {Outcome.APPLIED: AckCode.AA, Outcome.FAILED: AckCode.AE, Outcome.REJECTED: AckCode.AR}


def is_enhanced(header: MessageHeader) -> bool:
    """Enhanced mode when MSH-15 or MSH-16 is valued; original mode otherwise."""
    return header.accept_ack is not None or header.application_ack is not None


def ack_plan(header: MessageHeader, outcome: Outcome) -> AckPlan:
    """Original mode: one ACK, always. Enhanced mode: a commit ACK (CA/CR) as MSH-15
    asks and, for an accepted message, an application ACK (AA/AE) as MSH-16 asks.
    A condition left empty in enhanced mode counts as AL."""
    if not is_enhanced(header):
        return AckPlan(None, _ORIGINAL[outcome])
    rejected = outcome is Outcome.REJECTED
    accept = AckCode.CR if rejected else AckCode.CA
    wants_accept = _wanted(header.accept_ack, success=not rejected)
    application = None
    if not rejected:
        code = _ORIGINAL[outcome]
        if _wanted(header.application_ack, success=outcome is Outcome.APPLIED):
            application = code
    return AckPlan(accept if wants_accept else None, application)


def _wanted(condition: AckCondition | None, *, success: bool) -> bool:
    condition = condition or AckCondition.AL
    if condition is AckCondition.ER:
        return not success
    if condition is AckCondition.SU:
        return success
    return condition is AckCondition.AL


def build_ack(
    header: MessageHeader,
    code: AckCode,
    errors: Sequence[ErrorDetail] = (),
    *,
    control_id: str | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """The ACK for ``header``'s message, as bytes in the message's character set."""
    d = header.delimiters
    version = version_tuple(header.version)
    segments = [
        _msh(header, control_id or new_id()[:20], _timestamp(timestamp)),
        _msa(header, code, errors, version),
        *_errs(d, errors, version),
    ]
    return encode("\r".join(segments) + "\r", header.codec)


def fallback_ack(
    raw: bytes,
    error: ErrorDetail,
    *,
    code: AckCode = AckCode.AR,
    control_id: str | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """An ACK (AR by default) for input whose header could not be parsed or was refused."""
    header = salvage_header(raw)
    return build_ack(header, code, [error], control_id=control_id, timestamp=timestamp)


_NEXT_MESSAGE = re.compile(rb"(?<=\r)(?=MSH)")


def split_acks(answer: bytes) -> list[bytes]:
    """The messages of an answer that holds several (enhanced mode: accept, then application ACK).

    Cut where a segment starts with MSH: segment ids are ASCII in every HL7 charset.
    """
    return [part for part in _NEXT_MESSAGE.split(answer) if part]


_clock: tuple[int, str] = (-1, "")  # the last second an ACK was stamped with, and its text


def _timestamp(at: datetime | None) -> str:
    """MSH-7: ``at``, or now in local time (formatted once a second: every ACK is stamped)."""
    global _clock
    if at is not None:
        return at.strftime("%Y%m%d%H%M%S%z")
    second = int(time.time())
    if _clock[0] != second:
        _clock = (second, datetime.fromtimestamp(second).astimezone().strftime("%Y%m%d%H%M%S%z"))
    return _clock[1]


def _msh(header: MessageHeader, control_id: str, timestamp: str) -> str:
    d = header.delimiters
    version = version_tuple(header.version)
    trigger = d.escape_text(header.trigger_event)
    message_type = "ACK"  # MSH-9.3, the structure, exists from v2.3.1 on
    if trigger:
        parts = ("ACK", trigger, "ACK") if version >= (2, 3, 1) else ("ACK", trigger)
        message_type = d.component.join(parts)
    no_ack = "NE" if is_enhanced(header) else ""  # an ACK is never acknowledged
    fields = {
        2: d.encoding_characters,
        3: header.raw(5),  # sender and receiver swap
        4: header.raw(6),
        5: header.raw(3),
        6: header.raw(4),
        7: timestamp,
        9: message_type,
        10: d.escape_text(control_id),
        11: header.raw(11),
        12: header.raw(12),
        15: no_ack,
        16: no_ack,
        18: header.raw(18),
    }
    return _segment(d, "MSH", fields, first=2)


def _msa(header: MessageHeader, code: AckCode, errors: Sequence[ErrorDetail], version: tuple[int, ...]) -> str:
    d = header.delimiters
    fields = {1: code.value, 2: header.raw(10)}
    if errors and version < (2, 5):
        fields[3] = d.escape_text(errors[0].text)  # MSA-3, text message
    return _segment(d, "MSA", fields)


def _errs(d: Delimiters, errors: Sequence[ErrorDetail], version: tuple[int, ...]) -> list[str]:
    if not errors:
        return []
    if version < (2, 5):
        return [_segment(d, "ERR", {1: d.repetition.join(_eld(d, e) for e in errors)})]
    return [_err(d, e) for e in errors]


def _err(d: Delimiters, error: ErrorDetail) -> str:
    """v2.5+: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user message."""
    code = _join(d.component, [str(error.code.value), error.code.text, HL7_ERROR_TABLE])
    fields = {2: _location(d, error.location), 3: code, 4: error.severity.value, 8: d.escape_text(error.text)}
    return _segment(d, "ERR", fields)


def _eld(d: Delimiters, error: ErrorDetail) -> str:
    """v2.3/2.4 ERR-1 (ELD): segment^sequence^field^code&text&table."""
    where = error.location or ErrorLocation("")
    code = _join(d.subcomponent, [str(error.code.value), error.code.text, HL7_ERROR_TABLE])
    position = [where.segment_id, str(where.sequence) if where.segment_id else "", _n(where.field)]
    return _join(d.component, [*position, code])


def _location(d: Delimiters, where: ErrorLocation | None) -> str:
    if where is None:
        return ""
    repetition = where.repetition or (1 if where.field is not None else None)
    parts = [
        where.segment_id,
        str(where.sequence),
        _n(where.field),
        _n(repetition),
        _n(where.component),
        _n(where.subcomponent),
    ]
    return _join(d.component, parts)


def _n(position: int | None) -> str:
    return "" if position is None else str(position)


def _segment(d: Delimiters, name: str, fields: dict[int, str], first: int = 1) -> str:
    """A segment from its fields by position (MSH counts from MSH-2, after MSH-1)."""
    return _join(d.field, [name, *(fields.get(n, "") for n in range(first, max(fields) + 1))])


def _join(separator: str, values: list[str]) -> str:
    """Join, dropping trailing empty values (HL7 omits trailing delimiters)."""
    while values and not values[-1]:
        values = values[:-1]
    return separator.join(values)
