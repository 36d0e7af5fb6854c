"""De-identify a DICOM dataset: PS3.15 E.1 Basic Profile with Modified Dates.

:func:`deidentify` applies the Basic Application Level Confidentiality
Profile (table in :mod:`huizhen.mappings.deidentify_profile`) plus the
"Retain Longitudinal Temporal Information with Modified Dates" option, so a
teaching case keeps the intervals between a patient's studies. It is pure: the
input is not touched, and the same key gives the same output, so separate
exports of one patient's studies stay linked to each other and to nothing else.

How each action is carried out:

* X removes; Z empties; D writes a dummy value of the VR; U maps the UID to
  ``2.25.<n>`` where n is a keyed hash of it (the same UID always maps to the
  same new UID, and no one without the key can map it back).
* Compound codes resolve towards keeping the element (``X/Z`` → Z,
  ``X/D``/``Z/D``/``X/Z/D`` → D, ``X/Z/U*`` → U): without knowing each IOD's
  attribute types this never breaks a Type 1 or Type 2 attribute and still
  removes the information.
* A sequence that is kept, dummied or UID-mapped is cleaned item by item with
  the same rules, so UIDs and names inside references and SR content are
  handled too.
* Dates: every DA and DT value except the patient's birth date and time is
  moved back by a per-patient offset of 1–3650 days derived from the key and
  the patient's identity; times of day are kept (the offset is whole days).
* PatientID and PatientName become a keyed pseudonym (Z allows a dummy value),
  so exported studies of one patient group together.
* Private attributes and the curve/overlay repeating groups are removed; PN
  attributes the table does not name are emptied.
* PatientIdentityRemoved = YES, DeidentificationMethod and its code sequence,
  LongitudinalTemporalInformationModified = MODIFIED are set.

Burned-in annotation in the pixels is not touched: :attr:`Deidentified.burned_in`
tells the caller when the header says there is some.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from huizhen.integration.errors import BadInput
from huizhen.mappings.deidentify_profile import BASIC_PROFILE
from huizhen.mappings.dicom_values import temporal_bound

METHOD = "DICOM PS3.15 E.1 Basic Profile; Modified Dates (Huizhen)"
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
_DUMMY_TEXT = {"PN": "ANONYMOUS", "AS": "000Y", "IS": "0", "DS": "0", "UR": "urn:anonymous"}
_NUMBER_VRS = {"US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"}
_BYTES_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_BIRTH = {"PatientBirthDate", "PatientBirthTime"}
_PSEUDONYMISED = {"PatientID", "PatientName"}
_KEPT_WITH_DATES = {"TimezoneOffsetFromUTC"}  # "C" under the Modified Dates option
_MAX_OFFSET_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Deidentified:
    dataset: Dataset
    pseudonym: str  # the new PatientID and PatientName
    date_offset: timedelta  # added to every shifted date (negative)
    uids: Mapping[str, str]  # original UID → new UID, for every UID replaced
    burned_in: bool  # BurnedInAnnotation = YES: the pixels still need review


def resolve(code: str) -> str:
    """The single action a (possibly compound) profile code is carried out as."""
    if "U" in code:
        return "U"
    if "D" in code:
        return "D"
    return "Z" if "Z" in code else code


def remap_uid(key: bytes, uid: str) -> str:
    """A UUID-derived UID (``2.25.<n>``, PS3.5 B.2) that is a keyed hash of ``uid``."""
    raw = bytearray(_mac(key, "uid", uid)[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # UUID version 8 (custom)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"2.25.{int.from_bytes(raw, 'big')}"


def date_offset(key: bytes, patient: str) -> timedelta:
    """The per-patient shift: 1 to 3650 days into the past."""
    n = int.from_bytes(_mac(key, "date-offset", patient)[:8], "big")
    return -timedelta(days=1 + n % _MAX_OFFSET_DAYS)


def pseudonym(key: bytes, patient: str) -> str:
    return "HZ" + _mac(key, "patient", patient)[:8].hex().upper()


def patient_key(ds: Dataset) -> str:
    """What identifies the patient for offsets and pseudonyms (the study if no PatientID)."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if not pid:
        return "study:" + str(ds.get("StudyInstanceUID", "")).strip()
    return f"{str(ds.get('IssuerOfPatientID', '') or '').strip()}|{pid}"


