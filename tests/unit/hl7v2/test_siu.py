"""SIU^S12 → ScheduleConsultation: which order, and when."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from huizhen.integration.commands import ScheduleConsultation
from huizhen.integration.model import Identifier
from huizhen.mappings.hl7v2.context import MappingContext, MappingResult
from huizhen.mappings.hl7v2.errors import MappingError

from .conftest import corpus, map_raw, message, segment

SIU = "SIU^S12^SIU_S12"
PID = "PID|1||0001234^^^QSWSY^MR||张^三"


def schedule(result: MappingResult) -> ScheduleConsultation:
    (command,) = result.commands
    assert isinstance(command, ScheduleConsultation)
    return command


def test_chinese_booking_by_placer_order_number(context: MappingContext) -> None:
    sch = segment("SCH", {1: "APT88^QSWSY", 11: "^^30^20240305140000", 26: "HZ20240301007^QSWSY"})
    tq1 = segment("TQ1", {1: "1", 7: "20240305150000+0800", 8: "20240305153000+0800"})
    command = schedule(map_raw(message(sch, tq1, PID, type=SIU), context))
    assert command.order == Identifier("QSWSY", "HZ20240301007")  # SCH-26 before SCH-1
    east8 = timezone(timedelta(hours=8))
    assert command.start == datetime(2024, 3, 5, 15, tzinfo=east8)  # TQ1-7 before SCH-11
    assert command.end == datetime(2024, 3, 5, 15, 30, tzinfo=east8)
    assert command.appointment == (Identifier("QSWSY", "APT88"),)


def test_corpus_v28_booking_with_tq1(context: MappingContext) -> None:
    command = schedule(map_raw(corpus("SIU-S12-01.hl7"), context))
    assert command.order == Identifier("GHHSFacility", "12345")  # SCH-1, MSH-4 as system
    assert command.start == datetime(2021, 9, 24, 9, 30, tzinfo=timezone(timedelta(hours=2, minutes=15)))
    assert command.end is not None and command.end - command.start == timedelta(minutes=50)


def test_corpus_v23_booking_with_sch11_in_local_time(context: MappingContext) -> None:
    command = schedule(map_raw(corpus("sample-v2.3-siu-s12-1.hl7"), context))
    assert command.start == datetime(2011, 6, 17, 8, 45, tzinfo=context.timezone)
    assert command.end == datetime(2011, 6, 17, 9, 30, tzinfo=context.timezone)


def test_start_from_a_resource_segment(context: MappingContext) -> None:
    sch = segment("SCH", {1: "HZ1^QSWSY"})
    ais = segment("AIS", {1: "1", 3: "CONSULT^远程会诊^L", 4: "20240306090000"})
    command = schedule(map_raw(message(sch, PID, "RGS|1", ais, type=SIU), context))
    assert command.start == datetime(2024, 3, 6, 9, tzinfo=context.timezone)
    assert command.end is None


def test_rebooking_maps_too(context: MappingContext) -> None:
    sch = segment("SCH", {1: "HZ1^QSWSY", 11: "^^^20240307090000"})
    command = schedule(map_raw(message(sch, type="SIU^S13^SIU_S12"), context))
    assert command.start.day == 7


@pytest.mark.parametrize(
    ("sch", "field"),
    [(segment("SCH", {11: "^^^20240307090000"}), 26), (segment("SCH", {1: "HZ1"}), 11)],
)
def test_booking_without_order_or_start(sch: str, field: int, context: MappingContext) -> None:
    with pytest.raises(MappingError) as caught:
        map_raw(message(sch, type=SIU), context)
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.field == field
