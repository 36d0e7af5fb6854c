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
    msh = _msh(header, control_id or new_id()[:20], _timestamp(timestamp))
    if not errors:  # the usual AA: MSA-1 and MSA-2 alone (MSA-2 dropped when empty, as _segment drops it)
        echo = header.raw(10)
        msa = f"MSA{d.field}{code.value}{d.field}{echo}" if echo else f"MSA{d.field}{code.value}"
        return encode(f"{msh}\r{msa}\r", header.codec)
    version = version_tuple(header.version)
    segments = [msh, _msa(header, code, errors, version), *_errs(d, errors, version)]
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
    if b"\rMSH" not in answer:  # one ACK (original mode): nothing to cut
        return [answer] if answer else []
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
    """The ACK's MSH: what comes from the message's own header is written once per header shape
    (an interface sends the same MSH-3..6, type, version and charset all day; written anew, it was
    most of an ACK's cost), only MSH-7 and MSH-10 each time."""
    f = header.fields
    # everything _msh_parts reads: MSH-1..6, MSH-9 (the trigger), 11, 12 (the version), 15, 16, 18,
    # and the charset that unescapes them; never MSH-7, MSH-10 or MSH-13/14, which change per message
    key = (header.codec, f[1:7], f[9:10], f[11:13], f[15:17], f[18:19])
    parts = _MSH_PARTS.get(key)
    if parts is None:
        if len(_MSH_PARTS) >= _MAX_MSH_PARTS:
            _MSH_PARTS.clear()
        parts = _MSH_PARTS[key] = _msh_parts(header)
    head, middle, tail = parts
    return f"{head}{timestamp}{middle}{header.delimiters.escape_text(control_id)}{tail}"


_MSH_PARTS: dict[tuple[object, ...], tuple[str, str, str]] = {}
_MAX_MSH_PARTS = 1024


def _msh_parts(header: MessageHeader) -> tuple[str, str, str]:
    """The ACK's MSH around MSH-7 and MSH-10: what goes before the timestamp, between it and the
    control id, and after the control id. Neither of the two is ever empty, so the trailing empty
    fields ``_segment`` drops are all after MSH-10: the tail is the rest trimmed alike."""
    d = header.delimiters
    version = version_tuple(header.version)
    trigger = d.escape_text(header.trigger_event)
    message_type = "ACK"  # MSH-9.3, the structure, exists from v2.3.1 on
    if trigger:
        parts = ("ACK", trigger, "ACK") if version >= (2, 3, 1) else ("ACK", trigger)
        message_type = d.component.join(parts)
    no_ack = "NE" if is_enhanced(header) else ""  # an ACK is never acknowledged
    sep = d.field
    head = sep.join(["MSH", d.encoding_characters, header.raw(5), header.raw(6), header.raw(3), header.raw(4)])
    middle = f"{sep}{sep}{message_type}{sep}"  # MSH-8 (security) empty
    after = {11: header.raw(11), 12: header.raw(12), 15: no_ack, 16: no_ack, 18: header.raw(18)}
    tail = _join(sep, ["", *(after.get(n, "") for n in range(11, 19))])  # "" or starting with sep
    return f"{head}{sep}", middle, tail


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
