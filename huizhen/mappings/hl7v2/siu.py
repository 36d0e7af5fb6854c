"""SIU^S12 (and S13/S14 rebook/modify) → the consultation's scheduled time.

The consultation is found by the placer order number the booking carries
(SCH-26), else by the placer appointment id (SCH-1), which HIS that book a
consultation directly fill with the order number. The start is TQ1-7 (v2.5+),
else SCH-11.4 (TQ start), else the first resource's start (AIS/AIG/AIL/AIP).
"""

from __future__ import annotations

from datetime import datetime

from huizhen.integration.commands import ScheduleConsultation
from huizhen.integration.model import Identifier

from .context import MappingContext, MappingResult, Scope
from .datatypes import datetime_at, ei_identifier
from .errors import MappingError
from .parse import Hl7Message, Segment
from .patient import required_segment
from .tables import ErrorCode

# Where each resource segment keeps its start date/time.
_RESOURCE_START = {"AIS": 4, "AIG": 8, "AIL": 6, "AIP": 6}


def map_schedule(message: Hl7Message, context: MappingContext) -> MappingResult:
    scope = Scope(message, context)
    sch = required_segment(message, "SCH")
    order = _order(sch, scope)
    start, end = _timing(message, sch, scope)
    appointment = tuple(
        found for found in (ei_identifier(sch.first(n), scope.default_system) for n in (1, 2)) if found is not None
    )
    return scope.result([ScheduleConsultation(order, start, end, appointment)])


def _order(sch: Segment, scope: Scope) -> Identifier:
    for number in (26, 1):
        found = ei_identifier(sch.first(number), scope.default_system)
        if found is not None:
            return found
    raise MappingError(
        "the booking names no order: SCH-26 and SCH-1 are empty",
        code=ErrorCode.REQUIRED_FIELD_MISSING,
        location=sch.location(26),
    )


def _timing(message: Hl7Message, sch: Segment, scope: Scope) -> tuple[datetime, datetime | None]:
    tz = scope.timezone
    tq1 = message.first("TQ1")
    if tq1 is not None and tq1.get(7):
        return _required(datetime_at(tq1, 7, tz), sch), datetime_at(tq1, 8, tz)
    if sch.get(11, 4):
        return _required(datetime_at(sch, 11, tz, 4), sch), datetime_at(sch, 11, tz, 5)
    for segment in message:
        number = _RESOURCE_START.get(segment.name)
        if number is not None and segment.get(number):
            return _required(datetime_at(segment, number, tz), sch), None
    return _required(None, sch), None


def _required(start: datetime | None, sch: Segment) -> datetime:
    if start is None:
        raise MappingError(
            "the booking has no start time (TQ1-7, SCH-11.4 or a resource start)",
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            location=sch.location(11, 4),
        )
    return start
