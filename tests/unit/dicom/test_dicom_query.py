"""C-FIND matching semantics (PS3.4 C.2.2.2)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom_query import (
    FindQuery,
    MatchKind,
    QueryLevel,
    RecordValue,
    match_value,
    parse_key,
)


def matches(keyword: str, vr: str, pattern: str | list[str], value: RecordValue, **kw: bool) -> bool:
    return match_value(parse_key(keyword, vr, pattern), value, **kw)


@pytest.mark.parametrize(
    ("vr", "raw", "kind"),
    [
        ("LO", "", MatchKind.UNIVERSAL),
        ("LO", "*", MatchKind.UNIVERSAL),
        ("PN", "  ", MatchKind.UNIVERSAL),
        ("DA", "-", MatchKind.UNIVERSAL),
        ("LO", '""', MatchKind.EMPTY),
        ("LO", "ABC", MatchKind.SINGLE),
        ("LO", "AB*", MatchKind.WILDCARD),
        ("CS", "C?", MatchKind.WILDCARD),
        ("UI", "1.2*", MatchKind.SINGLE),  # no wildcards for UI
        ("UI", ["1.2", "1.3"], MatchKind.UID_LIST),
        ("DA", "20200101-20201231", MatchKind.RANGE),
        ("DA", "20200101", MatchKind.RANGE),
        ("TM", "-0800", MatchKind.RANGE),
        ("IS", "3", MatchKind.SINGLE),
    ],
)
def test_key_kinds(vr: str, raw: str | list[str], kind: MatchKind) -> None:
    assert parse_key("K", vr, raw).kind is kind


def test_universal_matches_everything_including_empty() -> None:
    for value in (None, "", "X", ["A", "B"]):
        assert matches("AccessionNumber", "SH", "", value)
        assert matches("AccessionNumber", "SH", "*", value)


def test_empty_value_matching() -> None:
    assert matches("AccessionNumber", "SH", '""', None)
    assert matches("AccessionNumber", "SH", '""', "")
    assert not matches("AccessionNumber", "SH", '""', "A1")


def test_non_universal_key_never_matches_an_empty_value() -> None:
    assert not matches("AccessionNumber", "SH", "A*", None)
    assert not matches("StudyDate", "DA", "2020-", "")


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("CT*", "CT HEAD", True),
        ("*HEAD", "CT HEAD", True),
        ("C?", "CT", True),
        ("C?", "CTX", False),
        ("ct*", "CT HEAD", False),  # case-sensitive outside PN
        ("A.B", "AxB", False),  # regex characters are literal
        ("胸部*", "胸部CT平扫", True),
        ("*CT?扫", "胸部CT平扫", True),
    ],
)
def test_wildcards(pattern: str, value: str, expected: bool) -> None:
    assert matches("StudyDescription", "LO", pattern, value) is expected


def test_single_value_is_exact_and_case_sensitive_but_ignores_padding() -> None:
    assert matches("AccessionNumber", "SH", "A1", "A1 ")
    assert not matches("AccessionNumber", "SH", "a1", "A1")
    assert not matches("AccessionNumber", "SH", "A1", "A12")
    assert matches("Modality", "CS", "MR", "MR")


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("20200101-20201231", "20200615", True),
        ("20200101-20201231", "20210101", False),
        ("20200101-20201231", "20200101", True),
        ("20200101-20201231", "20201231", True),
        ("-2020", "20201231", True),  # a partial upper bound covers its whole year
        ("-2020", "20210101", False),
        ("2020-", "20200101", True),
        ("2020-", "20191231", False),
        ("-20200615", "19991231", True),
        ("20200615", "20200615", True),
        ("20200615", "20200616", False),
        ("202006", "20200630", True),
        ("2020.06.15", "20200615", True),
    ],
)
def test_date_ranges(pattern: str, value: str, expected: bool) -> None:
    assert matches("StudyDate", "DA", pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("0800-1200", "101500", True),
        ("0800-1200", "120059", True),  # 12 stands for all of 12:00
        ("0800-1200", "120100", False),
        ("-0800", "075959.999", True),
        ("1800-", "180000", True),
        ("1800-", "175959", False),
        ("0727", "072730", True),
        ("072730.5", "072730.500", True),
    ],
)
def test_time_ranges(pattern: str, value: str, expected: bool) -> None:
    assert matches("StudyTime", "TM", pattern, value) is expected


def test_datetime_ranges_compare_local_times() -> None:
    key = parse_key("AcquisitionDateTime", "DT", "20200101-20200101120000")
    assert match_value(key, "20200101115959.123+0800")
    assert not match_value(key, "20200101120001")


@pytest.mark.parametrize(
    ("pattern", "low", "high"),
    [
        ("20200101120000-0500", "20200101120000-0500", "20200101120000-0500"),  # an offset, not a range
        ("20200101+0800-20200102+0800", "20200101+0800", "20200102+0800"),
        ("20200101-0500-20200102", "20200101-0500", "20200102"),
        ("2020-", "2020", None),
        ("-202001", None, "202001"),
    ],
)
def test_datetime_offsets_are_not_range_dashes(pattern: str, low: str | None, high: str | None) -> None:
    key = parse_key("AcquisitionDateTime", "DT", pattern)
    assert (key.kind, key.low, key.high) == (MatchKind.RANGE, low, high)


def test_uid_list_matching_from_a_backslash_value() -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3\\1.2.4"
    query = FindQuery.from_identifier(identifier)
    key = query.keys["StudyInstanceUID"]
    assert key.kind is MatchKind.UID_LIST and key.values == ("1.2.3", "1.2.4")
    assert query.matches({"StudyInstanceUID": "1.2.4"})
    assert not query.matches({"StudyInstanceUID": "1.2.5"})
    assert not query.matches({"StudyInstanceUID": "1.2.3.4"})


def test_multi_valued_keys_and_records() -> None:
    assert matches("ModalitiesInStudy", "CS", "MR", ["CT", "MR"])
    assert matches("ModalitiesInStudy", "CS", ["US", "MR"], ["CT", "MR"])
    assert not matches("ModalitiesInStudy", "CS", ["US", "NM"], ["CT", "MR"])


def test_numbers_compare_as_numbers() -> None:
    assert matches("SeriesNumber", "IS", "01", 1)
    assert matches("SliceThickness", "DS", "2.50", "2.5")
    assert not matches("SeriesNumber", "IS", "2", 1)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("王*", True),
        ("wang*", True),  # PN is case-insensitive by default
        ("WANG^XIAODONG", True),
        ("Wang^XiaoDong", True),
        ("王小東", True),  # a CJK group also matches without its separator
        ("王^小東", True),
        ("=王^小東", True),  # group by group
        ("Wang^XiaoDong=王^小東", True),
        ("Wang^XiaoDong=李*", False),
        ("李*", False),
        ("Wang", False),  # single value matching is exact
        ("*XiaoDong", True),
    ],
)
def test_person_names(pattern: str, expected: bool) -> None:
    assert matches("PatientName", "PN", pattern, "Wang^XiaoDong=王^小東") is expected


def test_person_name_case_sensitivity_is_optional() -> None:
    assert not matches("PatientName", "PN", "wang*", "Wang^XiaoDong", pn_case_sensitive=True)
    assert matches("PatientName", "PN", "Wang*", "Wang^XiaoDong", pn_case_sensitive=True)


def test_query_from_identifier() -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.SpecificCharacterSet = "ISO_IR 192"
    identifier.PatientName = "张*"
    identifier.StudyDate = "20240101-"
    identifier.Modality = ""
    identifier.SeriesInstanceUID = ""
    identifier.ReferencedStudySequence = []
    query = FindQuery.from_identifier(identifier)
    assert query.level is QueryLevel.SERIES
    assert set(query.keys) == {"PatientName", "StudyDate"}
    assert set(query.requested) == {
        "PatientName",
        "StudyDate",
        "Modality",
        "SeriesInstanceUID",
        "ReferencedStudySequence",
    }
    record: dict[str, RecordValue] = {
        "PatientName": "张^三",
        "StudyDate": "20240301",
        "Modality": "CT",
        "SeriesInstanceUID": "1.2",
    }
    assert query.matches(record)
    assert not query.matches({**record, "StudyDate": "20231231"})
    assert not query.matches({**record, "PatientName": "李^四"})
    # a key the record does not carry is not used for matching
    assert query.matches({k: v for k, v in record.items() if k != "StudyDate"})


@pytest.mark.parametrize("level", ["", "WORKLIST", None])
def test_bad_level_is_refused(level: str | None) -> None:
    identifier = Dataset()
    if level is not None:
        identifier.QueryRetrieveLevel = level
    with pytest.raises(BadInput, match="QueryRetrieveLevel"):
        FindQuery.from_identifier(identifier)


@pytest.mark.parametrize(
    ("vr", "value"),
    [("DA", "2004x"), ("DA", "20040101-soon"), ("DA", "2004-08-26"), ("TM", "noon"), ("TM", "0800-8pm"),
     ("DT", "yesterday"), ("DT", "20200101T1200")],
)
def test_a_date_or_time_that_is_none_is_refused(vr: str, value: str) -> None:
    with pytest.raises(BadInput, match="is not a"):
        parse_key("Key", vr, value)


@pytest.mark.parametrize(
    ("vr", "value"),
    [("DA", "2004"), ("DA", "2004.08.26"), ("DA", "-20040826"), ("TM", "08:30-12"), ("TM", "072730.5"),
     ("DT", "20200101120000.5+0800"), ("DT", "2020-")],
)
def test_partial_and_legacy_dates_and_times_are_still_ranges(vr: str, value: str) -> None:
    assert parse_key("Key", vr, value).kind is MatchKind.RANGE
