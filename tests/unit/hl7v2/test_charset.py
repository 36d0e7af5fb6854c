"""MSH-18 decides how the bytes decode; undecodable bytes are a typed rejection."""

from __future__ import annotations

import codecs

import pytest

from huizhen.mappings.hl7v2.charset import codec_for, declared_charsets, decode
from huizhen.mappings.hl7v2.errors import CharsetError, Rejected
from huizhen.mappings.hl7v2.parse import parse_message
from huizhen.mappings.hl7v2.tables import AckCode, ErrorCode

from .conftest import corpus, message

PID_ZHANG = "PID|1||P001^^^QSWSY^MR||张^三||19900101|M"


@pytest.mark.parametrize(
    ("charset", "encoding", "family"),
    [
        ("UNICODE UTF-8", "utf-8", "张"),
        ("GB 18030-2000", "gb18030", "张"),
        ("GB2312", "gb2312", "张"),
        ("BIG-5", "big5", "張"),
        ("", "utf-8", "张"),
    ],
)
def test_chinese_name_survives_declared_charset(charset: str, encoding: str, family: str) -> None:
    raw = message(f"PID|1||P001^^^QSWSY^MR||{family}^三", charset=charset, encoding=encoding)
    assert raw.decode(encoding) and family.encode(encoding) in raw
    pid = parse_message(raw).first("PID")
    assert pid is not None
    assert (pid.get(5, 1), pid.get(5, 2)) == (family, "三")


def test_gb2312_label_decodes_gbk_only_characters() -> None:
    # 镕 is outside GB2312; HIS that say GB2312 send it as GBK/GB18030 anyway.
    raw = message("PID|1||P1||朱^镕基", charset="GB2312", encoding="gb18030")
    pid = parse_message(raw).first("PID")
    assert pid is not None and pid.get(5, 2) == "镕基"


def test_iso_ir87_is_iso2022_jp() -> None:
    raw = message("PID|1||P1||山田^太郎", charset="ISO IR87", encoding="iso2022_jp")
    assert b"\x1b$B" in raw  # really ISO 2022 escape sequences on the wire
    pid = parse_message(raw).first("PID")
    assert pid is not None and pid.get(5, 1) == "山田"


def test_iso2022_alternate_in_second_repetition() -> None:
    assert codec_for(("ASCII", "ISO IR87")) == "iso2022_jp"
    assert codec_for(("ISO IR 87",)) == "iso2022_jp"
    assert codec_for(("ISO IR6",)) == "ascii"


def test_latin1_from_8859_1() -> None:
    raw = message("PID|1||P1||MÜLLER^JOSÉ", charset="8859/1", encoding="latin-1")
    pid = parse_message(raw).first("PID")
    assert pid is not None and pid.get(5, 2) == "JOSÉ"


def test_utf16_with_byte_order_mark() -> None:
    text = message(PID_ZHANG, charset="UNICODE UTF-16").decode("utf-8")
    decoded = decode(text.encode("utf-16"))
    assert decoded.codec == "utf-16"
    assert decoded.charsets == ("UNICODE UTF-16",)
    assert "张" in decoded.text


def test_utf8_bom_is_stripped() -> None:
    raw = corpus("ADT01-23.hl7")
    assert raw.startswith(codecs.BOM_UTF8)
    decoded = decode(raw)
    assert decoded.text.startswith("MSH|")


def test_bytes_that_do_not_decode_are_rejected_not_mangled() -> None:
    raw = message(PID_ZHANG, charset="UNICODE UTF-8", encoding="gb18030")
    with pytest.raises(CharsetError) as caught:
        parse_message(raw)
    error = caught.value
    assert isinstance(error, Rejected) and error.ack_code is AckCode.AR
    assert "UNICODE UTF-8" in error.detail.text and "offset" in error.detail.text
    assert error.detail.location is not None and error.detail.location.field == 18


def test_undeclared_charset_uses_the_channel_default() -> None:
    raw = message(PID_ZHANG, encoding="gb18030")
    with pytest.raises(CharsetError):
        parse_message(raw)  # default UTF-8
    pid = parse_message(raw, default_charset="gb18030").first("PID")
    assert pid is not None and pid.get(5, 1) == "张"


def test_ascii_declared_but_non_ascii_sent() -> None:
    with pytest.raises(CharsetError):
        parse_message(message(PID_ZHANG, charset="ASCII"))


def test_unknown_charset_is_table_value_not_found() -> None:
    with pytest.raises(CharsetError) as caught:
        parse_message(message(PID_ZHANG, charset="EBCDIC"))
    assert caught.value.detail.code is ErrorCode.TABLE_VALUE_NOT_FOUND
    assert "EBCDIC" in caught.value.detail.text


def test_declared_charsets_read_with_custom_delimiters() -> None:
    line = "MSH^~|\\&^A^B^C^D^20240101^^ADT~A01^1^P^2.5^^^^^^UNICODE UTF-8|GB 18030-2000"
    assert declared_charsets(line) == ("UNICODE UTF-8", "GB 18030-2000")


def test_corpus_msh18_utf8_declared() -> None:
    decoded = decode(corpus("OUL-R22-01.hl7"))
    assert decoded.charsets == ("UNICODE UTF-8",) and decoded.codec == "utf-8"
