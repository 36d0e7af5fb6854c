"""The consultation services of DESIGN.md: complaint analysis, teaching cases, coverage, platform figures.

Authorization (huizhen/graphql/guard.py; policy objects in config/rbac/policy.csv):

* ``analyzeComplaint``: ``consultation read``. It reads nothing stored (a pure function of the
  text), so any clinical role that works with consultations may use it: the primary doctor drafting
  a request, the expert or coordinator reviewing one, a patient describing their own complaint.
* ``cases``, ``recommendedCases``: ``case read`` (de-identified: no row rule applies).
* ``coverageEstimate``: ``consultation read`` and the consultation's row rule (hidden is NOT_FOUND).
* ``platformStats``: ``stats read``; a coordinator bound to a facility sees that facility's figures
  only (asking for another facility is FORBIDDEN, whatever exists).
* ``saveSymptoms``: ``consultation request`` and the row rule, audited as a write.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Annotated

import strawberry

from huizhen.graphql.guard import can, consultation_for_change, sees_consultation, wrote
from huizhen.graphql.records import Consultation
from huizhen.graphql.types import Connection, Info, Symptom, connection, iso
from huizhen.integration import teaching
from huizhen.integration.casebook import recommended
from huizhen.integration.coverage import estimate
from huizhen.integration.errors import BadInput, Forbidden, NotFound
from huizhen.integration.sla import Figures, platform_stats
from huizhen.mappings.complaint import MAX_TEXT, analyze


@strawberry.enum(description="What a completed consultation teaches; becomes its teaching case's learning points.")
class LearningFlag(Enum):
    MISDIAGNOSIS_RISK = "MISDIAGNOSIS_RISK"
    RARE_DISEASE = "RARE_DISEASE"
    EMERGENCY_HANDLING = "EMERGENCY_HANDLING"


DEFAULT_INSURANCE = "resident"  # 城乡居民基本医疗保险: the scheme most township patients hold


@strawberry.type
class Finding:
    code: str
    text: str
    present: bool
    duration_days: float | None
    value: str | None
    unit: str | None


@strawberry.type
class ComplaintAnalysis:
    findings: list[Finding]
    suggested_departments: list[str]
    questions: list[str]


@strawberry.type
class TeachingCase:
    _m: strawberry.Private[teaching.TeachingCase]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field(description="A keyed pseudonym of the patient: stable across cases, not reversible.")
    def pseudonym(self) -> str:
        return self._m.pseudonym

    @strawberry.field
    def department(self) -> str:
        return self._m.department

    @strawberry.field
    def diagnosis_code(self) -> str | None:
        return self._m.diagnosis_code

    @strawberry.field
    def diagnosis(self) -> str:
        return self._m.diagnosis

    @strawberry.field
    def age_band(self) -> str | None:
        return self._m.age_band

    @strawberry.field
    def sex(self) -> str | None:
        return self._m.sex

    @strawberry.field
    def chief_complaint(self) -> str:
        return self._m.chief_complaint

    @strawberry.field
    def symptoms(self) -> list[Symptom]:
        return [Symptom.of(s) for s in self._m.symptoms]

    @strawberry.field
    def expert_opinion(self) -> str | None:
        return self._m.expert_opinion

    @strawberry.field
    def treatment_plan(self) -> str | None:
        return self._m.treatment_plan

    @strawberry.field
    def learning_points(self) -> list[str]:
        return list(self._m.learning_points)

    @strawberry.field
    def completed_at(self, info: Info) -> str | None:
        return iso(self._m.completed_at, info)

    @strawberry.field(description="Study Instance UIDs of the case's de-identified image copies (remapped UIDs; "
                                  "empty until the copies are made, shortly after completion).")
    def study_uids(self) -> list[str]:
        return list(self._m.study_uids)


@strawberry.type
class CoverageEstimate:
    fee: str
    covered: str
    patient_share: str
    insurance_type: str
    region: str
    reasons: list[str]


@strawberry.type
class StatusCount:
    status: str
    count: int


@strawberry.type
class PlatformFigures:
    key: str | None
    total: int
    by_status: list[StatusCount]
    median_minutes_to_assign: float | None
    p90_minutes_to_assign: float | None
    median_minutes_to_complete: float | None
    p90_minutes_to_complete: float | None
    completion_rate: float | None
    within_sla_share: float | None


@strawberry.type
class PlatformStats:
    overall: PlatformFigures
    by_department: list[PlatformFigures]
    by_facility: list[PlatformFigures]


@strawberry.type
class ServicesQuery:
    @strawberry.field(description="Structured findings, departments and follow-up questions from a chief complaint.",
                      permission_classes=can("consultation", "read"))
    def analyze_complaint(self, info: Info, text: str) -> ComplaintAnalysis:
        tables = info.context.services.complaints
        if tables is None:
            raise BadInput("complaint analysis is not configured")
        if not text.strip():
            raise BadInput("text must not be empty")
        if len(text) > MAX_TEXT:
            raise BadInput(f"text is {len(text)} characters; at most {MAX_TEXT} are analysed")
        a = analyze(text, tables)
        return ComplaintAnalysis(
            findings=[Finding(code=f.code, text=f.text, present=f.present, duration_days=f.duration_days,
                              value=f.value, unit=f.unit) for f in a.findings],
            suggested_departments=list(a.suggested_departments),
            questions=list(a.questions),
        )

    @strawberry.field(description="The teaching-case library, newest first.", permission_classes=can("case", "read"))
    async def cases(
        self, info: Info, department: str | None = None, disease_code: str | None = None,
        first: int | None = None, after: str | None = None,
    ) -> Connection[TeachingCase]:
        async with info.context.services.store.read() as repo:
            page = await repo.cases.search(department=department, diagnosis_code=disease_code, first=first,
                                           after=after)
        return connection(page, TeachingCase)  # type: ignore[arg-type]

    @strawberry.field(description="Cases for the viewer: relevant to their own recent consultations, then newest.",
                      permission_classes=can("case", "read"))
    async def recommended_cases(self, info: Info, first: int = 10) -> list[TeachingCase]:
        if not 1 <= first <= 100:
            raise BadInput("first must be between 1 and 100")
        async with info.context.services.store.read() as repo:
            found = await recommended(repo, info.context.principal.sub, first)
        return [TeachingCase(_m=c) for c in found]

    @strawberry.field(description="Fee, covered amount and patient share in decimal yuan (strings).",
                      permission_classes=can("consultation", "read"))
    async def coverage_estimate(
        self, info: Info, consultation_id: strawberry.ID, insurance_type: str = DEFAULT_INSURANCE,
    ) -> CoverageEstimate:
        services = info.context.services
        if services.coverage is None:
            raise BadInput("coverage rules are not configured")
        async with services.store.read() as repo:
            c = await repo.consultations.get(str(consultation_id))
            if c is None or not await sees_consultation(info, c):  # hidden and unknown alike
                raise NotFound("Consultation", str(consultation_id))
            expert = await repo.directory.practitioner(c.expert_id) if c.expert_id else None
            facility = await repo.directory.facility(c.facility_id) if c.facility_id else None
        e = estimate(
            services.coverage, status=c.status, urgency=c.urgency, expert_title=expert.title if expert else None,
            requesting_level=facility.level if facility else None, region=facility.region if facility else None,
            insurance_type=insurance_type,
        )
        return CoverageEstimate(fee=str(e.fee), covered=str(e.covered), patient_share=str(e.patient_share),
                                insurance_type=e.insurance_type, region=e.region, reasons=list(e.reasons))

    @strawberry.field(description="The platform's figures for consultations created from `from` through `to` "
                                  "(ISO dates, inclusive, in the server's time zone; or date-times). A coordinator "
                                  "bound to a facility sees that facility's figures only.",
                      permission_classes=can("stats", "read"))
    async def platform_stats(
        self, info: Info, from_: Annotated[str, strawberry.argument(name="from")], to: str,
        facility: str | None = None, department: str | None = None,
    ) -> PlatformStats:
        services = info.context.services
        start, end = _bounds(from_, to, info)
        scope = await info.context.scope()
        if not scope.platform_wide:  # bound to one facility: its figures, whatever was asked for
            if facility is not None and facility != scope.facility_code:
                raise Forbidden(f"a coordinator of {scope.facility_code} may not read the figures of {facility}")
            facility = scope.facility_code
        async with services.store.read() as repo:
            facility_id = None
            if facility is not None:
                found = await repo.directory.facility_by_code(facility)
                if found is None:
                    raise NotFound("Facility", facility)
                facility_id = found.id
            rows = await repo.escalations.clocks(start, end, facility_id=facility_id, department=department)
            used = sorted({r.facility_id for r in rows if r.facility_id})
            names = {f.id: f.code for f in await repo.directory.facilities(used)}
        stats = platform_stats(rows, services.settings.sla_targets, facility_name=lambda i: names.get(i or ""))
        return PlatformStats(
            overall=_figures(stats.overall),
            by_department=[_figures(f) for f in stats.by_department],
            by_facility=[_figures(f) for f in stats.by_facility],
        )


def _bounds(start: str, end: str, info: Info) -> tuple[datetime, datetime]:
    tz = info.context.services.settings.tz
    try:
        lo = _parse(start, tz, end_of_day=False)
        hi = _parse(end, tz, end_of_day=True)
        last = _parse(end, tz, end_of_day=False)  # `to` itself: from 2026-03-02 to 2026-03-01 is reversed
    except ValueError as exc:
        raise BadInput(f"from/to must be ISO dates or date-times: {exc}") from None
    if lo > last:
        raise BadInput(f"from ({start}) is after to ({end})")
    return lo, hi


def _parse(value: str, tz: object, *, end_of_day: bool) -> datetime:
    if "T" not in value and len(value) == 10:
        d = date.fromisoformat(value)
        at = datetime.combine(d, time.min, tzinfo=tz)  # type: ignore[arg-type]
        return at + timedelta(days=1) if end_of_day else at
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)  # type: ignore[arg-type]
    return parsed


def _figures(f: Figures) -> PlatformFigures:
    return PlatformFigures(
        key=f.key, total=f.total, by_status=[StatusCount(status=s, count=n) for s, n in f.by_status.items()],
        median_minutes_to_assign=f.median_minutes_to_assign, p90_minutes_to_assign=f.p90_minutes_to_assign,
        median_minutes_to_complete=f.median_minutes_to_complete, p90_minutes_to_complete=f.p90_minutes_to_complete,
        completion_rate=f.completion_rate, within_sla_share=f.within_sla_share,
    )


@strawberry.type
class ServicesMutation:
    @strawberry.mutation(description="Analyse a complaint (default: the consultation's own) and store the findings "
                                     "as the consultation's structured symptoms.",
                         permission_classes=can("consultation", "request"))
    async def save_symptoms(self, info: Info, id: strawberry.ID, text: str | None = None) -> Consultation:
        services = info.context.services
        if services.complaints is None:
            raise BadInput("complaint analysis is not configured")
        c = await consultation_for_change(info, str(id))
        source = text if text is not None else c.chief_complaint
        if not source.strip() or len(source) > MAX_TEXT:
            raise BadInput(f"text must be 1 to {MAX_TEXT} characters")
        symptoms = analyze(source, services.complaints).as_symptoms()
        wrote(info, "Consultation", str(id), "saveSymptoms")
        return Consultation(_m=await services.consultations.set_symptoms(str(id), info.context.actor, symptoms))

