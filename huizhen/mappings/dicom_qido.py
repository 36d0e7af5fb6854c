"""QIDO-RS query parameters as a C-FIND identifier (PS3.18 8.3.4, 10.6), pure.

``/studies?PatientID=1CT1&StudyDate=20040101-&includefield=StudyDescription``
becomes a STUDY level identifier holding the matching keys, the level's
default return attributes (PS3.18 table 10.6.3-3/4/5) and the included
fields, so the C-FIND matching rules (wildcards, ranges, UID lists, PN) are
the QIDO-RS ones too. Keys are keywords or eight hex digits (``00100020``);
``limit`` and ``offset`` page the results; ``fuzzymatching=true`` is accepted and
not honoured (no fuzzy PN matching): :attr:`QidoQuery.fuzzy` lets the caller
send the Warning PS3.18 asks for then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom_query import QueryLevel

MAX_LIMIT = 1000

STUDY_FIELDS = (
    "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName", "PatientName",
    "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
    "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)
SERIES_FIELDS = (
    "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID", "BodyPartExamined",
    "NumberOfSeriesRelatedInstances",
)
INSTANCE_FIELDS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber")
_FIELDS = {
    QueryLevel.STUDY: STUDY_FIELDS,
    QueryLevel.SERIES: STUDY_FIELDS + SERIES_FIELDS,
    QueryLevel.IMAGE: STUDY_FIELDS + SERIES_FIELDS + INSTANCE_FIELDS,
}
_CONTROL = frozenset({"limit", "offset", "fuzzymatching", "includefield"})


@dataclass(frozen=True)
class QidoQuery:
    identifier: Dataset
    limit: int
    offset: int
    fuzzy: bool = False  # fuzzymatching=true was asked (and only literal matching is done)


def qido_query(
    level: QueryLevel, params: Iterable[tuple[str, str]], *, study_uid: str | None = None,
    series_uid: str | None = None,
) -> QidoQuery:
    """The identifier for ``level`` from the query string pairs; :class:`BadInput` names a bad one."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    for keyword in _FIELDS[level]:
        _set(ds, keyword, "")
    limit, offset, fuzzy = MAX_LIMIT, 0, False
    for name, value in params:
        if name == "includefield":
            for item in value.split(","):
                if item.strip() and item.strip() != "all":
                    _set(ds, _keyword(item.strip()), "", overwrite=False)
        elif name == "limit":
            limit = min(_count(name, value), MAX_LIMIT)
        elif name == "offset":
            offset = _count(name, value)
        elif name == "fuzzymatching":
            fuzzy = fuzzy or value.strip().lower() == "true"
        elif name not in _CONTROL:
            _set(ds, _keyword(name), value)
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    return QidoQuery(ds, limit, offset, fuzzy)


def _keyword(name: str) -> str:
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        keyword = keyword_for_tag(int(name, 16))
    else:
        keyword = name if tag_for_keyword(name) is not None else ""
    if not keyword or keyword in ("QueryRetrieveLevel", "PixelData"):
        raise BadInput(f"{name!r} is not a DICOM attribute QIDO-RS can match or return")
    return keyword


def _set(ds: Dataset, keyword: str, value: str, *, overwrite: bool = True) -> None:
    if keyword in ds and not overwrite:
        return
    tag = tag_for_keyword(keyword)
    if tag is None:  # not reachable for the keywords above
        raise BadInput(f"unknown attribute {keyword!r}")
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        if value:
            raise BadInput(f"{keyword} is a sequence: QIDO-RS matching on sequences is not supported")
        ds.add_new(tag, vr, [])
        return
    if vr == "UI":
        value = value.replace(",", "\\")  # QIDO-RS lists UIDs with commas, C-FIND with backslashes
    if vr in ("US", "UL", "SS", "SL", "FL", "FD", "IS", "DS") and value:
        try:
            float(value)
        except ValueError as exc:
            raise BadInput(f"{keyword}={value!r} is not a number") from exc
    ds.add_new(tag, vr, value if value else None)


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise BadInput(f"{name} must be a whole number, not {value!r}")
    return int(value)
