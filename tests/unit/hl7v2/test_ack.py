"""ACKs read back with python-hl7: MSA, swapped MSH, the sender's delimiters and charset."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hl7
import pytest

from huizhen.mappings.hl7v2.ack import Outcome, ack_plan, build_ack, fallback_ack, split_acks
from huizhen.mappings.hl7v2.errors import ErrorDetail, ErrorLocation, MappingError, Rejected
from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.tables import AckCode, ErrorCode, Severity

from .conftest import corpus, message

AT = datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone(timedelta(hours=8)))
PID_ERROR = ErrorDetail(ErrorCode.REQUIRED_FIELD_MISSING, "PID-3 is empty", location=ErrorLocation("PID", 1, 3))


def read_back(ack: bytes, encoding: str = "utf-8") -> hl7.Message:
    assert ack.endswith(b"\r")
    return hl7.parse(ack.decode(encoding))


def test_aa_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    inbound = parse_message(message("PID|1||A"))
    ack = read_back(build_ack(inbound.header, AckCode.AA, control_id="ACK0001", timestamp=AT))
    msh = ack.segment("MSH")
    assert [str(msh(n)) for n in (3, 4, 5, 6)] == ["HUIZHEN", "HZ", "HIS", "QSWSY"]
    assert str(msh(7)) == "20240301101530+0800"
    assert str(msh(9)) == "ACK^A01^ACK"
    assert str(msh(10)) == "ACK0001"
    assert (str(msh(11)), str(msh(12))) == ("P", "2.5")
    msa = ack.segment("MSA")
    assert (str(msa(1)), str(msa(2))) == ("AA", "MSG0001")
    with pytest.raises(KeyError):
        ack.segment("ERR")


def test_control_ids_are_new_each_time() -> None:
    header = parse_message(message("PID|1||A")).header
    first = read_back(build_ack(header, AckCode.AA)).segment("MSH")(10)
    second = read_back(build_ack(header, AckCode.AA)).segment("MSH")(10)
    assert str(first) != str(second) and str(first) != "MSG0001"


def test_each_ack_has_its_own_header_values_however_alike_the_headers() -> None:
    """The ACK's MSH is written from parts kept per header shape: nothing of one message's
    header may reach another's ACK (sender, type, version, charset, MSH-10, MSH-13)."""
    shapes = [
        ("HIS|QSWSY", "ADT^A01^ADT_A01", "2.5", "", "A1"),
        ("HIS|QSWSY", "ADT^A01^ADT_A01", "2.5", "", "A2"),  # same shape, another control id
        ("LIS|QSWSY", "ADT^A01^ADT_A01", "2.5", "", "A3"),
        ("HIS|QSWSY", "ADT^A08^ADT_A01", "2.5", "", "A4"),
        ("HIS|QSWSY", "ADT^A01", "2.3", "", "A5"),
        ("HIS|QSWSY", "ADT^A01^ADT_A01", "2.5", "UNICODE UTF-8", "A6"),
    ]
    for sender, type_, version, charset, control_id in shapes * 2:  # twice: the second time from kept parts
        header = parse_message(
            message("PID|1||A", sender=sender, type=type_, version=version, charset=charset, control_id=control_id)
        ).header
        ack = read_back(build_ack(header, AckCode.AA, control_id=f"K{control_id}", timestamp=AT))
        msh = ack.segment("MSH")
        assert [str(msh(n)) for n in (5, 6)] == sender.split("|")
        trigger = type_.split("^")[1]
        assert str(msh(9)) == (f"ACK^{trigger}^ACK" if version != "2.3" else f"ACK^{trigger}")
        assert (str(msh(10)), str(msh(12))) == (f"K{control_id}", version)
        assert (str(msh(18)) if len(msh) > 18 else "") == charset
        assert str(ack.segment("MSA")(2)) == control_id
    with_sequence = parse_message(message("PID|1||A")).header
    fields = list(with_sequence.fields)
    fields[13:14] = ["42"]  # MSH-13, a sequence number: it changes with each message, the ACK has none
    sequenced = type(with_sequence)(with_sequence.delimiters, tuple(fields), with_sequence.codec)
    assert build_ack(sequenced, AckCode.AA, control_id="K", timestamp=AT) == build_ack(
        with_sequence, AckCode.AA, control_id="K", timestamp=AT
    )


def test_one_ack_is_one_frame_and_two_are_two() -> None:
    header = parse_message(message("PID|1||A")).header
    one = build_ack(header, AckCode.AA, timestamp=AT)
    assert split_acks(one) == [one]
    two = build_ack(header, AckCode.CA, timestamp=AT) + one
    assert split_acks(two) == [two[: len(two) - len(one)], one]
    assert split_acks(b"") == []


