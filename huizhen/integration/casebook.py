"""The teaching-case library: archive on completion, list and recommend.

:class:`CaseArchiver` is a completion hook (see :class:`ConsultationService`):
it runs inside the transaction that completes a consultation, so a completed
consultation always has its case, exactly once. The case holds no direct
identifier (:mod:`teaching`); the patient appears only as a keyed pseudonym.

Images are not copied there (copying files inside the transaction would hold
the write lock): when the consultation has linked studies, the hook queues a
``teaching-images`` job in the outbox, in the same transaction, and the
adapter :class:`huizhen.adapters.case_images.CaseImages` makes the
de-identified copies after the commit, retrying until they are done; the
case's ``study_uids`` are then the remapped UIDs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from huizhen.integration.model import Consultation, OutboundMessage
from huizhen.integration.repo import Repository
from huizhen.integration.teaching import TeachingCase, build_case, rank_cases

IMAGES_CHANNEL = "teaching-images"  # outbox jobs: make a case's de-identified image copies
IMAGES_TYPE = "CASE_IMAGES"

Pseudonymize = Callable[[str], str]
CompletionHook = Callable[[Repository, Consultation, datetime], Awaitable[None]]


class CaseArchiver:
    def __init__(self, pseudonymize: Pseudonymize) -> None:
        self.pseudonymize = pseudonymize

    async def __call__(self, repo: Repository, c: Consultation, at: datetime) -> None:
        patient = await repo.patients.get(c.patient_id)
        if patient is None:  # the foreign key makes this impossible; refuse rather than archive half a case
            raise LookupError(f"consultation {c.number} names no stored patient")
        case = build_case(c, patient, pseudonym=self.pseudonymize(patient.id), flags=c.learning_flags,
                          disease_name=c.disease_name)
        if await repo.cases.insert(case) and c.study_ids:
            await repo.outbox.enqueue(OutboundMessage(
                channel=IMAGES_CHANNEL, destination="teaching-cases", payload=case.id.encode(), created_at=at,
                control_id=case.id, type=IMAGES_TYPE, consultation_id=c.id,
            ))


def chain(*hooks: CompletionHook | None) -> CompletionHook:
    """One completion hook running each of ``hooks`` in order, in the same transaction."""
    present = [h for h in hooks if h is not None]

    async def run(repo: Repository, c: Consultation, at: datetime) -> None:
        for hook in present:
            await hook(repo, c, at)

    return run


async def recommended(repo: Repository, viewer_id: str, first: int) -> list[TeachingCase]:
    """Cases ranked for a viewer by the disease codes of their own recent consultations, then recency."""
    codes: Sequence[str] = await repo.cases.recent_codes_of(viewer_id)
    return rank_cases(await repo.cases.recent(), codes)[:first]
