"""The plain header of a received instance maps as pydicom's Dataset of the same bytes does."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from huizhen.mappings.dicom_header import PlainHeader, plain_header
from huizhen.mappings.dicom_part10 import scan
from huizhen.mappings.dicom_read import _INDEXED_TAGS, read_indexed, read_instance

from .conftest import corpus_bytes, part10
from .test_dicom_part10 import FILES, outcome

IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def header(data: bytes) -> PlainHeader | None:
    return plain_header(data, scan(data, _INDEXED_TAGS))


def image(**attributes: object) -> Dataset:
    """A small CT image with the attributes given (keyword=value)."""
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 2, 2, 8, 1
    ds.PixelData = b"\x01\x02\x03\x04"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def ids(*entries: tuple[str, str | None, str | None]) -> Sequence:
    """Other Patient IDs items: (PatientID, IssuerOfPatientID, a qualifier's UniversalEntityID)."""
    items = []
    for value, issuer, universal in entries:
        item = Dataset()
        item.PatientID = value
        if issuer is not None:
            item.IssuerOfPatientID = issuer
        if universal is not None:
            qualifier = Dataset()
            qualifier.UniversalEntityID = universal
            qualifier.UniversalEntityIDType = "ISO"
            item.IssuerOfPatientIDQualifiersSequence = [qualifier]
        items.append(item)
    return Sequence(items)


@pytest.mark.parametrize("file", FILES)
def test_corpus_headers_are_read_plainly_and_map_alike(file: str) -> None:
    data = corpus_bytes(file)
    try:
        found = scan(data, _INDEXED_TAGS)
    except Exception:  # not scanned (no Part 10 preamble, a cut file…): read by pydicom, to the same end
        found = None
    if found is not None:
        assert plain_header(data, found) is not None
    assert outcome(read_indexed, data) == outcome(read_instance, data)


VARIANTS = {
    "ascii": {"PatientName": "Doe^John^^^", "PatientID": "P-1", "AccessionNumber": "A 7 ", "InstanceNumber": "12",
              "SeriesNumber": " 3", "StudyDate": "20240131", "StudyTime": "101530.25", "PatientSex": "F",
              "PatientBirthDate": "19700101", "ReferringPhysicianName": "^^^^", "Modality": "CT"},
    "utf8 names": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Wang^XiaoDong=王^小东",
                   "StudyDescription": "胸部 CT", "PatientID": "P2"},
    "gb18030": {"SpecificCharacterSet": "GB18030", "PatientName": "张^三丰", "ReferringPhysicianName": "李^四"},
    "several values": {"PatientID": "P3", "Modality": "CT", "StudyDescription": "a\\b",
                       "ReferringPhysicianName": "A^B\\C^D"},
    "frames zero": {"NumberOfFrames": "0"},
    "frames two": {"NumberOfFrames": "2"},
    "frames zero, pixels short": {"NumberOfFrames": "0", "PixelData": b"\x01\x02"},  # refused: one frame is 4
    "odd numbers": {"InstanceNumber": "+0", "SeriesNumber": "-4"},
    "empty values": {"PatientName": "", "PatientID": "", "StudyDate": "", "InstanceNumber": None,
                     "AccessionNumber": ""},
    "other ids": {"PatientID": "P4", "IssuerOfPatientID": "HOSP",
                  "OtherPatientIDsSequence": ids(("H-1", "HIS", None), ("H-2", None, "1.2.3"), ("P4", "HOSP", None))},
    "other ids, no issuer": {"PatientID": "P5", "OtherPatientIDsSequence": ids(("X-1", None, None))},
    "qualifiers alone": {"PatientID": "P6", "IssuerOfPatientIDQualifiersSequence": ids(("", None, None))[:0]},
    "timezone": {"StudyDate": "20240131", "StudyTime": "2300", "TimezoneOffsetFromUTC": "+0800"},
}


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_synthetic_headers_map_alike(name: str, syntax: str) -> None:
    data = part10(image(**VARIANTS[name]), syntax=syntax)
    assert header(data) is not None
    assert outcome(read_indexed, data) == outcome(read_instance, data)


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT])
def test_a_gb18030_name_without_character_set_maps_alike(syntax: str) -> None:
    ds = image(PatientID="P7")
    ds.add_new(0x00100010, "PN", "张^三".encode("gb18030"))  # no Specific Character Set: the fallback decodes
    data = part10(ds, syntax=syntax)
    assert header(data) is not None
    assert outcome(read_indexed, data) == outcome(read_instance, data)
    assert "张" in outcome(read_indexed, data)[1][0]  # type: ignore[index]


def test_values_are_those_a_dataset_gives() -> None:
    ds = image(PatientName="Doe^John", PatientID="P8 ", InstanceNumber="7", SpecificCharacterSet="ISO_IR 100",
               OtherPatientIDsSequence=ids(("H-9", "HIS", "2.16.1")))
    data = part10(ds, syntax=EXPLICIT)
    plain, full = header(data), read_instance(data)
    assert plain is not None
    for keyword in ("SOPInstanceUID", "SOPClassUID", "PatientID", "InstanceNumber", "Rows", "SpecificCharacterSet"):
        assert plain.get(keyword) == full.get(keyword), keyword
        assert type(plain.get(keyword)) is type(full.get(keyword)), keyword
    assert str(plain.PatientName) == str(full.PatientName)
    [item] = plain.OtherPatientIDsSequence
    assert (item.PatientID, item.IssuerOfPatientID) == ("H-9", "HIS")
    assert item.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == "2.16.1"
    assert "StudyDate" not in plain and plain.get("StudyDate", "none") == "none"
    with pytest.raises(AttributeError):
        _ = plain.StudyDate
    assert plain.file_meta.get("TransferSyntaxUID") == EXPLICIT
    assert plain.get("NotAKeyword", "default") == full.get("NotAKeyword", "default") == "default"
    assert "NotAKeyword" not in plain  # (a Dataset raises ValueError here; the mapping never asks)


def test_a_sequence_where_the_dictionary_has_a_value_is_left_to_pydicom() -> None:
    data = part10(image(PatientID="P10"), syntax=EXPLICIT)
    item = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # one empty item
    sq = b"\x10\x00\x21\x00SQ\x00\x00" + len(item).to_bytes(4, "little") + item  # IssuerOfPatientID (LO) as SQ
    at = data.index(b"\x10\x00\x20\x00LO")  # insert before PatientID's successor: after PatientID
    end = at + 8 + int.from_bytes(data[at + 6 : at + 8], "little")
    data = data[:end] + sq + data[end:]
    assert header(data) is None
    assert outcome(read_indexed, data) == outcome(read_instance, data)


def test_an_item_with_its_own_character_set_is_left_to_pydicom() -> None:
    other = Dataset()
    other.SpecificCharacterSet = "ISO_IR 192"
    other.PatientID = "Ü-1"
    data = part10(image(PatientID="P9", OtherPatientIDsSequence=[other]), syntax=EXPLICIT)
    assert header(data) is None
    assert outcome(read_indexed, data) == outcome(read_instance, data)
