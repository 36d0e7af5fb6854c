"""Message type and trigger event → mapper; built by a function, never at import."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .acknowledgement import ACK_TYPE, map_acknowledgement
from .adt import PERSON_EVENTS, VISIT_EVENTS, map_admit_visit, map_discharge, map_merge, map_person
from .context import Mapper, MappingContext, MappingResult
from .errors import ErrorLocation, UnsupportedMessageType
from .header import MessageHeader
from .orders import map_orders
from .oru import map_results
from .parse import Hl7Message
from .referral import map_referral
from .siu import map_schedule
from .tables import ErrorCode

MessageKey = tuple[str, str]  # (MSH-9.1, MSH-9.2): ("ADT", "A01"); ("ACK", ANY_EVENT) for every trigger
ANY_EVENT = "*"


class MapperRegistry:
    def __init__(self, mappers: Mapping[MessageKey, Mapper]) -> None:
        self._mappers = dict(mappers)

    def lookup(self, header: MessageHeader) -> Mapper:
        """The mapper for MSH-9; :class:`UnsupportedMessageType` (AR) when there is none."""
        key = (header.message_type.upper(), header.trigger_event.upper())
        mapper = self._mappers.get(key) or self._mappers.get((key[0], ANY_EVENT))
        if mapper is None:
            known_type = any(t == key[0] for t, _ in self._mappers)
            raise UnsupportedMessageType(
                f"message type {header.message_code} is not handled",
                code=ErrorCode.UNSUPPORTED_EVENT_CODE if known_type else ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                location=ErrorLocation("MSH", 1, 9, None, 2 if known_type else 1),
            )
        return mapper

    def map(self, message: Hl7Message, context: MappingContext) -> MappingResult:
        return self.lookup(message.header)(message, context)

    def message_types(self) -> list[str]:
        return sorted(t if e == ANY_EVENT else f"{t}^{e}" for t, e in self._mappers)


def default_mappers() -> dict[MessageKey, Mapper]:
    mappers: dict[MessageKey, Mapper] = {}
    mappers.update(_each("ADT", VISIT_EVENTS, map_admit_visit))
    mappers.update(_each("ADT", PERSON_EVENTS, map_person))
    mappers[("ADT", "A03")] = map_discharge
    mappers[("ADT", "A40")] = map_merge
    mappers[("ORU", "R01")] = map_results
    mappers[("ORM", "O01")] = map_orders
    mappers[("OMG", "O19")] = map_orders
    mappers[("REF", "I12")] = map_referral
    mappers.update(_each("SIU", ("S12", "S13", "S14"), map_schedule))
    mappers[(ACK_TYPE, ANY_EVENT)] = map_acknowledgement
    return mappers


def default_registry() -> MapperRegistry:
    return MapperRegistry(default_mappers())


def _each(kind: str, events: Iterable[str], mapper: Mapper) -> dict[MessageKey, Mapper]:
    return {(kind, event): mapper for event in events}