def test_v25_error_layout_err2_err3_err4_err8() -> None:
    header = parse_message(message("PID|1||A", version="2.5.1")).header
    ack = read_back(build_ack(header, AckCode.AE, [PID_ERROR], timestamp=AT))
    err = ack.segment("ERR")
    assert str(err(1)) == ""
    assert str(err(2)) == "PID^1^3^1"
    assert str(err(3)) == "101^Required field missing^HL70357"
    assert str(err(4)) == "E"
    assert str(err(8)) == "PID-3 is empty"
    assert len(ack.segment("MSA")) == 3  # no MSA-3 from v2.5 on


def test_v24_error_layout_err1_and_msa3() -> None:
    header = parse_message(message("PID|1||A", version="2.4")).header
    ack = read_back(build_ack(header, AckCode.AE, [PID_ERROR], timestamp=AT))
    err = ack.segment("ERR")
    assert len(err) == 2
    assert str(err(1)) == "PID^1^3^101&Required field missing&HL70357"
    assert str(ack.segment("MSA")(3)) == "PID-3 is empty"


def test_v24_several_errors_repeat_err1() -> None:
    header = parse_message(message("PID|1||A", version="2.3")).header
    second = ErrorDetail(ErrorCode.DATA_TYPE_ERROR, "bad", location=ErrorLocation("OBX", 2, 5))
    ack = read_back(build_ack(header, AckCode.AE, [PID_ERROR, second]))
    assert str(ack.segment("MSH")(9)) == "ACK^A01"  # no structure before v2.3.1
    assert [str(r) for r in ack.segment("ERR")(1)] == [
        "PID^1^3^101&Required field missing&HL70357",
        "OBX^2^5^102&Data type error&HL70357",
    ]


def test_one_err_segment_per_error_from_v25_and_warnings_keep_severity() -> None:
    header = parse_message(message("PID|1||A")).header
    warning = ErrorDetail(ErrorCode.TABLE_VALUE_NOT_FOUND, "sex X unknown", Severity.WARNING)
    ack = read_back(build_ack(header, AckCode.AA, [PID_ERROR, warning]))
    errs = ack.segments("ERR")
    assert [str(e(4)) for e in errs] == ["E", "W"]
    assert str(errs[1](2)) == ""  # no location given


def test_custom_delimiters_are_kept() -> None:
    inbound = parse_message(corpus("adt_a24_v24_custom_delimiters.hl7"))
    raw = build_ack(inbound.header, AckCode.AE, [PID_ERROR], timestamp=AT)
    assert raw.startswith(b"MSH^~|\\&^RECEIVING^200^SENDING^200M^")
    ack = read_back(raw)
    assert ack.separators == "\r^|~&" and ack.esc == "\\"
    assert str(ack.segment("MSA")(2)) == "2003582144"
    assert str(ack.segment("MSH")(9)) == "ACK~A24~ACK"
    assert str(ack.segment("ERR")(1)) == "PID~1~3~101&Required field missing&HL70357"


def test_error_text_is_escaped_with_the_message_delimiters() -> None:
    header = parse_message(message("PID|1||A")).header
    detail = ErrorDetail(ErrorCode.DATA_TYPE_ERROR, "a|b^c&d~e\\f")
    raw = build_ack(header, AckCode.AE, [detail])
    assert b"a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f" in raw
    err = parse_message(raw).first("ERR")
    assert err is not None and err.get(8) == "a|b^c&d~e\\f"


def test_charset_echoed_and_bytes_encoded_in_it() -> None:
    raw_in = message("PID|1||A||张^三", charset="GB 18030-2000", encoding="gb18030")
    header = parse_message(raw_in).header
    detail = ErrorDetail(ErrorCode.DATA_TYPE_ERROR, "张三的出生日期无效")
    raw = build_ack(header, AckCode.AE, [detail])
    assert "张三".encode("gb18030") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    ack = read_back(raw, "gb18030")
    assert str(ack.segment("MSH")(18)) == "GB 18030-2000"
    assert str(ack.segment("ERR")(8)) == "张三的出生日期无效"


def test_utf16_ack_for_a_utf16_message() -> None:
    text = message("PID|1||A", charset="UNICODE UTF-16").decode()
    header = parse_message(text.encode("utf-16")).header
    raw = build_ack(header, AckCode.AA)
    assert raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert str(hl7.parse(raw.decode("utf-16")).segment("MSA")(1)) == "AA"


def test_mapping_error_becomes_its_err() -> None:
    header = parse_message(message("PID|1||A")).header
    error = MappingError("OBX-5 'abc' is not a number", location=ErrorLocation("OBX", 3, 5))
    ack = read_back(build_ack(header, error.ack_code, [error.detail]))
    assert str(ack.segment("MSA")(1)) == "AE"
    assert str(ack.segment("ERR")(2)) == "OBX^3^5^1"
    assert str(ack.segment("ERR")(3)(1)(1)) == "102"


