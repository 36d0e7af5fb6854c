"""The HL7 v2 exception tree, and the ERR details each error carries.

    BadInput (huizhen.integration.errors)
    └── Hl7Error                 an inbound HL7 v2 message that cannot be taken as it is
        ├── Rejected             refused as a whole: ACK AR (CR in enhanced mode)
        │   ├── NotHl7           no MSH segment, or not a single HL7 v2 message at all
        │   ├── MalformedHeader  an MSH that cannot be used (encoding characters, required field)
        │   ├── CharsetError     MSH-18 unknown, or bytes that do not decode in it
        │   ├── UnsupportedVersion      MSH-12 outside the accepted set (ERR 203)
        │   ├── UnsupportedMessageType  MSH-9 that no mapper handles (ERR 200 / 201)
        │   └── WrongProcessingId       MSH-11 other than the channel expects (ERR 202)
        └── MappingError         a field that cannot be mapped: journaled, ACK AE

Every error carries an :class:`ErrorDetail` (table 0357 code, severity, location,
text), which the ACK builder turns into an ERR segment: the engine catches
``Hl7Error`` once and answers ``build_ack(header, exc.ack_code, [exc.detail])``.
"""

from __future__ import annotations

from dataclasses import dataclass

from huizhen.integration.errors import BadInput

from .tables import AckCode, ErrorCode, Severity


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """HL7 ERL (ERR-2): where in the message the problem is; positions are 1-based."""

    segment_id: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        text = self.segment_id if self.sequence == 1 else f"{self.segment_id}[{self.sequence}]"
        positions: list[str] = []
        for position in (self.field, self.component, self.subcomponent):
            if position is None:
                break
            positions.append(str(position))
        return f"{text}-{'.'.join(positions)}" if positions else text


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One ERR segment's worth: what went wrong, how badly, and where."""

    code: ErrorCode
    text: str
    severity: Severity = Severity.ERROR
    location: ErrorLocation | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.text} ({self.code.value} {self.code.text})"


class Hl7Error(BadInput):
    ack_code = AckCode.AE
    default_code = ErrorCode.APPLICATION_INTERNAL_ERROR

    def __init__(
        self,
        text: str,
        *,
        code: ErrorCode | None = None,
        location: ErrorLocation | None = None,
    ) -> None:
        self.detail = ErrorDetail(code or self.default_code, text, Severity.ERROR, location)
        super().__init__(str(self.detail))


class Rejected(Hl7Error):
    ack_code = AckCode.AR


class NotHl7(Rejected):
    default_code = ErrorCode.SEGMENT_SEQUENCE_ERROR


class MalformedHeader(Rejected):
    default_code = ErrorCode.REQUIRED_FIELD_MISSING


class CharsetError(Rejected):
    default_code = ErrorCode.DATA_TYPE_ERROR


class UnsupportedVersion(Rejected):
    default_code = ErrorCode.UNSUPPORTED_VERSION_ID


class UnsupportedMessageType(Rejected):
    default_code = ErrorCode.UNSUPPORTED_MESSAGE_TYPE


class WrongProcessingId(Rejected):
    default_code = ErrorCode.UNSUPPORTED_PROCESSING_ID


class MappingError(Hl7Error):
    ack_code = AckCode.AE
    default_code = ErrorCode.DATA_TYPE_ERROR
