"""ADT → UpsertPatient / UpsertEncounter / DischargeEncounter / MergePatients."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from huizhen.integration.commands import (
    UNRESOLVED,
    DischargeEncounter,
    MergePatients,
    UpsertEncounter,
    UpsertPatient,
)
from huizhen.integration.model import Gender, HumanName, Identifier
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.errors import MappingError
from huizhen.mappings.hl7v2.tables import AckCode, ErrorCode, Severity

from .conftest import corpus, map_raw, message, segment

SHANGHAI = "Asia/Shanghai"
CHINESE_ADT = (
    "EVN|A01|20240301101500",
    segment(
        "PID",
        {
            1: "1",
            3: "0001234^^^QSWSY^MR~110101199001011234^^^CHN^NNCHN",
            5: "张^三^^^^^L^I~ZHANG^SAN^^^^^L^A",
            7: "19900101",
            8: "1",
            11: "北京路1号^^广州市^广东省^510000^CHN^H^^天河区",
            13: "^PRN^PH^^86^20^12345678~13800138000",
        },
    ),
    segment(
        "PV1",
        {1: "1", 2: "住院", 3: "心内科病区^301^2", 10: "心内科", 19: "V20240301001", 44: "20240301100000"},
    ),
)
PID_DOE = "PID|1||P1^^^QSWSY||DOE^JO"


def upsert_patient(commands: tuple[object, ...]) -> UpsertPatient:
    first = commands[0]
    assert isinstance(first, UpsertPatient)
    return first


@pytest.mark.parametrize(("charset", "encoding"), [("UNICODE UTF-8", "utf-8"), ("GB 18030-2000", "gb18030")])
def test_chinese_admission(charset: str, encoding: str, context: MappingContext) -> None:
    result = map_raw(message(*CHINESE_ADT, charset=charset, encoding=encoding), context)
    patient = upsert_patient(result.commands).patient
    assert patient.name == HumanName(family="张", given=("三",), text="张三")
    assert patient.identifiers == [
        Identifier("QSWSY", "0001234"),
        Identifier("CHN", "110101199001011234"),
    ]
    assert patient.gender is Gender.MALE  # GB/T 2261.1 code 1, through genders.csv
    assert patient.birth_date == date(1990, 1, 1)
    assert patient.address == "广东省广州市天河区北京路1号"
    assert patient.phone == "+86 20 12345678"
    assert upsert_patient(result.commands).facility_code == "QSWSY"
    encounter_command = result.commands[1]
    assert isinstance(encounter_command, UpsertEncounter)
    encounter = encounter_command.encounter
    assert encounter.patient_id == UNRESOLVED
    assert encounter_command.patient == tuple(patient.identifiers)
    assert encounter.identifiers == [Identifier("QSWSY", "V20240301001")]
    assert encounter.class_code == "IMP"
    assert encounter.department == "心血管内科"
    assert encounter.location == "心内科病区/301/2"
    assert encounter.status == "in-progress"
    assert encounter.start is not None and encounter.start.utcoffset() == timedelta(hours=8)
    assert result.warnings == ()


def test_corpus_adt_a01_v28(context: MappingContext) -> None:
    result = map_raw(corpus("ADT-A01-01.hl7"), context)
    patient = upsert_patient(result.commands).patient
    assert patient.identifiers[0] == Identifier("test1", "PATID1234")
    assert Identifier("USSSA", "123456789") in patient.identifiers
    assert patient.name.family == "EVERYMAN" and patient.name.text == "ADAM A EVERYMAN"  # first XPN
    assert patient.gender is Gender.MALE
    assert patient.birth_date == date(1988, 8, 18)
    encounter = result.commands[1]
    assert isinstance(encounter, UpsertEncounter)
    assert encounter.encounter.identifiers == [Identifier("AccMng", "40007716")]
    assert encounter.encounter.class_code == "PRENC"  # PV1-2 P, pre-admit
    assert encounter.encounter.department == "普通外科"  # PV1-10 SUR (table 0069)
    assert encounter.encounter.location == "HUH AE OMU/OMU B/Bed 03"
    # unknown sender: MSH-4 kept as the facility code, with a warning
    assert upsert_patient(result.commands).facility_code == "GHHSFacility"
    assert [w.location.field for w in result.warnings if w.location] == [4]
    assert all(w.severity is Severity.WARNING for w in result.warnings)


def test_chinese_name_in_one_component_is_text_only(context: MappingContext) -> None:
    result = map_raw(message("PID|1||P1^^^QSWSY||欧阳娜娜||1998|2"), context)
    patient = upsert_patient(result.commands).patient
    assert patient.name == HumanName(family=None, given=(), text="欧阳娜娜")
    assert patient.gender is Gender.FEMALE
    assert patient.birth_date == date(1998, 1, 1)
    partial = [w for w in result.warnings if w.location and w.location.field == 7]
    assert partial and "partial" in partial[0].text


def test_ideographic_name_preferred_over_alphabetic(context: MappingContext) -> None:
    raw = message("PID|1||P1^^^QSWSY||LI^SI^^^^^L^A~李^四^^^^^L^I")
    assert upsert_patient(map_raw(raw, context).commands).patient.name.text == "李四"


def test_identifier_without_authority_uses_the_facility_code(context: MappingContext) -> None:
    raw = message("PID|1||889900||王^五", sender="HIS|QSWSY_LIS")
    patient = upsert_patient(map_raw(raw, context).commands).patient
    assert patient.identifiers == [Identifier("QSWSY", "889900")]  # facilities.csv maps the LIS


def test_missing_patient_identifier_is_a_located_mapping_error(context: MappingContext) -> None:
    with pytest.raises(MappingError) as caught:
        map_raw(corpus("example_oml_o21_09_oru_r01_v251.hl7"), context)
    detail = caught.value.detail
    assert caught.value.ack_code is AckCode.AE
    assert detail.code is ErrorCode.REQUIRED_FIELD_MISSING
    assert (detail.location.segment_id, detail.location.field) == ("PID", 3)  # type: ignore[union-attr]


def test_missing_pid_segment(context: MappingContext) -> None:
    with pytest.raises(MappingError) as caught:
        map_raw(message("EVN|A01|20240301"), context)
    assert caught.value.detail.code is ErrorCode.SEGMENT_SEQUENCE_ERROR


def test_bad_birth_date_is_left_out_with_a_warning(context: MappingContext) -> None:
    result = map_raw(message("PID|1||P1^^^QSWSY||DOE^JO||01/10/1948|F"), context)
    assert upsert_patient(result.commands).patient.birth_date is None
    assert any(w.code is ErrorCode.DATA_TYPE_ERROR for w in result.warnings)


def test_unknown_sex_and_department_are_kept_or_warned(context: MappingContext) -> None:
    raw = message("PID|1||P1^^^QSWSY||DOE^JO||19800101|Q", segment("PV1", {2: "O", 10: "XYZ", 19: "V9"}))
    result = map_raw(raw, context)
    assert upsert_patient(result.commands).patient.gender is None
    encounter = result.commands[1]
    assert isinstance(encounter, UpsertEncounter)
    assert encounter.encounter.department == "XYZ"  # kept as sent, never dropped
    fields = sorted(w.location.field for w in result.warnings if w.location)
    assert fields == [8, 10]


def test_no_visit_number_means_no_encounter(context: MappingContext) -> None:
    result = map_raw(corpus("ADT01-28.hl7"), context)
    assert [type(c) for c in result.commands] == [UpsertPatient]
    assert any(w.location and w.location.field == 19 for w in result.warnings)


def test_a05_is_planned_and_a08_reads_pv1(context: MappingContext) -> None:
    pv1 = segment("PV1", {2: "I", 19: "V1", 44: "20240302"})
    planned = map_raw(message(PID_DOE, pv1, type="ADT^A05^ADT_A05"), context).commands[1]
    assert isinstance(planned, UpsertEncounter) and planned.encounter.status == "planned"
    discharged = segment("PV1", {2: "I", 19: "V1", 44: "20240302", 45: "20240305"})
    updated = map_raw(message(PID_DOE, discharged, type="ADT^A08^ADT_A01"), context).commands[1]
    assert isinstance(updated, UpsertEncounter) and updated.encounter.status == "finished"
    assert updated.encounter.end == datetime(2024, 3, 5, tzinfo=context.timezone)
    current = map_raw(message(PID_DOE, pv1, type="ADT^A08^ADT_A01"), context).commands[1]
    assert isinstance(current, UpsertEncounter) and current.encounter.status == "in-progress"


def test_a28_updates_the_person_only(context: MappingContext) -> None:
    raw = message(PID_DOE, "PV1|1|N", type="ADT^A28^ADT_A05")
    assert [type(c) for c in map_raw(raw, context).commands] == [UpsertPatient]


def test_a03_discharge_corpus(context: MappingContext) -> None:
    result = map_raw(corpus("adt_a03_v25_italian.hl7"), context)
    discharge = result.commands[1]
    assert isinstance(discharge, DischargeEncounter)
    assert discharge.visit == (Identifier("SANTER", "2008003369"),)
    assert [i.system for i in discharge.patient] == ["PK", "CF", "SSN"]  # every valued PID-3
    assert discharge.end is not None and discharge.end.tzinfo is not None


def test_a03_end_from_evn_when_pv1_45_is_empty(context: MappingContext) -> None:
    raw = message(
        segment("EVN", {1: "A03", 2: "20240305080000", 6: "20240305070000"}),
        PID_DOE,
        segment("PV1", {2: "I", 19: "V1"}),
        type="ADT^A03^ADT_A03",
    )
    discharge = map_raw(raw, context).commands[1]
    assert isinstance(discharge, DischargeEncounter)
    assert discharge.end == datetime(2024, 3, 5, 7, tzinfo=context.timezone)


def test_a03_without_visit_number_is_an_error(context: MappingContext) -> None:
    raw = message(PID_DOE, "PV1|1|I", type="ADT^A03^ADT_A03")
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.field == 19


def test_a40_merge_corpus(context: MappingContext) -> None:
    result = map_raw(corpus("ADT-A40-01.hl7"), context)
    (merge,) = result.commands
    assert merge == MergePatients(survivor=(Identifier("BCBS", "12345"),), merged=(Identifier("BCBS", "56789"),))


def test_a40_without_mrg_is_an_error(context: MappingContext) -> None:
    raw = message(PID_DOE, type="ADT^A40^ADT_A39")
    with pytest.raises(MappingError, match="MRG"):
        map_raw(raw, context)


def test_configured_timezone_applies_to_times_without_offset(tables: object) -> None:
    from zoneinfo import ZoneInfo

    from huizhen.mappings.codes import CodeTables

    assert isinstance(tables, CodeTables)
    raw = message(*CHINESE_ADT)
    shanghai = map_raw(raw, MappingContext(tables)).commands[1]
    urumqi = map_raw(raw, MappingContext(tables, ZoneInfo("Asia/Urumqi"))).commands[1]
    assert isinstance(shanghai, UpsertEncounter) and isinstance(urumqi, UpsertEncounter)
    assert shanghai.encounter.start and urumqi.encounter.start
    assert urumqi.encounter.start - shanghai.encounter.start == timedelta(hours=2)
    assert str(shanghai.encounter.start.tzinfo) == SHANGHAI
    fixed = datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    assert shanghai.encounter.start == fixed
