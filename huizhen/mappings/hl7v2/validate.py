"""Strict structural validation with hl7apy, for senders configured to be validated.

hl7apy is about 30 times slower than the python-hl7 hot path, so this runs only
where a channel asks for it. Its validator stops at the first error unless it
writes a report file, so the report goes to a temporary directory and is read
back as a list of problems.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

from .errors import ErrorDetail
from .parse import Hl7Message
from .tables import ErrorCode, Severity

# hl7apy fails in plain Python errors on some malformed input, too.
_HL7APY_FAILURES = (HL7apyException, ValueError, KeyError, IndexError, AttributeError, TypeError)


def validate_structure(message: Hl7Message) -> list[ErrorDetail]:
    """The problems hl7apy finds against the message's own version; ``[]`` when valid."""
    try:
        parsed = parse_message(message.text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    except _HL7APY_FAILURES as exc:
        return [ErrorDetail(ErrorCode.SEGMENT_SEQUENCE_ERROR, f"hl7apy cannot parse: {exc}")]
    with tempfile.TemporaryDirectory(prefix="huizhen-hl7apy-") as folder:
        report = Path(folder) / "report.txt"
        try:
            Validator.validate(parsed, report_file=str(report))
        except _HL7APY_FAILURES as exc:
            if not report.exists():
                return [ErrorDetail(ErrorCode.APPLICATION_INTERNAL_ERROR, f"hl7apy: {exc}")]
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    return [_problem(line) for line in lines if line.strip()]


def _problem(line: str) -> ErrorDetail:
    kind, _, text = line.partition(": ")
    severity = Severity.WARNING if kind == "Warning" else Severity.ERROR
    if "not in table" in text:
        code = ErrorCode.TABLE_VALUE_NOT_FOUND
    elif "max length" in text:
        code = ErrorCode.VALUE_TOO_LONG
    elif text.startswith("Missing required"):
        code = ErrorCode.REQUIRED_FIELD_MISSING
    elif text.startswith("Datatype"):
        code = ErrorCode.DATA_TYPE_ERROR
    else:
        code = ErrorCode.SEGMENT_SEQUENCE_ERROR
    return ErrorDetail(code, text or line, severity)
