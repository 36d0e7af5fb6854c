"""The registry finds a mapper by MSH-9 and refuses what it does not know."""

from __future__ import annotations

import pytest

from huizhen.mappings.hl7v2.context import MappingContext, MappingResult
from huizhen.mappings.hl7v2.errors import UnsupportedMessageType
from huizhen.mappings.hl7v2.parse import Hl7Message, parse_message
from huizhen.mappings.hl7v2.registry import MapperRegistry, default_mappers, default_registry
from huizhen.mappings.hl7v2.tables import AckCode, ErrorCode

from .conftest import corpus, message


def test_default_message_types() -> None:
    assert default_registry().message_types() == [
        "ACK",
        "ADT^A01",
        "ADT^A03",
        "ADT^A04",
        "ADT^A05",
        "ADT^A08",
        "ADT^A28",
        "ADT^A31",
        "ADT^A40",
        "OMG^O19",
        "ORM^O01",
        "ORU^R01",
        "REF^I12",
        "SIU^S12",
        "SIU^S13",
        "SIU^S14",
    ]


def test_each_call_builds_its_own_registry() -> None:
    assert default_registry() is not default_registry()
    mappers = default_mappers()
    mappers.clear()
    assert default_registry().message_types()  # nothing shared to corrupt


def test_unknown_event_of_a_known_type_is_201() -> None:
    header = parse_message(corpus("adt_a24_v24_custom_delimiters.hl7")).header
    with pytest.raises(UnsupportedMessageType) as caught:
        default_registry().lookup(header)
    assert caught.value.ack_code is AckCode.AR
    assert caught.value.detail.code is ErrorCode.UNSUPPORTED_EVENT_CODE
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.component == 2


def test_unknown_type_is_200() -> None:
    header = parse_message(corpus("VXU.hl7")).header
    with pytest.raises(UnsupportedMessageType) as caught:
        default_registry().lookup(header)
    assert caught.value.detail.code is ErrorCode.UNSUPPORTED_MESSAGE_TYPE
    assert "VXU^V04" in caught.value.detail.text


def test_lookup_ignores_case_and_a_custom_mapper_can_be_added(context: MappingContext) -> None:
    def map_vaccination(message: Hl7Message, context: MappingContext) -> MappingResult:
        return MappingResult(filtered="vaccinations are not consultations")

    registry = MapperRegistry({**default_mappers(), ("VXU", "V04"): map_vaccination})
    result = registry.map(parse_message(corpus("VXU.hl7")), context)
    assert result.filtered == "vaccinations are not consultations"
    header = parse_message(message("PID|1||A", type="adt^a01")).header
    assert registry.lookup(header) is default_mappers()[("ADT", "A01")]
