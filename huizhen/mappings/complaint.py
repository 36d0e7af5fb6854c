"""Pre-consultation analysis of a chief complaint written in Chinese (or mixed) free text.

``analyze(text, tables)`` turns "发烧三天，体温38.5度，无咳嗽，否认胸痛" into
structured findings: symptoms coded through the synonym table
(``config/mappings/symptoms.csv``), each present or absent (negation), with a
duration where the text gives one, and vital values with their units. From
the present findings it suggests departments and follow-up questions
(``complaint_questions.csv``). Pure: no I/O after the tables are loaded.

The rules are those of clinical NLP for Chinese records, kept small and
explicit rather than learned:

* **Clauses.** Negation and duration never cross a clause boundary
  (，。；! ? and "但/但是/but").
* **Negation.** A cue (无, 没有, 没, 否认, 未, 未见, 未诉, 非, no, denies,
  without, not) negates every symptom after it in the clause, through
  enumerations (否认胸痛、胸闷) up to a positive marker (伴/伴有/并有/而).
  "不" negates only the symptom right after it (不咳嗽), so that "胸部不适"
  stays a present finding. Pseudo-negations (无明显诱因, 无诱因, 不明原因) are
  not cues. A trailing "(-)" or "阴性" marks the symptom before it absent,
  "(+)" present.
* **Duration.** A number (Arabic or Chinese: 三, 十余, 两, 半, 一个半) and a
  unit (小时, 天/日, 周/星期, 月, 年; English too), optionally with 余/多/+,
  applies to the symptoms of its clause that precede it; with none before it,
  to those after it ("3天前出现发热").
* **Vitals.** 体温 38.5 度 / ℃, 血压 160/100 mmHg, 心率/脉搏 N 次/分,
  呼吸 N 次/分, 血氧/SpO2 N %, 血糖 N mmol/L — coded in LOINC.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from huizhen.mappings.codes import read_table

MAX_TEXT = 10_000  # characters analysed; the edge refuses longer input with a clear error


@dataclass(frozen=True, slots=True)
class Symptom:
    code: str
    name: str
    synonyms: tuple[str, ...]
    departments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    text: str
    present: bool
    duration_days: float | None = None
    value: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class ComplaintAnalysis:
    findings: tuple[Finding, ...]
    suggested_departments: tuple[str, ...]
    questions: tuple[str, ...]

    def as_symptoms(self) -> list[dict[str, object]]:
        """The structured symptoms stored on a consultation."""
        return [
            {k: v for k, v in (
                ("code", f.code), ("text", f.text), ("present", f.present),
                ("durationDays", f.duration_days), ("value", f.value), ("unit", f.unit),
            ) if v is not None}
            for f in self.findings
        ]


@dataclass(frozen=True)
class ComplaintTables:
    symptoms: tuple[Symptom, ...]
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_synonym: dict[str, Symptom] = {}
        for s in self.symptoms:
            for word in s.synonyms:
                by_synonym.setdefault(word.casefold(), s)
        words = sorted(by_synonym, key=len, reverse=True)  # longest first: 咳痰 before 咳
        alternatives = [
            rf"(?<![a-z]){re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w) for w in words
        ]
        object.__setattr__(self, "_by_synonym", by_synonym)
        object.__setattr__(self, "_pattern", re.compile("|".join(alternatives)) if alternatives else None)

    def find(self, clause: str) -> Iterable[tuple[int, int, Symptom]]:
        pattern: re.Pattern[str] | None = self._pattern  # type: ignore[attr-defined]
        if pattern is None:
            return
        by_synonym: dict[str, Symptom] = self._by_synonym  # type: ignore[attr-defined]
        for m in pattern.finditer(clause):
            yield m.start(), m.end(), by_synonym[m.group(0)]


def load_complaint_tables(directory: Path) -> ComplaintTables:
    symptoms = tuple(
        Symptom(
            code=row["code"], name=row["name"],
            synonyms=tuple(w.strip() for w in row["synonyms"].split("|") if w.strip()),
            departments=tuple(d.strip() for d in row["departments"].split("|") if d.strip()),
        )
        for row in read_table(directory / "symptoms.csv", ("code", "name", "synonyms", "departments"),
                              ("code", "name", "synonyms"))
    )
    questions: dict[str, list[str]] = {}
    for row in read_table(directory / "complaint_questions.csv", ("code", "question"), ("code", "question")):
        questions.setdefault(row["code"], []).append(row["question"])
    return ComplaintTables(symptoms=symptoms, questions={k: tuple(v) for k, v in questions.items()})


# -- text rules ------------------------------------------------------------------------------------

_CLAUSE_SPLIT = re.compile(r"[,;。!?\n]|但是|但|然而|\bbut\b|\bhowever\b")
_PSEUDO_NEGATION = re.compile(r"无明显诱因|无明确诱因|无诱因|不明原因|原因不明|无明显原因")
_NEGATION = re.compile(
    r"否认|没有|未见|未诉|未|无|没|非|\bno\b|\bnot\b|\bdenies\b|\bdenied\b|\bwithout\b|\bnegative for\b"
)
_POSITIVE = re.compile(r"伴有|伴|并有|而|\bwith\b|\band has\b")
_NOT_RIGHT_BEFORE = re.compile(r"不(?:太|怎么)?$")
_AFTER_MARK = re.compile(r"^\s*(?:\((?P<mark>[+-])\)|(?P<neg>阴性)|(?P<pos>阳性))")

_CN_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
}
_NUMBER = r"(?:\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百]+|半)"
_UNITS_DAYS = {
    "分钟": 1 / 1440, "min": 1 / 1440, "minutes": 1 / 1440, "minute": 1 / 1440,
    "小时": 1 / 24, "h": 1 / 24, "hr": 1 / 24, "hrs": 1 / 24, "hours": 1 / 24, "hour": 1 / 24,
    "天": 1, "日": 1, "day": 1, "days": 1,
    "周": 7, "星期": 7, "礼拜": 7, "week": 7, "weeks": 7,
    "月": 30, "个月": 30, "month": 30, "months": 30,
    "年": 365, "year": 365, "years": 365,
}
_DURATION = re.compile(
    rf"(?P<n>{_NUMBER})\s*(?P<more>余|多|\+)?\s*(?P<half>个半)?\s*"
    r"(?P<unit>分钟|小时|个月|星期|礼拜|minutes?|hours?|hrs?|days?|weeks?|months?|years?|min|h|天|日|周|月|年)"
    r"(?![a-z])\s*(?P<more2>余|多|\+)?(?P<half2>半)?"
)

_NUM = r"(\d+(?:\.\d+)?)"
_VITALS: tuple[tuple[re.Pattern[str], str, str, str, tuple[float, float]], ...] = (
    (re.compile(rf"(?:体温|\btemp(?:erature)?\b|\bt\b)\s*[:=]?\s*(?:为|是|达|高达|最高)?\s*{_NUM}\s*(?:度|℃|°c|°)?"),
     "8310-5", "体温", "°C", (30.0, 45.0)),
    (re.compile(rf"(?:血压|\bbp\b)\s*[:=]?\s*(?:为|是|高达|最高)?\s*{_NUM}\s*/\s*{_NUM}\s*(?:mmhg|毫米汞柱)?"),
     "85354-9", "血压", "mmHg", (20.0, 300.0)),
    (re.compile(rf"(?:心率|脉搏|\bhr\b|\bpulse\b)\s*[:=]?\s*(?:为|是)?\s*{_NUM}\s*(?:次/分|次每分|bpm|/min)?"),
     "8867-4", "心率", "次/分", (20.0, 300.0)),
    (re.compile(rf"(?:呼吸频率|呼吸|\brr\b)\s*[:=]?\s*(?:为|是)?\s*{_NUM}\s*(?:次/分|次每分|/min)"),
     "9279-1", "呼吸频率", "次/分", (4.0, 80.0)),
    (re.compile(rf"(?:血氧饱和度|氧饱和度|血氧|\bspo2\b)\s*[:=]?\s*(?:为|是)?\s*{_NUM}\s*%"),
     "59408-5", "血氧饱和度", "%", (30.0, 100.0)),
    (re.compile(rf"(?:空腹血糖|血糖|\bglucose\b)\s*[:=]?\s*(?:为|是)?\s*{_NUM}\s*(?:mmol/l|毫摩尔)?"),
     "15074-8", "血糖", "mmol/L", (0.5, 60.0)),
)


def analyze(text: str, tables: ComplaintTables) -> ComplaintAnalysis:
    text = unicodedata.normalize("NFKC", text)[:MAX_TEXT].casefold()
    vitals, text = _vitals(text)
    symptoms: dict[str, Finding] = {}
    for clause in _CLAUSE_SPLIT.split(text):
        for finding in _clause_findings(clause, tables):
            known = symptoms.get(finding.code)
            # a later mention wins over an earlier one only if it says more (a duration) or is present
            if known is None or (finding.present and not known.present) or (
                finding.present == known.present and known.duration_days is None
            ):
                symptoms[finding.code] = finding
    findings = (*symptoms.values(), *vitals)
    return ComplaintAnalysis(
        findings=findings,
        suggested_departments=_departments(findings, tables),
        questions=_questions(findings, tables),
    )


def _clause_findings(clause: str, tables: ComplaintTables) -> list[Finding]:
    scan = _PSEUDO_NEGATION.sub(lambda m: " " * len(m.group(0)), clause)
    mentions = list(tables.find(scan))
    if not mentions:
        return []
    durations = [(m.start(), _days(m)) for m in _DURATION.finditer(scan)]
    out: list[Finding] = []
    for i, (start, end, symptom) in enumerate(mentions):
        prev_end = mentions[i - 1][1] if i else 0
        present = not _negated(scan[:start], scan[prev_end:start])
        mark = _AFTER_MARK.match(scan[end:])
        if mark:
            present = not (mark.group("mark") == "-" or mark.group("neg"))
        out.append(Finding(code=symptom.code, text=symptom.name, present=present,
                           duration_days=_duration_for(start, end, mentions, durations) if present else None))
    return out


def _negated(before: str, since_previous: str) -> bool:
    if _NOT_RIGHT_BEFORE.search(since_previous):
        return True
    last_cue = max((m.end() for m in _NEGATION.finditer(before)), default=-1)
    if last_cue < 0:
        return False
    return not _POSITIVE.search(before[last_cue:])


def _duration_for(
    start: int, end: int, mentions: list[tuple[int, int, Symptom]], durations: list[tuple[int, float]]
) -> float | None:
    after = [(pos, d) for pos, d in durations if pos >= end]
    if after:
        return after[0][1]
    before = [(pos, d) for pos, d in durations if pos < start]
    if before and not any(m_end <= start and m_start > before[-1][0] for m_start, m_end, _ in mentions):
        return before[-1][1]  # "3天前出现发热": the duration opens the clause
    return None


def _days(m: re.Match[str]) -> float:
    n = _number(m.group("n"))
    if m.group("half") or m.group("half2"):
        n += 0.5
    return round(n * _UNITS_DAYS[m.group("unit")], 4)


def _number(token: str) -> float:
    if token == "半":
        return 0.5
    if token[0].isdigit():
        return float(token)
    total, current = 0, 0
    for ch in token:
        if ch == "百":
            total += (current or 1) * 100
            current = 0
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = _CN_DIGITS[ch]
    return float(total + current)


def _vitals(text: str) -> tuple[list[Finding], str]:
    found: list[Finding] = []
    for pattern, code, name, unit, (low, high) in _VITALS:
        for m in pattern.finditer(text):
            values = [float(v) for v in m.groups() if v is not None]
            if not values or not all(low <= v <= high for v in values):
                continue
            found.append(Finding(code=code, text=name, present=True,
                                 value="/".join(_plain(v) for v in values), unit=unit))
            text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end():]  # not a duration
    return found, text


def _plain(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _departments(findings: Iterable[Finding], tables: ComplaintTables) -> tuple[str, ...]:
    by_code = {s.code: s for s in tables.symptoms}
    score: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for f in findings:
        depts: tuple[str, ...] = ()
        if f.present and f.code in by_code:
            depts = by_code[f.code].departments
        elif f.code == "85354-9" and f.value and _high_pressure(f.value):
            depts = ("心血管内科",)
        elif f.code == "8310-5" and f.value and float(f.value) >= 37.3:
            depts = by_code["R50.9"].departments if "R50.9" in by_code else ("内科",)
        elif f.code == "15074-8" and f.value and float(f.value) >= 7.0:
            depts = ("内分泌科",)
        for rank, d in enumerate(depts):
            score[d] = score.get(d, 0.0) + 1.0 / (rank + 1)
            first_seen.setdefault(d, len(first_seen))
    return tuple(sorted(score, key=lambda d: (-score[d], first_seen[d])))[:3]


def _high_pressure(value: str) -> bool:
    systolic, _, diastolic = value.partition("/")
    return float(systolic) >= 140 or (bool(diastolic) and float(diastolic) >= 90)


def _questions(findings: Iterable[Finding], tables: ComplaintTables) -> tuple[str, ...]:
    out: list[str] = []
    for f in findings:
        if not f.present or f.value is not None:
            continue
        if f.duration_days is None:
            out.append(f"{f.text}持续多长时间了？")
        out.extend(tables.questions.get(f.code, ()))
    return tuple(dict.fromkeys(out))[:10]