@pytest.mark.parametrize(
    "raw",
    [
        corpus("messages_txt_03_bad_bar_p01_three_encoding_chars.hl7"),
        corpus("messages_txt_13_orm_o01_v22.hl7"),
        corpus("example_oml_o21_10_oml_o21_v25_missing_msh7_msh10.hl7"),
        b"\x0bnot hl7 at all\x1c\r",
        b"",
    ],
)
def test_fallback_ack_for_rejected_input(raw: bytes) -> None:
    with pytest.raises(Rejected) as rejected:
        parse_message(raw)
    error = rejected.value.detail
    ack = read_back(fallback_ack(raw, error, timestamp=AT))
    assert str(ack.segment("MSA")(1)) == "AR"
    assert str(ack.segment("MSH")(9)).startswith("ACK")
    assert f"{error.code.value}" in str(ack.segment("ERR"))


def test_fallback_ack_salvages_the_header() -> None:
    raw = corpus("messages_txt_13_orm_o01_v22.hl7")
    ack = read_back(fallback_ack(raw, PID_ERROR, timestamp=AT))
    msh = ack.segment("MSH")
    assert str(msh(12)) == "2.2"
    assert str(ack.segment("MSA")(2)) == str(hl7.parse(raw.decode()).segment("MSH")(10))
    assert str(msh(5)).strip() == "DMCOE"  # the inbound sender, swapped
    assert str(ack.segment("ERR")(1)).startswith("PID^1^3^101")  # v2.2: ERR-1 layout


def test_original_mode_always_answers() -> None:
    header = parse_message(message("PID|1||A")).header
    assert ack_plan(header, Outcome.APPLIED).application is AckCode.AA
    assert ack_plan(header, Outcome.FAILED).application is AckCode.AE
    plan = ack_plan(header, Outcome.REJECTED)
    assert (plan.accept, plan.application) == (None, AckCode.AR)


@pytest.mark.parametrize(
    ("ack_types", "outcome", "accept", "application"),
    [
        ("AL|AL", Outcome.APPLIED, AckCode.CA, AckCode.AA),
        ("AL|NE", Outcome.APPLIED, AckCode.CA, None),
        ("NE|AL", Outcome.FAILED, None, AckCode.AE),
        ("ER|ER", Outcome.APPLIED, None, None),
        ("ER|ER", Outcome.FAILED, None, AckCode.AE),
        ("ER|ER", Outcome.REJECTED, AckCode.CR, None),
        ("SU|SU", Outcome.FAILED, AckCode.CA, None),
        ("SU|SU", Outcome.REJECTED, None, None),
        ("AL|", Outcome.APPLIED, AckCode.CA, AckCode.AA),
    ],
)
def test_enhanced_mode_plan(
    ack_types: str, outcome: Outcome, accept: AckCode | None, application: AckCode | None
) -> None:
    header = parse_message(message("PID|1||A", ack_types=ack_types)).header
    plan = ack_plan(header, outcome)
    assert (plan.accept, plan.application) == (accept, application)


def test_enhanced_mode_ack_asks_for_no_ack_back() -> None:
    header = parse_message(message("PID|1||A", ack_types="AL|AL")).header
    msh = read_back(build_ack(header, AckCode.CA)).segment("MSH")
    assert (str(msh(15)), str(msh(16))) == ("NE", "NE")
    assert str(read_back(build_ack(header, AckCode.CA)).segment("MSA")(1)) == "CA"


def test_split_acks_cuts_an_enhanced_answer_into_its_messages() -> None:
    header = parse_message(message("PID|1||张三", ack_types="AL|AL", charset="GB 18030-2000", encoding="gb18030",
                                   sender="HIS|青山镇卫生院")).header
    accept, application = build_ack(header, AckCode.CA), build_ack(header, AckCode.AE, [PID_ERROR])
    assert split_acks(accept + application) == [accept, application]
    assert split_acks(accept) == [accept]
    assert str(read_back(split_acks(accept + application)[1], "gb18030").segment("MSH")(6)) == "青山镇卫生院"


def test_fallback_ack_keeps_a_chinese_sender_and_drops_an_unknown_charset() -> None:
    raw = message("PID|1||A", sender="HIS|青山镇卫生院", charset="GB 18030-2000", encoding="gb18030", version="2.2")
    ack = read_back(fallback_ack(raw, PID_ERROR), "gb18030")
    assert str(ack.segment("MSH")(6)) == "青山镇卫生院"
    assert str(ack.segment("MSH")(18)) == "GB 18030-2000"
    unknown = message("PID|1||A", charset="EBCDIC")
    with pytest.raises(Rejected) as rejected:
        parse_message(unknown)
    msh = read_back(fallback_ack(unknown, rejected.value.detail)).segment("MSH")
    assert len(msh) < 19  # MSH-18 not echoed: the ACK is plain ASCII
    assert str(msh(10)) != "MSG0001" and str(msh(11)) == "P"
