"""DICOM header → canonical model (pure).

:mod:`huizhen.mappings.dicom_read` turns received bytes into a checked
Dataset; the ``*_from_dataset`` functions here build canonical entities from
it. Nothing here touches a socket, a file or the database.

Decisions worth knowing:

* Patient names keep Chinese intact. Of the three PN component groups
  (alphabetic, ideographic, phonetic) the first one written in CJK wins, else
  the first non-empty one; the canonical :class:`HumanName` holds one name, so
  the other groups (usually pinyin) are not kept.
* Study times honour Timezone Offset From UTC (0008,0201) when the dataset
  carries it (the standard says it applies to every DA/TM in the instance);
  otherwise they are read in ``default_tz``, the facility's zone. That instant
  (``started_at``) orders studies and is what the API and FHIR show; the
  StudyDate and StudyTime as written are kept beside it (``study_date``,
  ``study_time``) for C-FIND and QIDO-RS, which match and return the values
  the images hold, not the instant in the server's zone.
* A missing PatientID is not an error here: the patient gets no identifier and
  the caller decides (create an unidentified patient, answer a warning).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, time, tzinfo

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from huizhen.integration.model import (
    Gender,
    HumanName,
    Identifier,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Patient,
)
from huizhen.mappings.dicom_header import PlainHeader
from huizhen.mappings.dicom_values import (
    clean_text,
    has_cjk,
    parse_date,
    parse_offset,
    parse_time,
)

# what the functions here read: a pydicom Dataset, or the plain values of a received header
Header = Dataset | PlainHeader
_DA_TM_MAX = 16  # the study_date / study_time columns' width (a DA is 8 characters, a TM at most 16)
_GENDERS = {"M": Gender.MALE, "F": Gender.FEMALE, "O": Gender.OTHER}
# every top-level attribute the ``*_from_dataset`` functions read: a C-STORE decodes these alone
HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
    "Modality", "TimezoneOffsetFromUTC", "StudyDescription", "SeriesDescription", "PatientName", "PatientID",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthDate", "PatientSex",
    "OtherPatientIDsSequence", "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "InstanceNumber", "StudyID", "ReferringPhysicianName",
)


def human_name(value: PersonName | str | None) -> HumanName:
    """A DICOM PN value (``Wang^XiaoDong=王^小東=``) as a canonical name."""
    if value is None:
        return HumanName()
    groups = [g.strip() for g in clean_text(str(value)).split("=")]
    chosen = next((g for g in groups[:2] if has_cjk(g)), None)
    if chosen is None:
        chosen = next((g for g in groups if g.strip("^ ")), "")
    parts = [p.strip() for p in chosen.split("^")] + [""] * 5
    family, given, middle = parts[0], parts[1], parts[2]
    if not (family or given or middle):
        return HumanName()
    return HumanName.of(family or None, tuple(p for p in (given, middle) if p))


def patient_name(ds: Header, *, fallback_charset: str | None = None) -> HumanName:
    """PatientName; ``fallback_charset`` (e.g. GB18030) decodes senders that omit the charset."""
    if "PatientName" not in ds:
        return HumanName()
    value = ds.PatientName
    if fallback_charset and "SpecificCharacterSet" not in ds and isinstance(value, PersonName):
        raw = value.original_string
        if isinstance(raw, bytes) and any(b > 0x7F for b in raw):
            return human_name(raw.decode(fallback_charset, errors="replace"))
    return human_name(value)


def gender(ds: Header) -> Gender | None:
    sex = _text(ds, "PatientSex")
    if not sex:
        return None
    return _GENDERS.get(sex.upper(), Gender.UNKNOWN)


def patient_identifiers(ds: Header, *, default_issuer: str) -> list[Identifier]:
    """PatientID under its issuer, then Other Patient IDs Sequence entries."""
    found: list[Identifier] = []
    items = [ds, *ds.get("OtherPatientIDsSequence", [])]
    for item in items:
        value = _text(item, "PatientID")
        identifier = Identifier(system=_issuer(item) or default_issuer, value=value or "")
        if value and identifier not in found:
            found.append(identifier)
    return found


def _issuer(item: Header) -> str | None:
    issuer = _text(item, "IssuerOfPatientID")
    if issuer:
        return issuer
    for qualifiers in item.get("IssuerOfPatientIDQualifiersSequence", []):
        universal = _text(qualifiers, "UniversalEntityID")
        if universal:
            return universal
    return None


def patient_from_dataset(ds: Header, *, default_issuer: str, fallback_charset: str | None = None) -> Patient:
    """A patient from the header; ``default_issuer`` names PatientIDs without IssuerOfPatientID."""
    return Patient(
        name=patient_name(ds, fallback_charset=fallback_charset),
        identifiers=patient_identifiers(ds, default_issuer=default_issuer),
        gender=gender(ds),
        birth_date=parse_date(_text(ds, "PatientBirthDate")),
    )


def instance_from_dataset(
    ds: Header,
    *,
    object_key: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    conflict: bool = False,
) -> ImagingInstance:
    return ImagingInstance(
        sop_instance_uid=_text(ds, "SOPInstanceUID") or "",
        sop_class_uid=_text(ds, "SOPClassUID"),
        number=_int(ds, "InstanceNumber"),
        object_key=object_key,
        size=size,
        sha256=sha256,
        conflict=conflict,
    )


def series_from_dataset(ds: Header, *, fallback_charset: str | None = None) -> ImagingSeries:
    return ImagingSeries(
        series_instance_uid=_text(ds, "SeriesInstanceUID") or "",
        modality=_text(ds, "Modality"),
        number=_int(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription", fallback_charset),
        body_site=_text(ds, "BodyPartExamined"),
    )


def study_from_dataset(
    ds: Header,
    *,
    patient_id: str,
    default_tz: tzinfo,
    instance: ImagingInstance | None = None,
    fallback_charset: str | None = None,
) -> ImagingStudy:
    """A study holding this instance's series and the instance itself."""
    series = series_from_dataset(ds, fallback_charset=fallback_charset)
    series.instances.append(instance or instance_from_dataset(ds))
    day, clock = study_date_time(ds)
    return ImagingStudy(
        patient_id=patient_id,
        study_instance_uid=_text(ds, "StudyInstanceUID") or "",
        accession_number=_text(ds, "AccessionNumber"),
        description=_text(ds, "StudyDescription", fallback_charset),
        started_at=study_datetime(ds, default_tz),
        series=[series],
        study_id=_text(ds, "StudyID"),
        referring_physician=_person(ds, "ReferringPhysicianName", fallback_charset),
        study_date=day,
        study_time=clock,
    )


