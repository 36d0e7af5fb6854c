"""Canonical study/series/instance → C-FIND records and response identifiers (pure).

A *record* is the flat view C-FIND works on: attribute keyword → value in
DICOM string form (``20040119``, ``张^三``), an int for counts, a list for
multi-valued attributes, None for "known but empty". Every level carries the
attributes of the levels above it, so Study Root queries on patient keys work
at any level. :class:`~huizhen.mappings.dicom_query.FindQuery` matches records;
:func:`find_response` turns a matching record into the identifier sent back.

Responses are always encoded in ISO_IR 192 (UTF-8), whatever the query used:
it holds Chinese names and every other script.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from huizhen.integration.model import (
    HumanName,
    Identifier,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Patient,
)
from huizhen.mappings.dicom_query import QueryLevel, Record, RecordValue
from huizhen.mappings.dicom_values import format_date, format_offset, format_time, parse_date, parse_time

RESPONSE_CHARSET = "ISO_IR 192"
_SEX = {"male": "M", "female": "F", "other": "O"}
# Unique keys a response carries at and above its level (PS3.4 C.4.1.2.3).
_UNIQUE = {
    QueryLevel.PATIENT: ("PatientID",),
    QueryLevel.STUDY: ("PatientID", "StudyInstanceUID"),
    QueryLevel.SERIES: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    QueryLevel.IMAGE: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


def person_name(name: HumanName) -> str | None:
    """A canonical name as a PN value: ``family^given``, in the first component group."""
    if not (name.family or name.given):
        return name.text or None
    return f"{name.family or ''}^{' '.join(name.given)}".rstrip("^")


def patient_record(
    patient: Patient,
    *,
    identifier: Identifier | None = None,
    studies: Sequence[ImagingStudy] = (),
) -> dict[str, RecordValue]:
    """Patient-level attributes; ``identifier`` is the one shown as PatientID (default: first)."""
    record = _patient_attributes(patient, identifier)
    record.update(
        NumberOfPatientRelatedStudies=len(studies),
        NumberOfPatientRelatedSeries=sum(s.series_count for s in studies),
        NumberOfPatientRelatedInstances=sum(s.instance_count for s in studies),
    )
    return record


def _patient_attributes(patient: Patient, identifier: Identifier | None) -> dict[str, RecordValue]:
    shown = identifier or (patient.identifiers[0] if patient.identifiers else None)
    return {
        "PatientName": person_name(patient.name),
        "PatientID": shown.value if shown else None,
        "IssuerOfPatientID": shown.system if shown else None,
        "PatientBirthDate": format_date(patient.birth_date) if patient.birth_date else None,
        "PatientSex": _SEX.get(patient.gender.value) if patient.gender else None,
    }


def study_record(
    study: ImagingStudy,
    patient: Patient,
    *,
    identifier: Identifier | None = None,
    tz: tzinfo | None = None,
) -> dict[str, RecordValue]:
    """Study-level attributes. StudyDate and StudyTime are the header's, as the images hold them
    (with the offset they were read in); a study indexed without them (before they were kept, or
    from FHIR) gives its start converted by ``tz`` (default: as stored)."""
    record = _patient_attributes(patient, identifier)
    record.update(
        StudyInstanceUID=study.study_instance_uid,
        AccessionNumber=study.accession_number,
        StudyID=study.study_id,
        ReferringPhysicianName=study.referring_physician,
        StudyDescription=study.description,
        **_study_date_time(study, tz),
        ModalitiesInStudy=study.modalities,
        NumberOfStudyRelatedSeries=study.series_count,
        NumberOfStudyRelatedInstances=study.instance_count,
    )
    return record


def _study_date_time(study: ImagingStudy, tz: tzinfo | None) -> dict[str, RecordValue]:
    started = study.started_at
    if study.study_date is not None:
        return {"StudyDate": study.study_date, "StudyTime": study.study_time,
                "TimezoneOffsetFromUTC": _written_offset(study) if started else None}
    started = started.astimezone(tz) if started and tz else started
    return {
        "StudyDate": format_date(started) if started else None,
        "StudyTime": format_time(started) if started else None,
        "TimezoneOffsetFromUTC": format_offset(started) if started else None,
    }


def _written_offset(study: ImagingStudy) -> str | None:
    """The UTC offset the header's date and time were read in (its TimezoneOffsetFromUTC, or the
    facility's zone then): what separates them from the instant read from them."""
    day, clock = parse_date(study.study_date), parse_time(study.study_time) or time()
    if day is None or study.started_at is None:
        return None
    started = study.started_at.astimezone(UTC).replace(tzinfo=None)
    offset = datetime.combine(day, clock) - started
    if abs(offset) > timedelta(hours=14) or offset % timedelta(minutes=1):
        return None  # not the instant read from this date and time
    return format_offset(datetime.combine(day, clock, timezone(offset)))


def series_record(
    study: ImagingStudy,
    series: ImagingSeries,
    patient: Patient,
    *,
    identifier: Identifier | None = None,
    tz: tzinfo | None = None,
) -> dict[str, RecordValue]:
    record = study_record(study, patient, identifier=identifier, tz=tz)
    record.update(
        SeriesInstanceUID=series.series_instance_uid,
        Modality=series.modality,
        SeriesNumber=series.number,
        SeriesDescription=series.description,
        BodyPartExamined=series.body_site,
        NumberOfSeriesRelatedInstances=len(series.instances),
    )
    return record


def instance_record(
    study: ImagingStudy,
    series: ImagingSeries,
    instance: ImagingInstance,
    patient: Patient,
    *,
    identifier: Identifier | None = None,
    tz: tzinfo | None = None,
) -> dict[str, RecordValue]:
    record = series_record(study, series, patient, identifier=identifier, tz=tz)
    record.update(
        SOPInstanceUID=instance.sop_instance_uid,
        SOPClassUID=instance.sop_class_uid,
        InstanceNumber=instance.number,
    )
    return record


def find_response(
    identifier: Dataset,
    record: Record,
    *,
    level: QueryLevel,
    retrieve_ae: str | None = None,
) -> Dataset:
    """The identifier of one pending C-FIND response: the requested keys, filled from ``record``.

    Requested keys the record does not know are returned empty; sequences are
    returned empty (sequence matching is not supported).
    """
    response = Dataset()
    response.SpecificCharacterSet = RESPONSE_CHARSET
    response.QueryRetrieveLevel = level.value
    wanted = [e.keyword for e in identifier if e.keyword] + list(_UNIQUE[level])
    if retrieve_ae:
        wanted.append("RetrieveAETitle")
    for keyword in wanted:
        if keyword in ("SpecificCharacterSet", "QueryRetrieveLevel") or keyword in response:
            continue
        value = retrieve_ae if keyword == "RetrieveAETitle" else record.get(keyword)
        _set(response, keyword, value)
    return response


def _set(ds: Dataset, keyword: str, value: RecordValue) -> None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return
    vr = dictionary_VR(tag)
    if vr == "SQ":
        ds.add_new(tag, vr, [])
    elif value is None or value == "":
        ds.add_new(tag, vr, None)
    elif isinstance(value, str | int):
        ds.add_new(tag, vr, str(value) if vr not in ("US", "UL", "SS", "SL") else value)
    else:
        ds.add_new(tag, vr, list(value) or None)
