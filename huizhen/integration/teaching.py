"""Teaching cases: what a completed consultation teaches, with the patient taken out.

:func:`build_case` turns a COMPLETED consultation into a de-identified case:
the patient becomes a keyed pseudonym, an age band and a sex; free text
(chief complaint, opinion, plan) is scrubbed of the patient's name, their
identifiers, phone numbers, ID-card numbers, addresses and dates; the
expert's flags become learning points. :func:`rank_cases` orders cases for a
viewer by relevance to the disease codes of their own recent consultations
(same ICD-10 code, then same category, then same chapter), then recency.
Pure: the caller supplies the pseudonym (HMAC with the pseudonym key) and the
clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from huizhen.integration.model import Consultation, ConsultationStatus, Patient, new_id

LEARNING_POINTS = {
    "MISDIAGNOSIS_RISK": "误诊风险：基层易误诊，注意鉴别诊断",
    "RARE_DISEASE": "罕见病：识别要点与转诊时机",
    "EMERGENCY_HANDLING": "急症处理：早期识别与急救措施",
}

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_LONG_NUMBER = re.compile(r"(?<![\d.])\d{6,}(?![\d.])")  # record numbers, MRNs
_DATE = re.compile(
    r"\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?|\d{1,2}\s*月\s*\d{1,2}\s*日"
)
_ADDRESS = re.compile(  # a street with a house number, or a village under a township
    r"[\u4e00-\u9fff\d]{2,20}?(?:路|街|巷|弄|大道)\d+号[\d栋幢单元室楼-]*"
    r"|[\u4e00-\u9fff]{1,8}(?:镇|乡)[\u4e00-\u9fff]{1,6}村"
)


@dataclass(frozen=True, slots=True)
class TeachingCase:
    consultation_id: str  # kept for provenance inside the platform; never shown as a patient link
    pseudonym: str
    age_band: str | None
    sex: str | None
    department: str
    diagnosis_code: str | None
    diagnosis: str
    chief_complaint: str
    symptoms: tuple[dict[str, object], ...]
    expert_opinion: str | None
    treatment_plan: str | None
    learning_points: tuple[str, ...]
    completed_at: datetime | None
    study_uids: tuple[str, ...] = ()  # de-identified copies, remapped UIDs
    id: str = field(default_factory=new_id)


def age_band(birth: date | None, at: date) -> str | None:
    if birth is None:
        return None
    years = at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))
    if years < 1:
        return "<1"
    if years < 5:
        return "1-4"
    if years < 10:
        return "5-9"
    if years >= 90:
        return "90+"
    low = years // 10 * 10
    return f"{low}-{low + 9}"


def scrub(text: str | None, patient: Patient) -> str | None:
    """Free text without the patient's direct identifiers."""
    if text is None:
        return None
    secrets = {patient.name.text, "".join(patient.name.given), patient.phone or "", patient.address or ""}
    if patient.name.family and patient.name.given:
        secrets.add(patient.name.family + "".join(patient.name.given))
    secrets.update(i.value for i in patient.identifiers)
    for value in sorted((s for s in secrets if len(s.strip()) >= 2), key=len, reverse=True):
        text = text.replace(value, "[已隐去]")
    if patient.name.family and len(patient.name.family) <= 2:
        # "王某某", "王先生/女士/大爷": the family name with a form of address still points at the patient
        text = re.sub(re.escape(patient.name.family) + r"(?=先生|女士|大爷|大妈|阿姨|老师|某)", "[已隐去]", text)
    for pattern, label in ((_ID_CARD, "[证件号]"), (_PHONE, "[电话]"), (_DATE, "[日期]"),
                           (_ADDRESS, "[地址]"), (_LONG_NUMBER, "[编号]")):
        text = pattern.sub(label, text)
    return text


def build_case(
    c: Consultation, patient: Patient, *, pseudonym: str, flags: Iterable[str] = (),
    disease_name: str | None = None, study_uids: Sequence[str] = (),
) -> TeachingCase:
    if c.status is not ConsultationStatus.COMPLETED:
        raise ValueError(f"only a COMPLETED consultation becomes a teaching case, not {c.status.value}")
    at = (c.completed_at or c.created_at or datetime.now()).date()
    points = tuple(LEARNING_POINTS[f] for f in dict.fromkeys(flags) if f in LEARNING_POINTS)
    return TeachingCase(
        consultation_id=c.id,
        pseudonym=pseudonym,
        age_band=age_band(patient.birth_date, at),
        sex=patient.gender.value if patient.gender else None,
        department=c.department,
        diagnosis_code=c.disease_code,
        diagnosis=scrub(c.diagnosis, patient) or disease_name or c.disease_code or "",
        chief_complaint=scrub(c.chief_complaint, patient) or "",
        symptoms=tuple(c.symptoms),
        expert_opinion=scrub(c.diagnosis, patient),
        treatment_plan=scrub(c.treatment_plan, patient),
        learning_points=points,
        completed_at=c.completed_at,
        study_uids=tuple(study_uids),
    )


def rank_cases(cases: Iterable[TeachingCase], recent_codes: Sequence[str]) -> list[TeachingCase]:
    """Most relevant to the viewer's recent disease codes first, then newest; ties by id."""
    codes = [c.upper() for c in recent_codes if c]

    def relevance(case: TeachingCase) -> int:
        code = (case.diagnosis_code or "").upper()
        if not code:
            return 0
        if code in codes:
            return 3
        if any(code[:3] == c[:3] for c in codes):
            return 2
        return 1 if any(code[:1] == c[:1] for c in codes) else 0

    stamp = lambda case: case.completed_at.timestamp() if case.completed_at else 0.0  # noqa: E731
    return sorted(cases, key=lambda case: (-relevance(case), -stamp(case), case.id))
