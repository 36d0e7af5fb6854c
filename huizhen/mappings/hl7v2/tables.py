"""HL7 v2 tables this package speaks, defined once.

Each enum is named after its HL7 table so the code reads beside the standard.
"""

from __future__ import annotations

import enum


class AckCode(enum.StrEnum):
    """HL7 table 0008, MSA-1."""

    AA = "AA"  # original mode: application accept
    AE = "AE"  # original mode: application error
    AR = "AR"  # original mode: application reject
    CA = "CA"  # enhanced mode: commit accept
    CE = "CE"  # enhanced mode: commit error
    CR = "CR"  # enhanced mode: commit reject


class AckCondition(enum.StrEnum):
    """HL7 table 0155, MSH-15 / MSH-16."""

    AL = "AL"  # always
    NE = "NE"  # never
    ER = "ER"  # error/reject conditions only
    SU = "SU"  # successful completion only


class ErrorCode(enum.IntEnum):
    """HL7 table 0357, ERR-3 (ERR-1.4 before v2.5)."""

    MESSAGE_ACCEPTED = 0
    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    VALUE_TOO_LONG = 104
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table's display text: ``101`` → ``Required field missing``."""
        return self.name.replace("_", " ").capitalize()


class Severity(enum.StrEnum):
    """HL7 table 0516, ERR-4."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"
    FATAL = "F"


class ProcessingId(enum.StrEnum):
    """HL7 table 0103, MSH-11.1."""

    DEBUGGING = "D"
    PRODUCTION = "P"
    TRAINING = "T"


# MSH-12 values accepted unless a channel configures its own set. v2.1 and v2.2
# predate MSH-9.3, PV1-19 visit numbers and the ERR segment, so they get AR (203).
SUPPORTED_VERSIONS: frozenset[str] = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.5.1"`` → ``(2, 5, 1)``; anything unreadable sorts as ``(0,)``."""
    try:
        return tuple(int(part) for part in version.strip().split("."))
    except ValueError:
        return (0,)
