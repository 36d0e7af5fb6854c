"""Parsing: the corpus, delimiters, escapes, separators, and what is rejected whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from huizhen.mappings.hl7v2.errors import (
    MalformedHeader,
    NotHl7,
    Rejected,
    UnsupportedVersion,
    WrongProcessingId,
)
from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.tables import SUPPORTED_VERSIONS, AckCode, AckCondition, ErrorCode

from .conftest import CORPUS, MANIFEST, corpus, message

ACCEPTED = [
    f for f in MANIFEST if f["expected_valid"] and f["version"] in SUPPORTED_VERSIONS and "rsp-k11" not in f["path"]
]


@pytest.mark.parametrize("entry", ACCEPTED, ids=lambda f: Path(f["path"]).name)
def test_corpus_message_parses_with_manifest_facts(entry: dict[str, object]) -> None:
    parsed = parse_message((CORPUS / str(entry["path"])).read_bytes())
    assert parsed.header.version == entry["version"]
    assert len(parsed.segments) == entry["segment_count"]
    expected_type = str(entry["type"]).strip().split("^")[0].split("~")[0]
    assert parsed.header.message_type == expected_type
    pid = parsed.first("PID")
    if entry.get("patient_id", "").strip():
        assert pid is not None and pid.get(3) == entry["patient_id"]
        assert pid.get(5, 1) == entry["family_name"]
    if "obx_count" in entry:
        assert len(parsed.all("OBX")) == entry["obx_count"]


def test_versions_2_1_and_2_2_are_rejected_with_203() -> None:
    for name in ("messages_txt_16_qry_q01_v21.hl7", "messages_txt_13_orm_o01_v22.hl7"):
        with pytest.raises(UnsupportedVersion) as caught:
            parse_message(corpus(name))
        assert caught.value.detail.code is ErrorCode.UNSUPPORTED_VERSION_ID
        assert caught.value.ack_code is AckCode.AR


def test_a_channel_can_accept_older_versions() -> None:
    parsed = parse_message(corpus("messages_txt_13_orm_o01_v22.hl7"), versions={"2.2"})
    assert parsed.header.control_id and parsed.first("ORC") is not None


def test_custom_delimiters_from_msh1_and_msh2() -> None:
    parsed = parse_message(corpus("adt_a24_v24_custom_delimiters.hl7"))
    d = parsed.header.delimiters
    assert (d.field, d.component, d.repetition, d.escape, d.subcomponent) == ("^", "~", "|", "\\", "&")
    assert (parsed.header.message_type, parsed.header.trigger_event) == ("ADT", "A24")
    pid = parsed.all("PID")[1]
    assert pid.sequence == 2
    reps = pid.repetitions(3)
    assert [r.get(1) for r in reps] == ["22222"]
    assert reps[0].get(4, 1) == "FOO" and reps[0].get(4, 3) == "0363"
    assert pid.get(5, 2) == "JOHN"


def test_brace_as_subcomponent_separator() -> None:
    parsed = parse_message(corpus("messages_txt_01_bar_p01_v24_encoding_brace.hl7"))
    assert parsed.header.delimiters.subcomponent == "}"


def test_three_encoding_characters_are_rejected() -> None:
    with pytest.raises(MalformedHeader) as caught:
        parse_message(corpus("messages_txt_03_bad_bar_p01_three_encoding_chars.hl7"))
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.field == 2


def test_missing_control_id_is_rejected() -> None:
    with pytest.raises(MalformedHeader) as caught:
        parse_message(corpus("example_oml_o21_10_oml_o21_v25_missing_msh7_msh10.hl7"))
    assert caught.value.detail.code is ErrorCode.REQUIRED_FIELD_MISSING
    assert "MSH-10" in caught.value.detail.text


def test_broken_segment_line_is_rejected_naming_it() -> None:
    with pytest.raises(NotHl7) as caught:
        parse_message(corpus("sample-v2.5.1-rsp-k11-1.hl7"))
    assert "segment 11" in caught.value.detail.text


@pytest.mark.parametrize("raw", [b"", b"hello world", b"PID|1||123\rMSH|^~\\&|A", b"\x00\x01\x02"])
def test_non_hl7_input_is_rejected(raw: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(raw)
    assert caught.value.ack_code is AckCode.AR


def test_two_messages_in_one_frame_are_rejected() -> None:
    raw = message("PID|1||A") + message("PID|1||B")
    with pytest.raises(NotHl7, match="more than one message"):
        parse_message(raw)


def test_wrong_processing_id() -> None:
    raw = message("PID|1||A", processing_id="T")
    assert parse_message(raw, processing_id="T").header.processing_id == "T"
    with pytest.raises(WrongProcessingId) as caught:
        parse_message(raw, processing_id="P")
    assert caught.value.detail.code is ErrorCode.UNSUPPORTED_PROCESSING_ID


@pytest.mark.parametrize("mode", ["P", "D", "T", "P^T", "T^A"])
def test_any_table_0103_processing_id_is_taken_when_the_channel_names_none(mode: str) -> None:
    assert parse_message(message("PID|1||A", processing_id=mode)).header.processing_id == mode[0]


@pytest.mark.parametrize("mode", ["Z", "X^T", "p"])
def test_a_processing_id_outside_table_0103_is_refused_even_when_the_channel_names_none(mode: str) -> None:
    with pytest.raises(WrongProcessingId, match="table 0103") as caught:
        parse_message(message("PID|1||A", processing_id=mode))
    assert caught.value.detail.code is ErrorCode.UNSUPPORTED_PROCESSING_ID


@pytest.mark.parametrize("separator", [b"\r", b"\n", b"\r\n"])
def test_segment_separators_are_normalised(separator: bytes) -> None:
    raw = message("PID|1||A1||DOE^JOHN", "PV1|1|I").replace(b"\r", separator)
    parsed = parse_message(raw)
    assert [s.name for s in parsed] == ["MSH", "PID", "PV1"]
    assert "\n" not in parsed.text


def test_escape_sequences_are_undone_per_value() -> None:
    raw = message(r"NTE|1||a\F\b\S\c\T\d\R\e\E\f\.br\g\XE5BCA0\h\H\i\N\ \Zlocal\j")
    nte = parse_message(raw).first("NTE")
    assert nte is not None
    assert nte.get(3) == "a|b^c&d~e\\f\ng张hi j"


def test_hex_escape_decodes_in_the_message_charset() -> None:
    raw = message("NTE|1||\\XD5C5\\", charset="GB 18030-2000", encoding="gb18030")
    nte = parse_message(raw).first("NTE")
    assert nte is not None and nte.get(3) == "张"


def test_z_segments_repetitions_and_null() -> None:
    parsed = parse_message(corpus("sample-v2.3-oru-r01-2.hl7"))
    zdr = parsed.first("ZDR")
    assert zdr is not None and zdr.get(2, 2) == "Xavarie"
    obx = parsed.first("OBX")
    assert obx is not None
    assert [r.get(1) for r in obx.repetitions(10)] == ["A", "S"]
    assert obx.get(6) == "10^9/L"  # \S\ in the unit
    null = parse_message(message('PID|1||A||""^JOHN')).first("PID")
    assert null is not None and null.get(5, 1) == "" and null.get(5, 2) == "JOHN"


def test_header_typed_fields() -> None:
    parsed = parse_message(message("PID|1||A", ack_types="AL|ER", charset="UNICODE UTF-8"))
    h = parsed.header
    assert (h.sending_application, h.sending_facility) == ("HIS", "QSWSY")
    assert (h.receiving_application, h.receiving_facility) == ("HUIZHEN", "HZ")
    assert h.sender == "HIS^QSWSY" and h.message_code == "ADT^A01" and h.structure == "ADT_A01"
    assert (h.accept_ack, h.application_ack) == (AckCondition.AL, AckCondition.ER)
    assert h.charsets == ("UNICODE UTF-8",) and h.codec == "utf-8"


def test_hd_universal_id_when_namespace_is_empty() -> None:
    parsed = parse_message(message("PID|1||A", sender="HIS|^2.16.156.1^ISO"))
    assert parsed.header.sending_facility == "2.16.156.1"
