"""Expert matching: rank the online experts of a department for a disease and an urgency.

A pure function of the directory and the experts' current load, so that the
ranking can be tested with plain objects and explained to the requester: each
match carries the reasons behind its score.

Score (higher is better):

* title: 主任 CHIEF 30, 副主任 ASSOCIATE_CHIEF 22, 主治 ATTENDING 14, 住院 RESIDENT 6;
* disease: the exact ICD-10 code among the expert's expertise +10, the same
  three-character category +5 (an expert who treats neither is not a match);
* experience: 0.5 a year, at most 15;
* response: 20 minus a third of the average response minutes (never below 0),
  times the urgency weight;
* load: minus 5 per active (ASSIGNED or IN_PROGRESS) consultation, times the
  urgency weight.

The urgency weight is 1 for ROUTINE, 1.5 for URGENT and 2 for CRITICAL: the
more urgent, the more a fast, free expert counts against a senior, busy one.
Ties are broken by fewer active consultations, then by practitioner id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from huizhen.integration.model import Practitioner, PractitionerTitle, Urgency

TITLE_POINTS = {
    PractitionerTitle.CHIEF: 30.0,
    PractitionerTitle.ASSOCIATE_CHIEF: 22.0,
    PractitionerTitle.ATTENDING: 14.0,
    PractitionerTitle.RESIDENT: 6.0,
}
URGENCY_WEIGHT = {Urgency.ROUTINE: 1.0, Urgency.URGENT: 1.5, Urgency.CRITICAL: 2.0}
EXACT_DISEASE, SAME_CATEGORY = 10.0, 5.0
POINTS_PER_YEAR, MAX_YEAR_POINTS = 0.5, 15.0
RESPONSE_BASE, RESPONSE_MINUTES_PER_POINT = 20.0, 3.0
LOAD_PENALTY = 5.0


@dataclass(frozen=True)
class ExpertMatch:
    expert: Practitioner
    score: float
    active: int
    reasons: tuple[str, ...]


def disease_points(expertise: Iterable[str], disease_code: str | None) -> float | None:
    """Points for treating ``disease_code``; ``None`` when the expert does not treat it."""
    if not disease_code:
        return 0.0
    wanted = disease_code.strip().upper()
    codes = {c.strip().upper() for c in expertise}
    if wanted in codes:
        return EXACT_DISEASE
    if any(c[:3] == wanted[:3] for c in codes):
        return SAME_CATEGORY
    return None


def score_expert(
    expert: Practitioner, active: int, disease_code: str | None, urgency: Urgency
) -> ExpertMatch | None:
    disease = disease_points(expert.expertise, disease_code)
    if disease is None or not expert.online:
        return None
    weight = URGENCY_WEIGHT[urgency]
    reasons: list[str] = []
    score = 0.0
    if expert.title is not None:
        pts = TITLE_POINTS[expert.title]
        score += pts
        reasons.append(f"title {expert.title.value} +{pts:g}")
    if disease_code:
        kind = "exact code" if disease == EXACT_DISEASE else "same category"
        score += disease
        reasons.append(f"treats {disease_code} ({kind}) +{disease:g}")
    if expert.years_experience:
        pts = min(expert.years_experience * POINTS_PER_YEAR, MAX_YEAR_POINTS)
        score += pts
        reasons.append(f"{expert.years_experience} years of experience +{pts:g}")
    if expert.avg_response_minutes is not None:
        pts = max(0.0, RESPONSE_BASE - expert.avg_response_minutes / RESPONSE_MINUTES_PER_POINT) * weight
        score += pts
        reasons.append(
            f"average response {expert.avg_response_minutes:g} min +{pts:.2f} ({urgency.value} weight {weight:g})"
        )
    penalty = active * LOAD_PENALTY * weight
    score -= penalty
    reasons.append(f"current load {active} active consultation(s) -{penalty:g} ({urgency.value} weight {weight:g})")
    return ExpertMatch(expert=expert, score=round(score, 2), active=active, reasons=tuple(reasons))


def rank_experts(
    experts: Iterable[Practitioner], active: Mapping[str, int], disease_code: str | None, urgency: Urgency,
    limit: int | None = None,
) -> list[ExpertMatch]:
    """The best first; deterministic for equal scores (fewer active, then id)."""
    matches = [
        match for e in experts
        if (match := score_expert(e, active.get(e.id, 0), disease_code, urgency)) is not None
    ]
    matches.sort(key=lambda x: (-x.score, x.active, x.expert.id))
    return matches if limit is None else matches[:limit]
