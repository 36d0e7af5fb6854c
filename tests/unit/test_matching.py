"""Expert ranking: a pure function of the directory and the experts' load."""

from __future__ import annotations

from huizhen.integration.matching import disease_points, rank_experts, score_expert
from huizhen.integration.model import HumanName, Practitioner, PractitionerTitle, Urgency


def expert(
    pid: str, title: PractitionerTitle | None = PractitionerTitle.ATTENDING, *, codes: tuple[str, ...] = ("I20.0",),
    years: int | None = 10, minutes: float | None = 30.0, online: bool = True,
) -> Practitioner:
    return Practitioner(
        id=pid, name=HumanName.of("李", ("医生",)), department="心血管内科", title=title, expertise=list(codes),
        years_experience=years, avg_response_minutes=minutes, online=online,
    )


def test_disease_points_exact_category_none() -> None:
    assert disease_points(["I20.0"], "I20.0") == 10.0
    assert disease_points(["i20.1"], "I20.0") == 5.0
    assert disease_points(["J18.9"], "I20.0") is None
    assert disease_points([], None) == 0.0


def test_offline_or_not_treating_is_no_match() -> None:
    assert score_expert(expert("a", online=False), 0, "I20.0", Urgency.ROUTINE) is None
    assert score_expert(expert("a", codes=("J18.9",)), 0, "I20.0", Urgency.ROUTINE) is None


def test_score_and_reasons() -> None:
    m = score_expert(expert("a", PractitionerTitle.CHIEF, years=40, minutes=15.0), 1, "I20.0", Urgency.URGENT)
    assert m is not None
    # 30 title + 10 exact + 15 (capped years) + (20 - 5) * 1.5 response - 5 * 1.5 load
    assert m.score == 30 + 10 + 15 + 22.5 - 7.5
    assert m.reasons == (
        "title CHIEF +30", "treats I20.0 (exact code) +10", "40 years of experience +15",
        "average response 15 min +22.50 (URGENT weight 1.5)",
        "current load 1 active consultation(s) -7.5 (URGENT weight 1.5)",
    )


def test_urgency_favours_fast_free_experts_over_senior_busy_ones() -> None:
    senior_busy = expert("senior", PractitionerTitle.CHIEF, years=30, minutes=45.0)
    junior_free = expert("junior", PractitionerTitle.ATTENDING, years=6, minutes=3.0)
    load = {"senior": 2, "junior": 0}  # ROUTINE: 50 against 46; CRITICAL: 45 against 65
    assert [m.expert.id for m in rank_experts([senior_busy, junior_free], load, "I20.0", Urgency.ROUTINE)] == [
        "senior", "junior"]
    assert [m.expert.id for m in rank_experts([senior_busy, junior_free], load, "I20.0", Urgency.CRITICAL)] == [
        "junior", "senior"]


def test_ties_are_broken_by_load_then_id() -> None:
    same = [expert(pid, minutes=None) for pid in ("e3", "e1", "e2")]
    ranked = rank_experts(same, {}, "I20.0", Urgency.ROUTINE)
    assert [m.expert.id for m in ranked] == ["e1", "e2", "e3"]
    assert len({m.score for m in ranked}) == 1
    assert [m.expert.id for m in rank_experts(same, {}, "I20.0", Urgency.ROUTINE, limit=2)] == ["e1", "e2"]
