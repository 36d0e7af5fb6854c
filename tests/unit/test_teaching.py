"""Teaching cases: nothing that identifies the patient survives; ranking by relevance then recency."""

from dataclasses import asdict, replace
from datetime import UTC, date, datetime

import pytest

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    Gender,
    HumanName,
    Identifier,
    Patient,
    Urgency,
)
from huizhen.integration.teaching import age_band, build_case, rank_cases, scrub

PATIENT = Patient(
    name=HumanName(family="王", given=("建华",), text="王建华"),
    identifiers=[Identifier(system="urn:oid:2.16.840.1.113883.2.4.6.3", value="MRN20231107"),
                 Identifier(system="urn:oid:1.2.156.112604.1.1.1", value="110101195503073512")],
    gender=Gender.MALE, birth_date=date(1955, 3, 7), phone="13912345678",
    address="青山县石桥镇王家村5组", id="pat-1",
)


def _consultation(**kw: object) -> Consultation:
    base: dict[str, object] = dict(
        patient_id="pat-1", department="心血管内科", urgency=Urgency.URGENT, status=ConsultationStatus.COMPLETED,
        chief_complaint="王建华，男，70岁，胸痛3小时，1955年3月7日生，电话13912345678，住青山县石桥镇王家村",
        diagnosis="急性下壁心肌梗死（王先生既往有高血压）", disease_code="I21.1",
        treatment_plan="立即转诊上级医院行PCI；联系家属0571-88776655；病历号MRN20231107",
        symptoms=[{"code": "R07.4", "text": "胸痛", "present": True, "durationDays": 0.125}],
        completed_at=datetime(2025, 11, 30, 10, tzinfo=UTC),
    )
    base.update(kw)
    return Consultation(**base)  # type: ignore[arg-type]


def _all_text(obj: object) -> str:
    return repr(asdict(obj))  # type: ignore[call-overload]


def test_no_identifier_survives_in_any_field() -> None:
    case = build_case(_consultation(), PATIENT, pseudonym="PSN-7f3a", flags=["MISDIAGNOSIS_RISK"])
    text = _all_text(case)
    for secret in ("王建华", "建华", "王先生", "MRN20231107", "110101195503073512", "13912345678",
                   "0571-88776655", "王家村", "1955", "3月7日", "pat-1"):
        assert secret not in text.replace(case.consultation_id, ""), secret
    assert case.age_band == "70-79" and case.sex == "male" and case.pseudonym == "PSN-7f3a"
    assert "胸痛3小时" in case.chief_complaint and "急性下壁心肌梗死" in case.diagnosis
    assert case.learning_points == ("误诊风险：基层易误诊，注意鉴别诊断",)


def test_clinical_words_are_not_scrubbed() -> None:
    text = "心前区疼痛，左下肺野见斑片影，转至县医院，肌钙蛋白0.5ng/ml"
    assert scrub(text, PATIENT) == text


def test_generic_identifiers_of_others_are_scrubbed() -> None:
    out = scrub("家属李四电话13800001111，身份证32010219800101123X，住东城区幸福路12号3栋", PATIENT)
    assert out is not None
    assert "13800001111" not in out and "32010219800101123X" not in out and "幸福路12号" not in out


@pytest.mark.parametrize(
    ("birth", "band"),
    [(date(2026, 6, 1), "<1"), (date(2023, 1, 1), "1-4"), (date(2018, 1, 1), "5-9"),
     (date(1990, 12, 2), "30-39"), (date(1990, 11, 30), "30-39"), (date(1930, 1, 1), "90+"), (None, None)],
)
def test_age_bands(birth: date | None, band: str | None) -> None:
    assert age_band(birth, date(2026, 12, 1)) == band


def test_only_completed_consultations_become_cases() -> None:
    with pytest.raises(ValueError, match="IN_PROGRESS"):
        build_case(_consultation(status=ConsultationStatus.IN_PROGRESS), PATIENT, pseudonym="x")


def test_rank_by_code_then_category_then_chapter_then_recency() -> None:
    base = build_case(_consultation(), PATIENT, pseudonym="x")
    at = lambda d: datetime(2026, 1, d, tzinfo=UTC)  # noqa: E731
    exact_old = replace(base, diagnosis_code="I21.1", completed_at=at(1), id="a")
    category = replace(base, diagnosis_code="I21.4", completed_at=at(5), id="b")
    chapter = replace(base, diagnosis_code="I10", completed_at=at(9), id="c")
    other_new = replace(base, diagnosis_code="J18.9", completed_at=at(20), id="d")
    exact_new = replace(base, diagnosis_code="I21.1", completed_at=at(3), id="e")
    ranked = rank_cases([other_new, chapter, exact_old, category, exact_new], ["I21.1", "E11"])
    assert [c.id for c in ranked] == ["e", "a", "b", "c", "d"]
    assert [c.id for c in rank_cases([exact_old, other_new], [])] == ["d", "a"]  # no history: newest first
