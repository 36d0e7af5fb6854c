"""Canonical entities → C-FIND records and response identifiers, over the corpus."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from huizhen.integration.model import Gender, HumanName, Identifier, ImagingStudy, Patient
from huizhen.mappings.dicom import merge_study, patient_from_dataset, study_from_dataset
from huizhen.mappings.dicom_find import (
    find_response,
    instance_record,
    patient_record,
    person_name,
    series_record,
    study_record,
)
from huizhen.mappings.dicom_query import FindQuery, RecordValue
from huizhen.mappings.dicom_read import read_header

from .conftest import MANIFEST, corpus_bytes

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def archive() -> list[tuple[Patient, ImagingStudy]]:
    """Every corpus file indexed: one patient per PatientID, studies merged by UID."""
    patients: dict[str, Patient] = {}
    studies: dict[str, ImagingStudy] = {}
    for entry in MANIFEST:
        ds = read_header(corpus_bytes(entry["path"].rsplit("/", 1)[-1]))
        patient = patient_from_dataset(ds, default_issuer="TEST")
        patient = patients.setdefault(entry["PatientID"] or entry["StudyInstanceUID"], patient)
        study = study_from_dataset(ds, patient_id=patient.id, default_tz=SHANGHAI)
        known = studies.get(study.study_instance_uid)
        studies[study.study_instance_uid] = merge_study(known, study) if known else study
    by_id = {p.id: p for p in patients.values()}
    return [(by_id[s.patient_id], s) for s in studies.values()]


def query(level: str, **keys: str) -> tuple[FindQuery, Dataset]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return FindQuery.from_identifier(identifier), identifier


def study_uids(archive: list[tuple[Patient, ImagingStudy]], q: FindQuery) -> set[str]:
    return {s.study_instance_uid for p, s in archive if q.matches(study_record(s, p))}


def test_study_level_queries_over_the_corpus(archive: list[tuple[Patient, ImagingStudy]]) -> None:
    all_studies = {e["StudyInstanceUID"] for e in MANIFEST}
    assert study_uids(archive, query("STUDY", StudyInstanceUID="")[0]) == all_studies
    in_2004 = {
        e["StudyInstanceUID"]
        for e in MANIFEST
        if e["path"].endswith(("CT_small.dcm", "JPEG-LL.dcm", "MR_small.dcm", "US1_UNCR.dcm"))
    }
    assert study_uids(archive, query("STUDY", StudyDate="20040101-20041231")[0]) == in_2004
    assert study_uids(archive, query("STUDY", StudyDate="-20031231")[0]) == {
        e["StudyInstanceUID"] for e in MANIFEST if e["path"].endswith(("liver_1frame.dcm", "rtplan.dcm"))
    }
    mr = {e["StudyInstanceUID"] for e in MANIFEST if e["Modality"] == "MR"}
    assert study_uids(archive, query("STUDY", ModalitiesInStudy="MR")[0]) == mr
    named = study_uids(archive, query("STUDY", PatientName="compressedsamples^*")[0])
    assert named == {  # PN matching is case-insensitive
        e["StudyInstanceUID"] for e in MANIFEST if e["PatientName"].startswith("CompressedSamples^")
    }
    assert study_uids(archive, query("STUDY", PatientName="王*")[0]) == {
        e["StudyInstanceUID"] for e in MANIFEST if e["path"].endswith("chrX1.dcm")
    }
    assert study_uids(archive, query("STUDY", AccessionNumber="03086212")[0]) == {
        e["StudyInstanceUID"] for e in MANIFEST if e["path"].endswith("liver_1frame.dcm")
    }


def test_study_record_counts_and_time_zone(archive: list[tuple[Patient, ImagingStudy]]) -> None:
    patient, study = next((p, s) for p, s in archive if len(s.series[0].instances) == 2)
    record = study_record(study, patient)
    assert record["NumberOfStudyRelatedInstances"] == 2 and record["ModalitiesInStudy"] == ["NM"]
    assert (record["StudyDate"], record["StudyTime"], record["TimezoneOffsetFromUTC"]) == (
        "20040826",
        "185059",
        "-0400",
    )
    # the date and time written on the images, whatever the server's zone: a query for the date
    # the header holds finds the study (matching is on the values the SOP instances hold)
    shanghai = study_record(study, patient, tz=SHANGHAI)
    assert (shanghai["StudyDate"], shanghai["StudyTime"], shanghai["TimezoneOffsetFromUTC"]) == (
        "20040826", "185059", "-0400")
    assert query("STUDY", StudyDate="20040826")[0].matches(shanghai)
    assert not query("STUDY", StudyDate="20040827")[0].matches(shanghai)
    assert query("STUDY", StudyDate="20040826", StudyTime="1800-1900")[0].matches(shanghai)
    # a study indexed before the header's values were kept: its instant, in the server's zone
    older = dataclasses.replace(study, study_date=None, study_time=None)
    converted = study_record(older, patient, tz=SHANGHAI)
    assert (converted["StudyDate"], converted["StudyTime"], converted["TimezoneOffsetFromUTC"]) == (
        "20040827", "065059", "+0800")


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # pydicom on the date that is none
def test_study_date_without_an_offset_is_read_and_returned_in_the_facility_zone() -> None:
    ds = Dataset()
    ds.update({"PatientID": "P1", "StudyInstanceUID": "1.2.3", "StudyDate": "20261207", "StudyTime": "0830",
               "StudyID": "S1"})
    study = study_from_dataset(ds, patient_id="p", default_tz=SHANGHAI)
    assert (study.study_date, study.study_time) == ("20261207", "0830")
    assert study.started_at is not None and study.started_at.utcoffset() == timedelta(hours=8)
    record = study_record(study, Patient(HumanName()), tz=ZoneInfo("UTC"))
    assert (record["StudyDate"], record["StudyTime"], record["TimezoneOffsetFromUTC"]) == (
        "20261207", "0830", "+0800")
    # a date that is none is neither read into the instant nor kept
    ds.StudyDate, ds.StudyTime = "2026x", "noon"
    bad = study_from_dataset(ds, patient_id="p", default_tz=SHANGHAI)
    assert (bad.started_at, bad.study_date, bad.study_time) == (None, None, None)
    assert study_record(bad, Patient(HumanName()))["StudyDate"] is None


def test_lower_levels_carry_upper_level_keys(archive: list[tuple[Patient, ImagingStudy]]) -> None:
    patient, study = next((p, s) for p, s in archive if s.modalities == ["CT"])
    series = study.series[0]
    instance = series.instances[0]
    record = instance_record(study, series, instance, patient)
    assert record["PatientID"] == "1CT1" and record["StudyInstanceUID"] == study.study_instance_uid
    assert record["Modality"] == "CT" and record["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"
    assert series_record(study, series, patient)["NumberOfSeriesRelatedInstances"] == 1
    q, _ = query("IMAGE", SOPInstanceUID=instance.sop_instance_uid, PatientID="1CT1")
    assert q.matches(record)
    assert patient_record(patient, studies=[study])["NumberOfPatientRelatedInstances"] == 1


def test_patient_record_shows_the_chosen_identifier() -> None:
    patient = Patient(
        name=HumanName.of("张", ("三",)),
        identifiers=[Identifier("HOSP-A", "A1"), Identifier("HOSP-B", "B7")],
        gender=Gender.MALE,
    )
    assert patient_record(patient)["PatientID"] == "A1"
    chosen = patient_record(patient, identifier=patient.identifiers[1])
    assert (chosen["PatientID"], chosen["IssuerOfPatientID"]) == ("B7", "HOSP-B")
    assert chosen["PatientName"] == "张^三" and chosen["PatientSex"] == "M"


@pytest.mark.parametrize(
    ("name", "pn"),
    [
        (HumanName.of("张", ("三",)), "张^三"),
        (HumanName.of("Smith", ("John", "Q")), "Smith^John Q"),
        (HumanName.of("Smith"), "Smith"),
        (HumanName(text="王小東"), "王小東"),
        (HumanName(), None),
    ],
)
def test_person_name(name: HumanName, pn: str | None) -> None:
    assert person_name(name) == pn


def encode_decode(ds: Dataset) -> Dataset:
    """As the DIMSE layer sends it: implicit VR little endian, charset applied."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, ds)
    return read_dataset(BytesIO(out.getvalue()), is_implicit_VR=True, is_little_endian=True)


