"""The report back to the requesting HIS: an ORU^R01 carrying the expert's conclusion.

Pure: a completed consultation (with its patient, expert and facilities) in,
HL7 v2.5 bytes out (UTF-8, MSH-18 ``UNICODE UTF-8``). The placer order number
the HIS sent (ORC-2/OBR-2) is echoed so the HIS can file the result against
its own order; the consultation number is the filler number (ORC-3/OBR-3).
The diagnosis and the treatment plan travel as OBX text (LOINC 29548-5
"Diagnosis", 18776-5 "Plan of care note"), the expert as OBX-16.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo

from huizhen.integration.model import Consultation, Facility, Gender, Patient, Practitioner

from .delimiters import Delimiters

SENDING_APPLICATION = "HUIZHEN"
REPORT_CODE = "11488-4^Consult note^LN"
_SEX = {Gender.MALE: "M", Gender.FEMALE: "F", Gender.OTHER: "O", Gender.UNKNOWN: "U"}
_D = Delimiters()


@dataclass(frozen=True)
class ReportParties:
    patient: Patient
    expert: Practitioner | None
    requesting_facility: Facility | None
    platform_facility: str = "HZ"


def _ts(value: datetime, tz: tzinfo) -> str:
    local = value.astimezone(tz)
    offset = local.strftime("%z")
    return local.strftime("%Y%m%d%H%M%S") + offset


def _e(text: str | None) -> str:
    return _D.escape_text(text or "")


def build_report(c: Consultation, parties: ReportParties, *, tz: tzinfo, control_id: str | None = None) -> bytes:
    """ORU^R01 for a COMPLETED consultation; raises ValueError for any other state."""
    if c.status.value != "COMPLETED" or c.completed_at is None:
        raise ValueError(f"consultation {c.number} is {c.status.value}; only COMPLETED ones are reported")
    patient, expert = parties.patient, parties.expert
    facility_code = parties.requesting_facility.code if parties.requesting_facility else ""
    when = _ts(c.completed_at, tz)
    placer = f"{_e(c.source_order.value)}^{_e(c.source_order.system)}" if c.source_order else ""
    filler = f"{_e(c.number)}^{SENDING_APPLICATION}"
    ids = "~".join(f"{_e(i.value)}^^^{_e(i.system)}" for i in patient.identifiers)
    name = f"{_e(patient.name.family)}^{_e(''.join(patient.name.given))}" if patient.name.family else _e(
        patient.name.text
    )
    observer = f"{_e(expert.id)}^{_e(expert.name.family)}^{_e(''.join(expert.name.given))}" if expert else ""
    birth = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    sex = _SEX.get(patient.gender, "") if patient.gender else ""
    segments = [
        f"MSH|^~\\&|{SENDING_APPLICATION}|{parties.platform_facility}||{_e(facility_code)}|{_ts(datetime.now(tz), tz)}"
        f"||ORU^R01^ORU_R01|{control_id or uuid.uuid4().hex[:20]}|P|2.5|||AL|NE||UNICODE UTF-8",
        f"PID|1||{ids}||{name}||{birth}|{sex}",
        f"ORC|RE|{placer}|{filler}||CM",
        f"OBR|1|{placer}|{filler}|{REPORT_CODE}|||{when}|||||||||||||||{when}|||F",
        f"OBX|1|ST|29548-5^Diagnosis^LN||{_e(c.diagnosis)}||||||F|||{when}||{observer}",
        f"OBX|2|TX|18776-5^Plan of care note^LN||{_e(c.treatment_plan)}||||||F|||{when}||{observer}",
    ]
    if c.disease_code:
        segments.append(f"OBX|3|CWE|29308-4^Diagnosis^LN||{_e(c.disease_code)}^{_e(c.disease_name)}^I10||||||F")
    return ("\r".join(segments) + "\r").encode("utf-8")
