"""Chief-complaint analysis: symptoms, negation, durations and vital values, over real phrasings."""

from pathlib import Path

import pytest

from huizhen.integration.errors import ConfigurationError
from huizhen.mappings.complaint import ComplaintTables, analyze, load_complaint_tables

TABLES = load_complaint_tables(Path(__file__).parents[2] / "config" / "mappings")


def _symptoms(text: str) -> dict[str, tuple[bool, float | None]]:
    return {f.text: (f.present, f.duration_days) for f in analyze(text, TABLES).findings if f.value is None}


def _vitals(text: str) -> dict[str, tuple[str | None, str | None]]:
    return {f.code: (f.value, f.unit) for f in analyze(text, TABLES).findings if f.value is not None}


P, A = True, False  # present, absent

CASES: list[tuple[str, dict[str, tuple[bool, float | None]]]] = [
    # synonyms: one code whatever the word
    ("发热", {"发热": (P, None)}),
    ("发烧", {"发热": (P, None)}),
    ("体温升高", {"发热": (P, None)}),
    ("肚子疼", {"腹痛": (P, None)}),
    ("心慌", {"心悸": (P, None)}),
    ("拉肚子", {"腹泻": (P, None)}),
    ("气短", {"呼吸困难": (P, None)}),
    ("胸部不适", {"胸闷": (P, None)}),
    # negation
    ("无发热", {"发热": (A, None)}),
    ("否认胸痛", {"胸痛": (A, None)}),
    ("不咳嗽", {"咳嗽": (A, None)}),
    ("没有头痛", {"头痛": (A, None)}),
    ("未诉腹痛", {"腹痛": (A, None)}),
    ("否认胸痛、胸闷及心悸", {"胸痛": (A, None), "胸闷": (A, None), "心悸": (A, None)}),
    ("无发热伴咳嗽", {"发热": (A, None), "咳嗽": (P, None)}),
    ("无发热，有咳嗽", {"发热": (A, None), "咳嗽": (P, None)}),
    ("头痛两天但无呕吐", {"头痛": (P, 2.0), "呕吐": (A, None)}),
    ("无明显诱因出现胸痛", {"胸痛": (P, None)}),
    ("不明原因发热1周", {"发热": (P, 7.0)}),
    ("发热(-)，咳嗽(+)", {"发热": (A, None), "咳嗽": (P, None)}),
    ("发热（－），咳嗽（＋）", {"发热": (A, None), "咳嗽": (P, None)}),
    ("未见皮疹", {"皮疹": (A, None)}),
    # durations
    ("咳嗽三天", {"咳嗽": (P, 3.0)}),
    ("咳嗽3天", {"咳嗽": (P, 3.0)}),
    ("咳嗽咳痰2周余", {"咳嗽": (P, 14.0), "咳痰": (P, 14.0)}),
    ("胸痛3小时", {"胸痛": (P, 0.125)}),
    ("头晕1月", {"头晕": (P, 30.0)}),
    ("乏力半年", {"乏力": (P, 182.5)}),
    ("反复咳嗽十余年", {"咳嗽": (P, 3650.0)}),
    ("腹痛两个月", {"腹痛": (P, 60.0)}),
    ("水肿一个半月", {"水肿": (P, 45.0)}),
    ("3天前出现腹泻", {"腹泻": (P, 3.0)}),
    ("发热二十天", {"发热": (P, 20.0)}),
    ("心悸1年，加重3天", {"心悸": (P, 365.0)}),
    # mixed Chinese / English
    ("fever 3 days, no cough", {"发热": (P, 3.0), "咳嗽": (A, None)}),
    ("denies chest pain; headache 2 weeks", {"胸痛": (A, None), "头痛": (P, 14.0)}),
    ("Fever 2 days，伴cough", {"发热": (P, 2.0), "咳嗽": (P, None)}),
    ("shortness of breath without chest pain", {"呼吸困难": (P, None), "胸痛": (A, None)}),
    # whole complaints
    ("发烧三天，体温38.5度，无咳嗽，否认胸痛", {"发热": (P, 3.0), "咳嗽": (A, None), "胸痛": (A, None)}),
    ("突发一侧肢体无力2小时，伴言语不清", {"肢体无力": (P, 2 / 24), "言语不清": (P, None)}),
    ("多饮多尿、体重下降3月", {"多饮": (P, 90.0), "多尿": (P, 90.0), "体重下降": (P, 90.0)}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_symptoms_negation_and_duration(text: str, expected: dict[str, tuple[bool, float | None]]) -> None:
    got = _symptoms(text)
    assert got == {k: (p, pytest.approx(d, rel=1e-3) if d is not None else None) for k, (p, d) in expected.items()}


def test_at_least_forty_phrasings() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    ("text", "code", "value", "unit"),
    [
        ("体温38.5度", "8310-5", "38.5", "°C"),
        ("体温：39℃", "8310-5", "39", "°C"),
        ("T 37.8°C", "8310-5", "37.8", "°C"),
        ("血压160/100mmHg", "85354-9", "160/100", "mmHg"),
        ("BP 150/95", "85354-9", "150/95", "mmHg"),
        ("心率120次/分", "8867-4", "120", "次/分"),
        ("脉搏88次/分", "8867-4", "88", "次/分"),
        ("呼吸28次/分", "9279-1", "28", "次/分"),
        ("SpO2 88%", "59408-5", "88", "%"),
        ("血氧饱和度９５％", "59408-5", "95", "%"),
        ("空腹血糖12.3mmol/L", "15074-8", "12.3", "mmol/L"),
    ],
)
def test_vital_values(text: str, code: str, value: str, unit: str) -> None:
    assert _vitals(text)[code] == (value, unit)


def test_vital_number_is_not_a_duration_and_out_of_range_is_ignored() -> None:
    a = analyze("发热，体温38.5度", TABLES)
    assert [(f.text, f.duration_days) for f in a.findings if f.value is None] == [("发热", None)]
    assert "8310-5" not in _vitals("体温385度")


def test_departments_from_present_findings_only() -> None:
    a = analyze("胸痛3小时，伴呼吸困难，无发热", TABLES)
    assert a.suggested_departments[0] == "心血管内科"
    assert "感染科" not in a.suggested_departments
    assert analyze("血压180/110mmHg", TABLES).suggested_departments == ("心血管内科",)
    assert analyze("空腹血糖12.3mmol/L", TABLES).suggested_departments == ("内分泌科",)


def test_questions_ask_for_missing_duration_and_follow_up() -> None:
    a = analyze("胸痛，无发热", TABLES)
    assert a.questions[0] == "胸痛持续多长时间了？"
    assert any("放射" in q for q in a.questions)
    assert not any("体温" in q for q in a.questions)  # fever is absent: no fever questions
    assert "咳嗽持续多长时间了？" not in analyze("咳嗽3天", TABLES).questions


def test_empty_and_unrecognised_text() -> None:
    for text in ("", "   ", "患者来诊", "asdf qwerty"):
        a = analyze(text, TABLES)
        assert a.findings == () and a.suggested_departments == () and a.questions == ()


def test_very_long_text_is_bounded() -> None:
    text = "咳嗽三天，无发热。" * 2000  # 18,000 characters
    a = analyze(text, TABLES)
    assert {f.text: f.present for f in a.findings} == {"咳嗽": True, "发热": False}


def test_stored_symptoms_shape() -> None:
    stored = analyze("发烧三天，体温38.5度，无咳嗽", TABLES).as_symptoms()
    assert {"code": "R50.9", "text": "发热", "present": True, "durationDays": 3.0} in stored
    assert {"code": "R05", "text": "咳嗽", "present": False} in stored
    assert {"code": "8310-5", "text": "体温", "present": True, "value": "38.5", "unit": "°C"} in stored


def test_bad_table_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "symptoms.csv").write_text("code,name,synonyms,departments\nR50.9,发热,发热,内科\n,咳嗽,咳嗽,\n")
    (tmp_path / "complaint_questions.csv").write_text("code,question\n")
    with pytest.raises(ConfigurationError, match=r"symptoms.csv:3"):
        load_complaint_tables(tmp_path)


def test_empty_tables_find_nothing() -> None:
    assert analyze("发热", ComplaintTables(symptoms=())).findings == ()
