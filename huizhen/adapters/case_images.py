"""De-identified image copies for the teaching-case library, made after the completing commit.

:class:`~huizhen.integration.casebook.CaseArchiver` queues a ``teaching-images``
job in the outbox when a completed consultation has linked studies.
:class:`CaseImages` claims those jobs by lease (two instances never work on one
at the same time), exports each study with the DICOM PS3.15 basic profile
(:func:`~huizhen.adapters.dicom_export.export_study` with the deployment's
de-identification key) into ``<data>/teaching/<case id>/``, and records the
remapped Study Instance UIDs on the case. Exports are deterministic (same key,
same UIDs, same file names), so a job run twice writes the same files again.
A failed job keeps its error in the outbox row and is retried with back-off;
after ``max_attempts`` it is marked FAILED (the case keeps no images).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from huizhen.adapters.dicom_export import export_study
from huizhen.adapters.objects import ObjectStore
from huizhen.integration.casebook import IMAGES_CHANNEL
from huizhen.integration.model import Actor, OutboundMessage, OutboundStatus
from huizhen.integration.outbox_sender import OutboxSender
from huizhen.integration.repo.outbox import backoff
from huizhen.integration.store import Store

log = logging.getLogger(__name__)

ACTOR = Actor(id="huizhen-teaching", roles=("system",))


class CaseImages(OutboxSender):
    name = "case-images"

    def __init__(
        self, store: Store, objects: ObjectStore, out_dir: Path, deidentify_key: bytes, *,
        poll_s: float = 5.0, lease: timedelta = timedelta(minutes=10), max_attempts: int = 8,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(store, [IMAGES_CHANNEL], poll_s=poll_s, lease=lease, clock=clock)
        self.objects, self.out_dir, self.key, self.max_attempts = objects, out_dir, deidentify_key, max_attempts

    async def run_due(self) -> int:
        """One round: the due jobs, each attempted once; returns how many were claimed."""
        return await self.send_due()

    async def attempt(self, job: OutboundMessage) -> None:
        job.attempts += 1
        case_id = job.payload.decode()
        try:
            uids = await self._copies(case_id, job.consultation_id)
        except Exception as exc:  # any failure is recorded on the job and retried; the loop goes on
            job.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if job.attempts >= self.max_attempts:
                job.status = OutboundStatus.FAILED
            else:
                job.next_attempt_at = self.clock() + backoff(job.attempts)
            log.warning("teaching-case images failed", extra={"case": case_id, "attempts": job.attempts,
                                                              "error": job.last_error})
            async with self.store.write() as repo:
                await repo.outbox.update(job)
            return
        job.status, job.sent_at, job.last_error = OutboundStatus.SENT, self.clock(), None
        async with self.store.write() as repo:
            await repo.cases.set_study_uids(case_id, uids)
            await repo.outbox.update(job)
        log.info("teaching-case images copied", extra={"case": case_id, "studies": len(uids)})

    async def _copies(self, case_id: str, consultation_id: str | None) -> list[str]:
        async with self.store.read() as repo:
            c = await repo.consultations.get(consultation_id) if consultation_id else None
            if c is None:
                raise LookupError(f"case {case_id} names no stored consultation")
            studies = await repo.clinical.studies_by_ids(c.study_ids)
        uids = []
        for n, study in enumerate(sorted(studies, key=lambda s: s.study_instance_uid)):
            exported = await export_study(self.store, self.objects, study.study_instance_uid,
                                          self.out_dir / case_id / str(n), deidentify_key=self.key, actor=ACTOR)
            if exported.files:  # a study known only by its metadata has nothing to copy (nor a remapped UID)
                uids.append(exported.study_instance_uid)
        return uids