def test_response_holds_the_requested_keys_in_utf8() -> None:
    patient = Patient(name=HumanName.of("张", ("三丰",)), identifiers=[Identifier("H", "P1")])
    study = ImagingStudy(patient_id=patient.id, study_instance_uid="1.2.3", description="胸部CT")
    q, identifier = query(
        "STUDY",
        SpecificCharacterSet="GB18030",
        PatientName="张*",
        StudyDescription="",
        StudyDate="",
        ReferringPhysicianName="",
        NumberOfStudyRelatedInstances="",
    )
    identifier.ReferencedStudySequence = []
    record = study_record(study, patient)
    assert q.matches(record)
    response = find_response(identifier, record, level=q.level, retrieve_ae="HUIZHEN")
    back = encode_decode(response)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.QueryRetrieveLevel == "STUDY"
    assert str(back.PatientName) == "张^三丰" and back.StudyDescription == "胸部CT"
    assert back.PatientID == "P1" and back.StudyInstanceUID == "1.2.3"  # unique keys always
    assert back.RetrieveAETitle == "HUIZHEN"
    assert back.StudyDate == "" and back.ReferringPhysicianName == ""  # unknown: returned empty
    assert back.NumberOfStudyRelatedInstances == 0
    assert back.ReferencedStudySequence == []
    assert "AccessionNumber" not in back  # not requested


def test_series_response_has_the_unique_keys_of_its_level() -> None:
    q, identifier = query("SERIES", Modality="MR")
    record: dict[str, RecordValue] = {
        "PatientID": "4MR1",
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.2.1",
        "Modality": "MR",
    }
    response = encode_decode(find_response(identifier, record, level=q.level))
    assert (response.StudyInstanceUID, response.SeriesInstanceUID, response.Modality) == ("1.2", "1.2.1", "MR")
    assert "RetrieveAETitle" not in response