def merge_study(existing: ImagingStudy, incoming: ImagingStudy) -> ImagingStudy:
    """A copy of ``existing`` with the series and instances of ``incoming`` added.

    Known instances (same SOP Instance UID) are replaced by the incoming ones,
    empty study and series fields are filled; ids stay those of ``existing``.
    """
    dated = existing if existing.started_at else incoming
    merged = dataclasses.replace(
        existing,
        accession_number=existing.accession_number or incoming.accession_number,
        description=existing.description or incoming.description,
        # the date and time as written go with the instant read from them
        started_at=dated.started_at, study_date=dated.study_date, study_time=dated.study_time,
        study_id=existing.study_id or incoming.study_id,
        referring_physician=existing.referring_physician or incoming.referring_physician,
        series=[dataclasses.replace(s, instances=list(s.instances)) for s in existing.series],
    )
    by_uid = {s.series_instance_uid: s for s in merged.series}
    for new in incoming.series:
        current = by_uid.get(new.series_instance_uid)
        if current is None:
            copy = dataclasses.replace(new, instances=list(new.instances))
            merged.series.append(copy)
            by_uid[copy.series_instance_uid] = copy
            continue
        for field in ("modality", "number", "description", "body_site"):
            if getattr(current, field) is None:
                setattr(current, field, getattr(new, field))
        known = {i.sop_instance_uid: n for n, i in enumerate(current.instances)}
        for inst in new.instances:
            if inst.sop_instance_uid in known:
                current.instances[known[inst.sop_instance_uid]] = inst
            else:
                current.instances.append(inst)
    return merged


def study_date_time(ds: Header) -> tuple[str | None, str | None]:
    """The header's StudyDate and StudyTime as sent, for C-FIND and QIDO-RS to match and return
    as the images hold them; a date or time that is none (which :func:`study_datetime` does not
    read either) is not kept, nor a time without its date."""
    day, clock = _text(ds, "StudyDate"), _text(ds, "StudyTime")
    if day is None or parse_date(day) is None or len(day) > _DA_TM_MAX:
        return None, None
    if clock is not None and (parse_time(clock) is None or len(clock) > _DA_TM_MAX):
        clock = None
    return day, clock


def study_datetime(ds: Header, default_tz: tzinfo) -> datetime | None:
    """StudyDate + StudyTime as an aware datetime; midnight when the time is missing."""
    day = parse_date(_text(ds, "StudyDate"))
    if day is None:
        return None
    clock = parse_time(_text(ds, "StudyTime")) or time()
    zone = parse_offset(_text(ds, "TimezoneOffsetFromUTC")) or default_tz
    return datetime.combine(day, clock, tzinfo=zone)


def _text(ds: Header, keyword: str, fallback_charset: str | None = None) -> str | None:
    """A single-valued string attribute, stripped; None when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        value = str(value[0]) if isinstance(value, MultiValue) and value else str(value)
    if fallback_charset and "SpecificCharacterSet" not in ds and not value.isascii():
        # without a charset pydicom decoded as ISO 8859-1; undo it and decode properly
        value = value.encode("latin-1", errors="replace").decode(fallback_charset, "replace")
    return clean_text(value).strip() or None


def _person(ds: Header, keyword: str, fallback_charset: str | None = None) -> str | None:
    """A PN value as sent (every group), None when it names nobody (``^^^^``)."""
    value = _text(ds, keyword, fallback_charset)
    return value if value and value.strip("^= ") else None


def _int(ds: Header, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None
