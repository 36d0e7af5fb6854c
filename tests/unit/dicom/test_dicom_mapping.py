"""Header → canonical model, over the corpus and over synthetic Chinese datasets."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset

from huizhen.integration.model import Gender, HumanName, Identifier, ImagingInstance
from huizhen.mappings.dicom import (
    human_name,
    instance_from_dataset,
    merge_study,
    patient_from_dataset,
    patient_name,
    study_datetime,
    study_from_dataset,
)
from huizhen.mappings.dicom_read import read_header, read_instance
from huizhen.mappings.dicom_values import parse_date, parse_offset, parse_time

from .conftest import MANIFEST, corpus_bytes, part10

SHANGHAI = ZoneInfo("Asia/Shanghai")
ISSUER = "urn:huizhen:facility:TEST"


def header(file: str) -> Dataset:
    return read_header(corpus_bytes(file))


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["path"].rsplit("/", 1)[-1])
def test_corpus_maps_to_canonical_entities(entry: dict[str, str]) -> None:
    ds = header(entry["path"].rsplit("/", 1)[-1])
    patient = patient_from_dataset(ds, default_issuer=ISSUER)
    study = study_from_dataset(ds, patient_id=patient.id, default_tz=SHANGHAI)
    if entry["PatientID"]:
        assert patient.identifiers[0] == Identifier(ISSUER, entry["PatientID"])
    else:
        assert patient.identifiers == []
    assert study.study_instance_uid == entry["StudyInstanceUID"]
    assert study.patient_id == patient.id
    assert study.modalities == [entry["Modality"]]
    (series,) = study.series
    (instance,) = series.instances
    assert instance.sop_instance_uid == entry["SOPInstanceUID"]
    assert instance.sop_class_uid == entry["SOPClassUID"]
    assert study.started_at is None or study.started_at.tzinfo is not None


def test_ct_fields() -> None:
    ds = header("CT_small.dcm")
    patient = patient_from_dataset(ds, default_issuer=ISSUER)
    study = study_from_dataset(ds, patient_id=patient.id, default_tz=SHANGHAI)
    assert patient.name == HumanName("CompressedSamples", ("CT1",), "CT1 CompressedSamples")
    assert patient.gender is Gender.OTHER
    # Other Patient IDs Sequence entries are kept as further identifiers
    assert [i.value for i in patient.identifiers] == ["1CT1", "ABCD1234", "1234ABCD"]
    # Timezone Offset From UTC (-0500) wins over the default zone
    assert study.started_at == datetime(2004, 1, 19, 7, 27, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert study.series[0].number == 1 and study.series[0].instances[0].number == 1


def test_default_zone_applies_without_offset() -> None:
    ds = header("SC_rgb_jpeg_dcmtk.dcm")
    assert "TimezoneOffsetFromUTC" not in ds
    assert study_datetime(ds, SHANGHAI) == datetime(2017, 1, 1, 12, 0, tzinfo=SHANGHAI)


def test_nm_series_fields() -> None:
    ds = header("JPEG-LL.dcm")
    study = study_from_dataset(ds, patient_id="p", default_tz=SHANGHAI)
    assert study.description == "Whole Body Bone"
    assert study.series[0].body_site == "WHOLE BODY"
    assert study.series[0].instances[0].number == 4


def test_seg_accession_and_series_description() -> None:
    study = study_from_dataset(header("liver_1frame.dcm"), patient_id="p", default_tz=SHANGHAI)
    assert study.accession_number == "03086212"
    assert study.series[0].description == "Liver Segmentation"


def test_chinese_name_from_ideographic_group() -> None:
    ds = header("chrX1.dcm")  # Wang^XiaoDong=王^小東 in ISO_IR 192
    assert patient_name(ds) == HumanName("王", ("小東",), "王小東")


def test_empty_name_and_id() -> None:
    patient = patient_from_dataset(header("image_dfl.dcm"), default_issuer=ISSUER)
    assert patient.name == HumanName() and patient.identifiers == []


@pytest.mark.parametrize(
    ("pn", "expected"),
    [
        ("张^三", HumanName("张", ("三",), "张三")),
        ("ZHANG^SAN=张^三=zhang^san", HumanName("张", ("三",), "张三")),
        ("张^三=ZHANG^SAN", HumanName("张", ("三",), "张三")),
        ("欧阳^娜娜", HumanName("欧阳", ("娜娜",), "欧阳娜娜")),
        ("Last^First^mid^pre", HumanName("Last", ("First", "mid"), "First mid Last")),
        ("JANCT000", HumanName("JANCT000", (), "JANCT000")),
        ("^^^^", HumanName()),
        ("=^王", HumanName(None, ("王",), "王")),
        ("", HumanName()),
    ],
)
def test_human_name(pn: str, expected: HumanName) -> None:
    assert human_name(pn) == expected


def synthetic(charset: str | None, name: str, **attrs: str) -> bytes:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = "HZ0001"
    ds.Modality = "OT"
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixel data
    return part10(ds)


@pytest.mark.parametrize("charset", ["ISO_IR 192", "GB18030", "GBK"])
def test_chinese_names_survive_encoding(charset: str) -> None:
    data = synthetic(charset, "张^三丰=ZHANG^SANFENG", StudyDescription="胸部CT平扫")
    raw_name = "张^三丰".encode("utf-8" if charset == "ISO_IR 192" else "gb18030")
    assert raw_name in data  # really encoded in that charset
    ds = read_instance(data)
    patient = patient_from_dataset(ds, default_issuer=ISSUER)
    assert patient.name == HumanName("张", ("三丰",), "张三丰")
    study = study_from_dataset(ds, patient_id=patient.id, default_tz=SHANGHAI)
    assert study.description == "胸部CT平扫"


@pytest.mark.parametrize("charset", ["ISO_IR 192", "GB18030"])
def test_study_id_and_referring_physician_are_indexed(charset: str) -> None:
    data = synthetic(charset, "张^三丰", StudyID="CT2026001", ReferringPhysicianName="李^建国=LI^JIANGUO")
    study = study_from_dataset(read_instance(data), patient_id="p", default_tz=SHANGHAI)
    assert (study.study_id, study.referring_physician) == ("CT2026001", "李^建国=LI^JIANGUO")
    nobody = study_from_dataset(read_instance(synthetic(charset, "张^三丰", ReferringPhysicianName="^^^^")),
                                patient_id="p", default_tz=SHANGHAI)
    assert (nobody.study_id, nobody.referring_physician) == (None, None)


def test_iso_2022_ir_58_with_escape_sequences() -> None:
    # PS3.5 Annex K example: "Wang^XiaoDong=王^小东=" in \ISO 2022 IR 58
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
    ds.add_new(0x00100010, "PN", b"Wang^XiaoDong=\x1b$)A\xcd\xf5^\x1b$)A\xd0\xa1\xb6\xab=")
    ds.PatientID = "K2"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    read = read_instance(part10(ds))
    assert patient_name(read) == HumanName("王", ("小东",), "王小东")


def test_fallback_charset_for_senders_without_one() -> None:
    ds = Dataset()
    ds.add_new(0x00100010, "PN", "李^四".encode("gb18030"))
    ds.add_new(0x00081030, "LO", "头颅MR".encode("gb18030"))
    ds.PatientID = "P9"
    ds.StudyDate = "20240301"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    read = read_instance(part10(ds))
    assert patient_name(read) != HumanName("李", ("四",), "李四")  # read as ISO 8859-1
    assert patient_name(read, fallback_charset="GB18030") == HumanName("李", ("四",), "李四")
    study = study_from_dataset(read, patient_id="p", default_tz=SHANGHAI, fallback_charset="GB18030")
    assert study.description == "头颅MR"


@pytest.mark.parametrize(
    ("sex", "gender"),
    [("M", Gender.MALE), ("F", Gender.FEMALE), ("O", Gender.OTHER), ("X", Gender.UNKNOWN), ("", None)],
)
def test_gender(sex: str, gender: Gender | None) -> None:
    ds = Dataset()
    ds.PatientSex = sex
    assert patient_from_dataset(ds, default_issuer=ISSUER).gender is gender


def test_issuer_and_birth_date() -> None:
    ds = Dataset()
    ds.PatientID = "110101199001011234"
    ds.IssuerOfPatientID = "HOSP-A"
    ds.PatientBirthDate = "19900101"
    patient = patient_from_dataset(ds, default_issuer=ISSUER)
    assert patient.identifiers == [Identifier("HOSP-A", "110101199001011234")]
    assert patient.birth_date == date(1990, 1, 1)


def test_issuer_from_qualifiers_sequence() -> None:
    ds = Dataset()
    ds.PatientID = "7"
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "1.2.156.112604.1.2.3"
    ds.IssuerOfPatientIDQualifiersSequence = [qualifiers]
    patient = patient_from_dataset(ds, default_issuer=ISSUER)
    assert patient.identifiers == [Identifier("1.2.156.112604.1.2.3", "7")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("072730", time(7, 27, 30)),
        ("0727", time(7, 27)),
        ("07", time(7)),
        ("072730.123", time(7, 27, 30, 123000)),
        ("07:27:30", time(7, 27, 30)),
        ("235960", time(23, 59, 59)),  # leap second
        ("25", None),
        ("7", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: time | None) -> None:
    assert parse_time(text) == expected


def test_parse_date_and_offset() -> None:
    assert parse_date("20040119") == date(2004, 1, 19)
    assert parse_date("2004.01.19") == date(2004, 1, 19)
    assert parse_date("20041319") is None and parse_date("2004") is None
    assert parse_offset("+0800") == timezone(timedelta(hours=8))
    assert parse_offset("-0400") == timezone(timedelta(hours=-4))
    assert parse_offset("0800") is None and parse_offset("+9900") is None


def test_study_without_time_starts_at_midnight_and_without_date_is_unknown() -> None:
    ds = Dataset()
    ds.StudyDate = "20240301"
    assert study_datetime(ds, SHANGHAI) == datetime(2024, 3, 1, tzinfo=SHANGHAI)
    ds.StudyDate = ""
    ds.StudyTime = "101010"
    assert study_datetime(ds, SHANGHAI) is None


def test_merge_adds_series_and_instances_and_replaces_known_ones() -> None:
    a = study_from_dataset(header("JPEG2000.dcm"), patient_id="p", default_tz=SHANGHAI)
    b = study_from_dataset(header("JPEG-LL.dcm"), patient_id="p", default_tz=SHANGHAI)
    assert a.study_instance_uid == b.study_instance_uid
    merged = merge_study(a, b)
    assert merged.id == a.id and merged.series_count == 1 and merged.instance_count == 2
    assert a.instance_count == 1  # the inputs are not changed
    again = merge_study(
        merged,
        study_from_dataset(
            header("JPEG-LL.dcm"),
            patient_id="p",
            default_tz=SHANGHAI,
            instance=instance_from_dataset(header("JPEG-LL.dcm"), object_key="k", conflict=True),
        ),
    )
    assert again.instance_count == 2
    replaced = [i for i in again.series[0].instances if i.object_key == "k"]
    assert replaced and replaced[0].conflict
    other = study_from_dataset(header("MR_small.dcm"), patient_id="p", default_tz=SHANGHAI)
    other.study_instance_uid = a.study_instance_uid
    assert merge_study(again, other).series_count == 2


def test_instance_carries_store_fields() -> None:
    inst = instance_from_dataset(header("CT_small.dcm"), object_key="ab/cd/x/y.dcm", size=3, sha256="f")
    assert inst == ImagingInstance(
        sop_instance_uid="1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        number=1,
        object_key="ab/cd/x/y.dcm",
        size=3,
        sha256="f",
    )
