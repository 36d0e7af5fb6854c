"""PS3.15 basic profile de-identification over the corpus and synthetic datasets."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset
from pydicom.uid import UID

from huizhen.integration.errors import BadInput
from huizhen.mappings.deidentify import (
    Deidentified,
    date_offset,
    deidentify,
    remap_uid,
    resolve,
)
from huizhen.mappings.deidentify_profile import BASIC_PROFILE
from huizhen.mappings.dicom_read import read_header, read_instance

from .conftest import MANIFEST, corpus_bytes, part10

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def corpus(file: str) -> Dataset:
    return read_instance(corpus_bytes(file))


def text_values(ds: Dataset) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.VR not in ("SQ", "OB", "OW", "UN")]


def round_trip(ds: Dataset) -> Dataset:
    out = BytesIO()
    ds.save_as(out)
    return dcmread(BytesIO(out.getvalue()))


def test_profile_table_names_known_attributes_with_standard_codes() -> None:
    assert len(BASIC_PROFILE) > 400
    unknown = [kw for kw in BASIC_PROFILE if kw not in keyword_dict]
    assert unknown == []
    assert set(BASIC_PROFILE.values()) <= {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    assert BASIC_PROFILE["PatientName"] == "Z" and BASIC_PROFILE["SOPInstanceUID"] == "U"
    assert BASIC_PROFILE["InstitutionName"] == "X/Z/D"
    assert "SOPClassUID" not in BASIC_PROFILE  # class UIDs are not identifying


@pytest.mark.parametrize(
    ("code", "action"),
    [
        ("X", "X"),
        ("Z", "Z"),
        ("D", "D"),
        ("U", "U"),
        ("X/Z", "Z"),
        ("Z/D", "D"),
        ("X/D", "D"),
        ("X/Z/D", "D"),
        ("X/Z/U*", "U"),
    ],
)
def test_compound_codes(code: str, action: str) -> None:
    assert resolve(code) == action


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["path"].rsplit("/", 1)[-1])
def test_corpus_files_lose_identity_and_stay_valid(entry: dict[str, str]) -> None:
    file = entry["path"].rsplit("/", 1)[-1]
    data = corpus_bytes(file)
    original = read_instance(data) if entry["expected_valid"] else read_header(data)
    before = copy.deepcopy(original)
    result = deidentify(original, KEY)
    out = result.dataset
    assert original == before  # input untouched
    assert out.PatientIdentityRemoved == "YES"
    assert out.PatientID == result.pseudonym == str(out.PatientName)
    values = text_values(out)
    for identifying in (entry["PatientID"], entry["StudyInstanceUID"], entry["SOPInstanceUID"]):
        assert not identifying or identifying not in values
    assert not any(e.tag.is_private for e in out.iterall())
    for uid in (out.StudyInstanceUID, out.SeriesInstanceUID, out.SOPInstanceUID):
        assert uid.startswith("2.25.") and UID(uid).is_valid
    assert out.SOPClassUID == entry["SOPClassUID"]
    media_uid = str(original.file_meta.MediaStorageSOPInstanceUID)
    assert out.file_meta.MediaStorageSOPInstanceUID == result.uids[media_uid]
    assert result.uids[entry["StudyInstanceUID"]] == out.StudyInstanceUID
    again = round_trip(out)
    assert again.SOPInstanceUID == out.SOPInstanceUID


def test_dates_shift_by_the_patient_offset_and_times_stay() -> None:
    ct = corpus("CT_small.dcm")
    result = deidentify(ct, KEY)
    out = result.dataset
    assert timedelta(days=-3650) <= result.date_offset <= timedelta(days=-1)
    shifted = date(2004, 1, 19) + result.date_offset
    assert out.StudyDate == shifted.strftime("%Y%m%d")
    assert out.StudyTime == ct.StudyTime
    assert not out.PatientBirthDate
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_same_patient_same_key_links_studies() -> None:
    mr = deidentify(corpus("MR_small.dcm"), KEY)
    mr_implicit = deidentify(corpus("MR_small_implicit.dcm"), KEY)
    assert mr.pseudonym == mr_implicit.pseudonym and mr.date_offset == mr_implicit.date_offset
    assert mr.dataset.StudyInstanceUID == mr_implicit.dataset.StudyInstanceUID
    nm_a = deidentify(corpus("JPEG-LL.dcm"), KEY).dataset
    nm_b = deidentify(corpus("JPEG2000.dcm"), KEY).dataset
    assert nm_a.StudyInstanceUID == nm_b.StudyInstanceUID  # one study, two files
    assert nm_a.SOPInstanceUID != nm_b.SOPInstanceUID


def test_another_key_gives_unlinkable_output() -> None:
    a = deidentify(corpus("MR_small.dcm"), KEY)
    b = deidentify(corpus("MR_small.dcm"), OTHER_KEY)
    assert a.pseudonym != b.pseudonym
    assert a.dataset.StudyInstanceUID != b.dataset.StudyInstanceUID


def test_uid_remapping_is_a_valid_uuid_derived_uid() -> None:
    uid = remap_uid(KEY, "1.2.840.113619.2.55.3.604688119.969.1268071029.320")
    assert uid == remap_uid(KEY, "1.2.840.113619.2.55.3.604688119.969.1268071029.320")
    assert uid.startswith("2.25.") and len(uid) <= 64 and UID(uid).is_valid
    number = int(uid.removeprefix("2.25."))
    assert (number >> 76) & 0xF == 8  # UUID version 8
    assert date_offset(KEY, "H|1") == date_offset(KEY, "H|1") != date_offset(KEY, "H|2")


def test_structured_report_content_is_cleaned() -> None:
    sr = corpus("test-SR.dcm")
    names = {str(e.value) for e in sr.iterall() if e.VR == "PN" and e.value}
    uids = {str(e.value) for e in sr.iterall() if e.keyword in ("UID", "ReferencedSOPInstanceUID")}
    out = deidentify(sr, KEY).dataset
    out_values = set(text_values(out))
    assert names and not (names & out_values)
    assert not (uids & out_values)
    assert "ContentSequence" in out  # D on a sequence: kept, its items cleaned


def build_identifying() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "张^三"
    ds.PatientID = "110101199001011234"
    ds.IssuerOfPatientID = "HOSP-A"
    ds.PatientBirthDate = "19900101"
    ds.PatientAddress = "北京市东城区"
    ds.OtherPatientIDs = "A-9"
    ds.InstitutionName = "某某乡镇卫生院"
    ds.ReferringPhysicianName = "李^医生"
    ds.AccessionNumber = "ACC123"
    ds.StudyDate = "20240301"
    ds.StudyTime = "101500"
    ds.AcquisitionDateTime = "20240301101510.5+0800"
    ds.StudyDescription = "胸部CT"
    ds.BurnedInAnnotation = "YES"
    ds.TimezoneOffsetFromUTC = "+0800"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = [ref]
    ds.add_new(0x00091010, "LO", "private secret")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 4)
    ds.add_new(0x50000010, "US", 1)
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixel data
    return ds


def test_synthetic_identifying_attributes() -> None:
    original = build_identifying()
    result: Deidentified = deidentify(Dataset(original), KEY)
    out = result.dataset
    assert str(out.PatientName) == result.pseudonym and out.PatientID == result.pseudonym
    for removed in ("IssuerOfPatientID", "PatientAddress", "OtherPatientIDs", "StudyDescription"):
        assert removed not in out
    for emptied in ("PatientBirthDate", "AccessionNumber", "ReferringPhysicianName"):
        assert emptied in out and not out[emptied].value
    assert out.InstitutionName == "ANONYMIZED"  # X/Z/D → dummy
    assert out.StudyDate == (date(2024, 3, 1) + result.date_offset).strftime("%Y%m%d")
    assert out.AcquisitionDateTime == out.StudyDate + "101510.5+0800"
    assert out.StudyTime == "101500" and out.TimezoneOffsetFromUTC == "+0800"
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out.SOPInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert 0x00091010 not in out and 0x60003000 not in out and 0x50000010 not in out
    assert result.burned_in
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"] and out.DeidentificationMethod
    values = " ".join(text_values(out))
    for secret in ("张", "110101199001011234", "北京", "卫生院", "李", "private secret"):
        assert secret not in values
    written = read_instance(part10(out))  # still encodes and reads back
    assert written.PatientIdentityRemoved == "YES"


def test_partial_datetime_keeps_its_precision() -> None:
    ds = Dataset()
    ds.PatientID = "P"
    ds.AcquisitionDateTime = "2024"
    out = deidentify(ds, KEY)
    assert len(out.dataset.AcquisitionDateTime) == 4


def test_short_key_is_refused() -> None:
    with pytest.raises(BadInput, match="16 bytes"):
        deidentify(Dataset(), b"short")
