"""``matchExperts``: the ranked online experts for a consultation, with the reasons."""

from __future__ import annotations

import strawberry

from huizhen.graphql.types import Info, Practitioner, Urgency
from huizhen.integration import model as m
from huizhen.integration.errors import BadInput

MAX_MATCHES = 50


@strawberry.type
class ExpertMatch:
    expert: Practitioner
    score: float
    reasons: list[str]
    active_consultations: int


@strawberry.type
class MatchingQuery:
    @strawberry.field(
        description="Online experts of the department who treat the disease, best first, with the reasons. "
        "Equal scores: fewer active consultations first, then by id."
    )
    async def match_experts(
        self, info: Info, department: str, disease_code: str, urgency: Urgency, limit: int = 3
    ) -> list[ExpertMatch]:
        if not 1 <= limit <= MAX_MATCHES:
            raise BadInput(f"limit must be between 1 and {MAX_MATCHES}")
        found = await info.context.services.consultations.match_experts(
            department, disease_code, m.Urgency(urgency.value), limit
        )
        return [
            ExpertMatch(expert=Practitioner(_m=x.expert), score=x.score, reasons=list(x.reasons),
                        active_consultations=x.active)
            for x in found
        ]
