"""The ORU^R01 report back: parses, validates with hl7apy, echoes the order, keeps Chinese text."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    Facility,
    Gender,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    Urgency,
)
from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.report import ReportParties, build_report
from huizhen.mappings.hl7v2.validate import validate_structure

TZ = ZoneInfo("Asia/Shanghai")


def completed() -> Consultation:
    c = Consultation(patient_id="p", department="心血管内科", urgency=Urgency.URGENT, chief_complaint="胸痛",
                     number="HZ-20261127-0007", disease_code="I20.0", disease_name="不稳定型心绞痛",
                     source_order=Identifier("QSWSY", "HZ-ORD-9"))
    c.status = ConsultationStatus.COMPLETED
    c.completed_at = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
    c.diagnosis = "不稳定型心绞痛|高危"
    c.treatment_plan = "收住院^冠脉造影\n阿司匹林 100mg"
    return c


PARTIES = ReportParties(
    patient=Patient(name=HumanName.of("王", ("大明",)), identifiers=[Identifier("QSWSY", "Q2002")],
                    gender=Gender.MALE, birth_date=date(1962, 1, 1)),
    expert=Practitioner(id="exp1", name=HumanName.of("王", ("建国",))),
    requesting_facility=Facility("QSWSY", "青山镇卫生院"),
)


def test_report_round_trips_and_echoes_the_order() -> None:
    raw = build_report(completed(), PARTIES, tz=TZ, control_id="R1")
    message = parse_message(raw)
    assert message.header.message_code.startswith("ORU^R01") and message.header.control_id == "R1"
    orc, obr = message.first("ORC"), message.first("OBR")
    assert orc is not None and obr is not None
    text = message.text
    assert "ORC|RE|HZ-ORD-9^QSWSY|HZ-20261127-0007^HUIZHEN" in text
    assert "PID|1||Q2002^^^QSWSY||王^大明||19620101|M" in text
    # special characters escaped, Chinese kept, completion time in the local offset
    assert "不稳定型心绞痛\\F\\高危" in text and "收住院\\S\\冠脉造影\\.br\\阿司匹林" in text
    assert "20261127143000+0800" in text


def test_report_is_structurally_valid_v25() -> None:
    problems = validate_structure(parse_message(build_report(completed(), PARTIES, tz=TZ)))
    assert [p for p in problems if p.severity.value == "E"] == []


def test_only_completed_consultations_are_reported() -> None:
    c = completed()
    c.status = ConsultationStatus.IN_PROGRESS
    with pytest.raises(ValueError, match="only COMPLETED"):
        build_report(c, PARTIES, tz=TZ)
