"""DIMSE status codes Huizhen answers with (PS3.7 Annex C, PS3.4 B.2.3 and C.4), defined once."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    SUCCESS = 0x0000
    CANCEL = 0xFE00
    PENDING = 0xFF00
    # warnings
    SUB_OPERATIONS_WARNING = 0xB000  # C-MOVE/C-GET: some sub-operations failed
    RESPONSE_LIMIT = 0xB001  # C-FIND: matching reached the response limit
    # failures
    NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.2: refused, the policy gives the peer's facility no such right
    OUT_OF_RESOURCES = 0xA700  # the object store or the index cannot take the instance now
    UNABLE_TO_CALCULATE_MATCHES = 0xA701  # C-MOVE/C-GET: the index did not answer
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_MISMATCH = 0xA900  # C-FIND/C-MOVE/C-GET identifier not valid for the SOP class
    CANNOT_UNDERSTAND = 0xC000  # C-STORE: unreadable or incomplete dataset
    UNABLE_TO_PROCESS = 0xC001  # Q/R: the query could not be run


def describe(status: int) -> str:
    """``0xA700 OUT_OF_RESOURCES``: how a status is journaled and logged."""
    try:
        return f"0x{status:04X} {Status(status).name}"
    except ValueError:
        return f"0x{status:04X}"
