"""Imaging operations on a consultation: fetch the patient's prior studies from the facility's PACS."""

from __future__ import annotations

import strawberry

from huizhen.adapters.dicom_qr import PriorStudies, Retrieval
from huizhen.graphql.guard import can, consultation_for_change, wrote
from huizhen.graphql.records import Consultation
from huizhen.graphql.types import Info


@strawberry.type(description="What a prior-studies request did; the consultation's timeline shows it too.")
class PriorStudiesRetrieval:
    consultation: Consultation
    pacs: str = strawberry.field(description="AE@host:port of the PACS asked")
    found: int = strawberry.field(description="studies of the patient the PACS reported")
    retrieved: int = strawberry.field(description="studies moved to Huizhen completely")
    failed: int = strawberry.field(description="studies the PACS did not move completely")
    study_instance_uids: list[str] = strawberry.field(description="the studies retrieved")
    error: str | None = strawberry.field(description="why the whole request failed, if it did")

    @classmethod
    def of(cls, c: Consultation, r: Retrieval) -> PriorStudiesRetrieval:
        return cls(
            consultation=c, pacs=str(r.pacs), found=len(r.found), retrieved=len(r.retrieved), failed=len(r.failed),
            study_instance_uids=list(r.retrieved), error=r.error,
        )


@strawberry.type
class ImagingMutation:
    @strawberry.mutation(
        description="C-FIND the consultation patient's studies on their facility's PACS and C-MOVE them to Huizhen.",
        permission_classes=can("study", "read"),
    )
    async def retrieve_prior_studies(self, info: Info, consultation_id: strawberry.ID) -> PriorStudiesRetrieval:
        ctx = info.context
        services = ctx.services
        c = await consultation_for_change(info, str(consultation_id))
        wrote(info, "Consultation", c.id, "retrieve prior studies")
        priors = PriorStudies(services.settings, services.store, services.bus)
        updated, result = await priors.retrieve(c.id, ctx.actor)
        return PriorStudiesRetrieval.of(Consultation(_m=updated), result)
