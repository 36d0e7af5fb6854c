"""The byte scan of received instances agrees with pydicom's full read; the file meta with pynetdicom's."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import pytest
from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom import patient_from_dataset, study_from_dataset
from huizhen.mappings.dicom_part10 import PREAMBLE, Unscannable, file_meta, scan
from huizhen.mappings.dicom_read import read_indexed, read_instance

from .conftest import MANIFEST, corpus_bytes, part10

FILES = [str(e["path"]).rsplit("/", 1)[-1] for e in MANIFEST]
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"  # no pixel data expected


def indexed(ds: Dataset) -> tuple[str, str, str]:
    """What the index takes from a dataset (ids made up by the mapping left out)."""
    patient = dataclasses.replace(patient_from_dataset(ds, default_issuer="FAC", fallback_charset="GB18030"), id="")
    study = study_from_dataset(ds, patient_id="p", default_tz=UTC, fallback_charset="GB18030")
    return repr(patient), repr(dataclasses.replace(study, id="")), str(ds.file_meta.get("TransferSyntaxUID"))


def outcome(read: object, data: bytes) -> tuple[str, object]:
    try:
        return "stored", indexed(read(data))  # type: ignore[operator]
    except BadInput as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("file", FILES)
def test_the_index_gets_what_a_full_read_gives(file: str) -> None:
    data = corpus_bytes(file)
    assert outcome(read_indexed, data) == outcome(read_instance, data)


@pytest.mark.parametrize("file", FILES)
def test_no_cut_a_full_read_refuses_is_taken(file: str) -> None:
    # the scan may be stricter (it checks every element to the last byte), never laxer
    data = corpus_bytes(file)
    cuts = {*range(0, len(data), max(1, len(data) // 60)), *range(max(0, len(data) - 40), len(data))}
    for cut in sorted(cuts):
        full, fast = outcome(read_instance, data[:cut]), outcome(read_indexed, data[:cut])
        assert full[0] == "stored" or fast[0] == "refused", f"cut at {cut} of {len(data)}"
        if fast[0] == "stored":
            assert fast == full


def test_chinese_names_and_a_sequence_survive_the_scan() -> None:
    ds = Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Wang^XiaoDong=王^小东"
    ds.PatientID = "P1"
    other = Dataset()
    other.PatientID = "H-99"
    other.IssuerOfPatientID = "HOSP"
    ds.OtherPatientIDsSequence = [other]
    ds.StudyDescription = "胸部 CT"
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
        data = part10(ds, syntax=syntax)
        assert outcome(read_indexed, data) == outcome(read_instance, data)
        result = outcome(read_indexed, data)
        assert result[0] == "stored" and "王" in result[1][0] and "H-99" in result[1][0]  # type: ignore[index]


def test_deflated_and_big_endian_data_sets_are_left_to_pydicom() -> None:
    for file in ("image_dfl.dcm", "MR_small_bigendian.dcm"):
        with pytest.raises(Unscannable):
            scan(corpus_bytes(file), ())
        assert read_indexed(corpus_bytes(file)).SOPInstanceUID == read_instance(corpus_bytes(file)).SOPInstanceUID


def test_a_missing_uid_is_refused_like_a_full_read() -> None:
    ds = Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.PatientID = "P1"
    ds.SeriesInstanceUID = "1.2.3.4"
    data = part10(ds).replace(b"1.2.3.4\0", b"        ")  # blank, the same length
    assert outcome(read_indexed, data) == outcome(read_instance, data) == ("refused", "missing SeriesInstanceUID")


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"])
@pytest.mark.parametrize("uid", ["1.2.3", "1.2.34"])  # odd and even lengths: padding
def test_file_meta_is_the_bytes_pynetdicom_writes(syntax: str, uid: str) -> None:
    expected = PREAMBLE + encode_file_meta(
        create_file_meta(sop_class_uid=uid, sop_instance_uid=uid + ".5", transfer_syntax=syntax)  # type: ignore[arg-type]
    )
    got = file_meta(uid, uid + ".5", syntax, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION)
    assert got == expected
