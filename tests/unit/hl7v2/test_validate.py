"""Strict validation with hl7apy, for the senders configured for it."""

from __future__ import annotations

from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.tables import ErrorCode, Severity
from huizhen.mappings.hl7v2.validate import validate_structure

from .conftest import corpus, message


def test_valid_lab_report_has_no_errors() -> None:
    problems = validate_structure(parse_message(corpus("LAB-ORU-1.hl7")))
    assert [p for p in problems if p.severity is Severity.ERROR] == []
    assert any(p.code is ErrorCode.TABLE_VALUE_NOT_FOUND for p in problems)  # PID-30 "NO"


def test_missing_required_segments_are_listed() -> None:
    problems = validate_structure(parse_message(message("PV1|1|I")))
    texts = [p.text for p in problems if p.severity is Severity.ERROR]
    assert any("ADT_A01.EVN" in t for t in texts)
    assert any("ADT_A01.PID" in t for t in texts)
    assert all(p.code is ErrorCode.REQUIRED_FIELD_MISSING for p in problems)


def test_python_hl7_tolerates_what_hl7apy_rejects() -> None:
    parsed = parse_message(corpus("sample-v2.3-oru-r01-2.hl7"))  # Z-segments, ORC-7 missing
    assert parsed.first("ZDR") is not None
    problems = validate_structure(parsed)
    assert any("ORC" in p.text for p in problems if p.severity is Severity.ERROR)


def test_version_hl7apy_does_not_know() -> None:
    parsed = parse_message(message("EVN|A01|20240301", "PID|1||A||B^C", version="2.7.1"))
    (problem,) = validate_structure(parsed)
    assert "hl7apy cannot parse" in problem.text
