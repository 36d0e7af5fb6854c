"""ORU^R01 → AddObservations: codes, values by type, units, ranges, flags, status, time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from huizhen.integration.commands import UNRESOLVED, AddObservations, UpsertPatient
from huizhen.integration.model import Coding, Identifier, ReferenceRange
from huizhen.mappings.hl7v2.context import MappingContext, MappingResult
from huizhen.mappings.hl7v2.datatypes import LOINC
from huizhen.mappings.hl7v2.errors import MappingError
from huizhen.mappings.hl7v2.tables import ErrorCode

from .conftest import corpus, map_raw, message, segment

ORU = "ORU^R01^ORU_R01"
PID = "PID|1||0001234^^^QSWSY^MR||张^三||19900101|1"
ORC = "ORC|RE|HZ20240301001^QSWSY"
OBR = segment("OBR", {1: "1", 2: "HZ20240301001", 4: "CBC^血常规^L", 7: "20240301090000"})


def obx(number: int, value_type: str, code: str, value: str, **more: str) -> str:
    fields = {1: str(number), 2: value_type, 3: code, 5: value, 11: more.pop("status", "F")}
    positions = {"unit": 6, "range": 7, "flag": 8, "time": 14, "instance": 21}
    fields.update({positions[k]: v for k, v in more.items()})
    return segment("OBX", fields)


def observations(result: MappingResult) -> list[AddObservations]:
    return [c for c in result.commands if isinstance(c, AddObservations)]


@pytest.mark.parametrize(("charset", "encoding"), [("UNICODE UTF-8", "utf-8"), ("GB 18030-2000", "gb18030")])
def test_chinese_lab_report(charset: str, encoding: str, context: MappingContext) -> None:
    raw = message(
        PID,
        ORC,
        OBR,
        obx(1, "NM", "WBC^白细胞计数^L", "12.5", unit="10\\S\\9/L", range="3.5-9.5", flag="H", time="20240301103000"),
        obx(2, "ST", "HBSAG^乙肝表面抗原^L", "阴性", range="阴性"),
        obx(3, "NM", "ZZ01^自定义项目^L", "7"),
        type=ORU,
        charset=charset,
        encoding=encoding,
    )
    result = map_raw(raw, context)
    assert isinstance(result.commands[0], UpsertPatient)
    assert result.commands[0].patient.name.text == "张三"
    (added,) = observations(result)
    assert added.patient == (Identifier("QSWSY", "0001234"),)
    assert added.order == Identifier("QSWSY", "HZ20240301001")
    wbc, hbsag, custom = added.observations
    assert wbc.patient_id == UNRESOLVED
    assert wbc.code.code == "6690-2" and wbc.code.system == LOINC
    assert wbc.alternate_codes == (Coding("WBC", "L", "白细胞计数"),)  # the local code it came as
    assert wbc.value_type == "NM" and wbc.value_quantity == Decimal("12.5")
    assert wbc.unit == "10^9/L"
    assert wbc.reference_range == ReferenceRange(Decimal("3.5"), Decimal("9.5"), "3.5-9.5")
    assert wbc.interpretation == "H" and wbc.status == "final"
    assert wbc.effective_at == datetime(2024, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=8)))
    assert hbsag.value_string == "阴性" and hbsag.value_quantity is None
    assert hbsag.code == Coding("HBSAG", "L", "乙肝表面抗原")  # unmapped: kept as it came
    assert hbsag.effective_at == datetime(2024, 3, 1, 9, tzinfo=context.timezone)  # OBR-7
    assert custom.alternate_codes == () and hbsag.alternate_codes == ()


def test_corpus_lab_oru_two_order_groups(context: MappingContext) -> None:
    result = map_raw(corpus("LAB-ORU-1.hl7"), context)
    first, second = observations(result)
    # MSH-4 is empty: identifiers without authority fall back to MSH-3
    assert first.order == Identifier("SomeSystem", "88502218")
    assert second.order == Identifier("SomeSystem", "855238581")
    assert [o.code.code for o in first.observations] == [
        "11156-7",
        "11273-0",
        "20509-6",
        "20570-8",
        "11125-2",
    ]
    assert [o.status for o in first.observations] == [
        "registered",
        "preliminary",
        "registered",
        "preliminary",
        "final",
    ]
    pending, erythrocytes = first.observations[:2]
    assert pending.value_quantity is None and pending.display_value is None
    assert erythrocytes.value_quantity == Decimal("4.06") and erythrocytes.unit == "tera.l-1"
    assert erythrocytes.effective_at is not None
    assert erythrocytes.effective_at.utcoffset() == timedelta(hours=7)
    assert erythrocytes.effective_at.hour == 6 and erythrocytes.effective_at.minute == 27
    assert len(second.observations) == 5


def test_alternate_loinc_is_preferred_to_a_local_primary(context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "L123^Glucose^99LAB^2345-7^Glucose^LN", "5.1"), type=ORU)
    (added,) = observations(map_raw(raw, context))
    assert added.observations[0].code == Coding("2345-7", LOINC, "Glucose")


def test_corpus_escapes_z_segments_and_local_codes(context: MappingContext) -> None:
    result = map_raw(corpus("sample-v2.3-oru-r01-2.hl7"), context)
    (added,) = observations(result)
    wbc = added.observations[0]
    assert wbc.unit == "10^9/L" and wbc.interpretation == "H"
    assert wbc.code == Coding("301.0500", "00065227", "White Blood Count (WBC)")
    assert added.order == Identifier("MYFAC", "PT103933301.0100")  # ORC-2 before OBR-2


def test_structured_numeric(context: MappingContext) -> None:
    result = map_raw(corpus("ORU-R01-RMGEAD.hl7"), context)
    (added,) = observations(result)
    (glucose,) = added.observations
    assert glucose.value_type == "SN"
    assert glucose.value_string == "182" and glucose.value_quantity == Decimal("182")
    assert glucose.reference_range == ReferenceRange(text="70_105")
    raw = message(
        PID, ORC, OBR, obx(1, "SN", "TITER^滴度^L", "^1^:^128"), obx(2, "SN", "CRP^C反应蛋白^L", "<^0.5"), type=ORU
    )
    titer, crp = observations(map_raw(raw, context))[0].observations
    assert (titer.value_string, titer.value_quantity) == ("1:128", None)
    assert (crp.value_string, crp.value_quantity) == ("<0.5", None)
    assert crp.code.code == "1988-5"


def test_coded_and_text_values(context: MappingContext) -> None:
    raw = message(
        PID,
        ORC,
        OBR,
        obx(1, "CWE", "COVID^新冠核酸^L", "260415000^Not Detected^SCT"),
        obx(2, "TX", "NOTE^备注^L", "第一行~第二行"),
        obx(3, "FT", "RPT^报告^L", "印象\\.br\\未见异常"),
        obx(4, "DT", "DUE^预产期^L", "20241001"),
        type=ORU,
    )
    coded, text, formatted, other = observations(map_raw(raw, context))[0].observations
    assert coded.value_coding == Coding("260415000", "http://snomed.info/sct", "Not Detected")
    assert coded.display_value == "Not Detected"
    assert text.value_string == "第一行\n第二行"
    assert formatted.value_string == "印象\n未见异常"
    assert other.value_string == "2024-10-01"  # ISO 8601, as every time of the API


def test_coded_value_keeps_its_alternate_triplet(context: MappingContext) -> None:
    """OBX-5 CWE with the lab's own code in CWE-4..6: kept as the value's further coding, not dropped."""
    value = "112283007^Escherichia coli^SCT^EC^大肠埃希菌^99LAB"
    raw = message(PID, OBR, obx(1, "CWE", "600-7^Bacteria identified^LN", value), type=ORU, charset="UNICODE UTF-8")
    (culture,) = observations(map_raw(raw, context))[0].observations
    assert culture.value_coding == Coding("112283007", "http://snomed.info/sct", "Escherichia coli")
    assert culture.value_alternates == (Coding("EC", "99LAB", "大肠埃希菌"),)


@pytest.mark.parametrize(
    ("value_type", "sent", "iso"),
    [
        ("DT", "20270315", "2027-03-15"),
        ("DT", "202703", "2027-03"),
        ("TS", "202606080930+0800", "2026-06-08T09:30:00+08:00"),
        ("DTM", "20260608093015", "2026-06-08T09:30:15+08:00"),  # no offset: the local zone
        ("DT", "unknown", "unknown"),  # not an HL7 time: kept as sent
    ],
)
def test_time_values_are_iso_8601(value_type: str, sent: str, iso: str, context: MappingContext) -> None:
    raw = message(PID, OBR, obx(1, value_type, "11778-8^Delivery date^LN", sent), type=ORU)
    (when,) = observations(map_raw(raw, context))[0].observations
    assert (when.value_type, when.value_string) == (value_type, iso)


@pytest.mark.parametrize(
    ("written", "low", "high"),
    [
        ("3.5-5.5", "3.5", "5.5"),
        ("0 to 2", "0", "2"),
        ("0.27–4.2 uIU/mL", "0.27", "4.2"),
        ("-1.0-1.0", "-1.0", "1.0"),
        ("<200", None, "200"),
        ("≤5", None, "5"),
        (">=10", "10", None),
        ("4.50&5.90", "4.50", "5.90"),
        ("NEGATIVE", None, None),
    ],
)
def test_reference_ranges(written: str, low: str | None, high: str | None, context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "GLU^葡萄糖^L", "5", range=written), type=ORU)
    found = observations(map_raw(raw, context))[0].observations[0].reference_range
    assert found is not None
    assert found.low == (Decimal(low) if low else None)
    assert found.high == (Decimal(high) if high else None)
    assert found.text == written.replace("&", "-")


def test_not_a_number_is_a_located_error(context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "K^钾^L", "4.1"), obx(2, "NM", "NA^钠^L", "高"), type=ORU)
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    detail = caught.value.detail
    assert detail.code is ErrorCode.DATA_TYPE_ERROR
    assert detail.location is not None
    assert (detail.location.segment_id, detail.location.sequence, detail.location.field) == (
        "OBX",
        2,
        5,
    )


def test_bad_observation_time_is_a_located_error(context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "K^钾^L", "4.1", time="2024-03-01"), type=ORU)
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.field == 14


def test_empty_observation_identifier_corpus(context: MappingContext) -> None:
    with pytest.raises(MappingError) as caught:
        map_raw(corpus("ORU-R01-01.hl7"), context)
    location = caught.value.detail.location
    assert location is not None and (location.sequence, location.field) == (2, 3)


def test_unknown_status_and_repeated_numbers_warn(context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "K^钾^L", "4.1~4.3", status="Q"), type=ORU)
    result = map_raw(raw, context)
    (potassium,) = observations(result)[0].observations
    assert potassium.status == "unknown" and potassium.value_quantity == Decimal("4.1")
    assert sorted(w.location.field for w in result.warnings if w.location) == [5, 11]


def test_observation_instance_identifier(context: MappingContext) -> None:
    raw = message(PID, ORC, OBR, obx(1, "NM", "K^钾^L", "4.1", instance="OBX-778^QSWSY_LIS"), type=ORU)
    (potassium,) = observations(map_raw(raw, context))[0].observations
    assert potassium.identifiers == [Identifier("QSWSY_LIS", "OBX-778")]


def test_two_patients_in_one_report(context: MappingContext) -> None:
    other = "PID|2||0005678^^^QSWSY^MR||李^四"
    raw = message(PID, OBR, obx(1, "NM", "K^钾^L", "4.1"), other, OBR, obx(1, "NM", "NA^钠^L", "140"), type=ORU)
    first, second = observations(map_raw(raw, context))
    assert first.patient == (Identifier("QSWSY", "0001234"),)
    assert second.patient == (Identifier("QSWSY", "0005678"),)
    assert second.observations[0].code.code == "2951-2"
    assert first.order == Identifier("QSWSY", "HZ20240301001")  # OBR-2 without ORC


def test_large_multi_order_report(context: MappingContext) -> None:
    result = map_raw(corpus("sample-v2.3-oru-r01-3.hl7"), context)
    groups = observations(result)
    assert len(groups) == 5
    assert sum(len(g.observations) for g in groups) == 82
    ranges = [o.reference_range for g in groups for o in g.observations if o.reference_range]
    assert any(r.low == Decimal("0.00") and r.high == Decimal("0.24") for r in ranges)  # en dash


def test_obx3_alternate_triplet_is_kept_beside_loinc(context: MappingContext) -> None:
    """OBX-3 carrying a local code and LOINC (CWE-1..3 and 4..6): LOINC is the code, the local
    one an alternate, whichever triplet each came in; nothing the lab sent is dropped."""
    for obx3 in ("GLU^血糖^99LAB^2345-7^Glucose^LN", "2345-7^Glucose^LN^GLU^血糖^99LAB"):
        raw = message(PID, OBR, obx(1, "NM", obx3, "5.6", unit="mmol/L"), type=ORU, charset="UNICODE UTF-8")
        (added,) = observations(map_raw(raw, context))
        (glucose,) = added.observations
        assert glucose.code == Coding("2345-7", LOINC, "Glucose"), obx3
        assert glucose.alternate_codes == (Coding("GLU", "99LAB", "血糖"),), obx3