def deidentify(ds: Dataset, key: bytes, *, method: str = METHOD) -> Deidentified:
    """A de-identified copy of ``ds``; ``key`` (at least 16 bytes) makes it repeatable."""
    if len(key) < 16:
        raise BadInput("the de-identification key must be at least 16 bytes")
    who = patient_key(ds)
    work = _Work(key, date_offset(key, who), pseudonym(key, who))
    out = copy.deepcopy(ds)
    work.clean(out)
    meta = getattr(out, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = work.uid(str(meta.MediaStorageSOPInstanceUID))
    _mark(out, method)
    return Deidentified(
        dataset=out,
        pseudonym=work.pseudonym,
        date_offset=work.offset,
        uids=dict(work.uids),
        burned_in=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
    )


class _Work:
    def __init__(self, key: bytes, offset: timedelta, pseudonym: str) -> None:
        self.key, self.offset, self.pseudonym = key, offset, pseudonym
        self.uids: dict[str, str] = {}

    def clean(self, ds: Dataset) -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private or (tag.group & 0xFF00) == 0x5000 or _is_overlay_text(tag):
                del ds[tag]
                continue
            action = resolve(BASIC_PROFILE.get(elem.keyword, ""))
            if elem.keyword in _PSEUDONYMISED:
                elem.value = self.pseudonym
            elif elem.VR in ("DA", "DT", "TM") and elem.keyword not in _BIRTH:
                self._shift(elem)
            elif elem.keyword in _KEPT_WITH_DATES:
                continue
            elif action == "X":
                del ds[tag]
            elif elem.VR == "SQ":
                self._sequence(elem, action)
            elif action == "Z" or (elem.VR == "PN" and not action):
                elem.value = None
            elif action == "D":
                elem.value = _dummy(elem.VR)
            elif action == "U":
                elem.value = self._uids(elem.value)

    def uid(self, value: str) -> str:
        value = value.strip()
        if value not in self.uids:
            self.uids[value] = remap_uid(self.key, value)
        return self.uids[value]

    def _uids(self, value: object) -> object:
        if isinstance(value, MultiValue | list):
            return [self.uid(str(v)) for v in value if str(v).strip()]
        return self.uid(str(value)) if value and str(value).strip() else value

    def _sequence(self, elem: DataElement, action: str) -> None:
        if action == "Z":
            elem.value = Sequence()
            return
        for item in elem.value:
            self.clean(item)

    def _shift(self, elem: DataElement) -> None:
        if elem.VR == "TM" or not elem.value:
            return  # whole-day offset: times of day are unchanged
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        shifted = [_shift_text(elem.VR, str(v), self.offset) for v in values]
        elem.value = shifted if len(shifted) > 1 else shifted[0]


def _shift_text(vr: str, text: str, offset: timedelta) -> str:
    """Move a DA or DT value by ``offset``, keeping its precision and the time part."""
    text = text.strip().replace(".", "") if vr == "DA" else text.strip()
    if not text:
        return text
    padded = temporal_bound("DA", text[:8], upper=False)
    try:
        day = date(int(padded[:4]), int(padded[4:6]), int(padded[6:8])) + offset
    except ValueError:
        return ""  # not a date we can move: drop it rather than leak it
    moved = day.strftime("%Y%m%d")
    return moved[: min(len(text), 8)] + text[8:] if vr == "DT" else moved


def _dummy(vr: str) -> object:
    if vr in _NUMBER_VRS:
        return 0
    if vr in _BYTES_VRS:
        return b"\x00\x00"
    return _DUMMY_TEXT.get(vr, "ANONYMIZED")


def _is_overlay_text(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return (group & 0xFF00) == 0x6000 and element in (0x3000, 0x4000)


def _mark(ds: Dataset, method: str) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method[:64]
    codes = []
    for value, meaning in _METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _mac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
