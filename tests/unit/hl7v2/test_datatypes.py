"""Data type readers and the escape rules, value by value."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from huizhen.mappings.hl7v2.datatypes import coding_system, parse_date, parse_dtm
from huizhen.mappings.hl7v2.delimiters import Delimiters
from huizhen.mappings.hl7v2.errors import MalformedHeader

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240301101530+0800", datetime(2024, 3, 1, 10, 15, 30, tzinfo=timezone(timedelta(hours=8)))),
        ("20190423150137+0215", datetime(2019, 4, 23, 15, 1, 37, tzinfo=timezone(timedelta(hours=2, minutes=15)))),
        ("20110103143428-0800", datetime(2011, 1, 3, 14, 34, 28, tzinfo=timezone(timedelta(hours=-8)))),
        ("20240301-0030", datetime(2024, 3, 1, tzinfo=timezone(-timedelta(minutes=30)))),
        ("20240301101530.25", datetime(2024, 3, 1, 10, 15, 30, 250000, tzinfo=SHANGHAI)),
        ("202403011015", datetime(2024, 3, 1, 10, 15, tzinfo=SHANGHAI)),
        ("2024", datetime(2024, 1, 1, tzinfo=SHANGHAI)),
    ],
)
def test_dtm(value: str, expected: datetime) -> None:
    parsed = parse_dtm(value, SHANGHAI)
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("value", ["2024-03-01", "20241301", "2024030", "abc", "20240230"])
def test_dtm_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_dtm(value, SHANGHAI)


def test_partial_dates() -> None:
    assert parse_date("19900101") == (date(1990, 1, 1), False)
    assert parse_date("199006") == (date(1990, 6, 1), True)
    assert parse_date("198808181126+0215") == (date(1988, 8, 18), False)
    with pytest.raises(ValueError):
        parse_date("00000000")


def test_coding_systems() -> None:
    assert coding_system("LN") == "http://loinc.org"
    assert coding_system("I10") == "http://hl7.org/fhir/sid/icd-10"
    assert coding_system("HL70078") == "http://terminology.hl7.org/CodeSystem/v2-0078"
    assert coding_system("99LAB") == "99LAB"  # local systems are kept as sent
    assert coding_system("") is None


def test_escape_and_unescape_round_trip() -> None:
    d = Delimiters()
    text = "a|b^c&d~e\\f\n张三"
    escaped = d.escape_text(text)
    assert escaped == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\张三"
    assert d.unescape(escaped) == text


def test_unescape_keeps_what_it_cannot_follow() -> None:
    d = Delimiters()
    assert d.unescape("x\\C2842\\y") == "x\\C2842\\y"  # a charset switch stays visible
    assert d.unescape("half \\F") == "half \\F"  # unterminated
    assert d.unescape("bad \\XZZ\\ hex") == "bad \\XZZ\\ hex"
    assert d.unescape("\\.sp2\\") == "\n\n"


def test_unescape_uses_the_message_escape_character() -> None:
    d = Delimiters.from_msh("|", "^~#&")
    assert d.unescape("a#F#b#E#c") == "a|b#c"
    assert d.unescape("a\\F\\b") == "a\\F\\b"


@pytest.mark.parametrize("encoding", ["^~\\", "^^\\&", "^~\\&x", "A~\\&", "^~\\&#!"])
def test_bad_encoding_characters(encoding: str) -> None:
    with pytest.raises(MalformedHeader):
        Delimiters.from_msh("|", encoding)


def test_truncation_character_of_v27() -> None:
    d = Delimiters.from_msh("|", "^~\\&#")
    assert d.truncation == "#" and d.encoding_characters == "^~\\&#"
    assert d.escape_text("a#b") == "a\\P\\b"
