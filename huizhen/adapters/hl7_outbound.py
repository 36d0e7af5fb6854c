"""The report back: an ORU^R01 to the requesting facility's MLLP endpoint when a
consultation that came in by HL7 is COMPLETED.

Two halves, so that nothing is lost between them:

* :class:`ReportQueue` runs *inside* the transaction that completes the
  consultation and puts the ORU in the durable outbox;
* :class:`OutboundSender` is a background task that claims due outbox rows
  (a lease, so two instances never send one row at the same time), sends
  them over MLLP and records the outcome: AA/CA → SENT (and a timeline
  event), AR/CR → FAILED (the receiver refuses it; retrying would not help),
  anything else (AE, timeout, connection refused) → retried with exponential
  backoff. A restart simply finds the PENDING rows again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from huizhen.adapters.hl7_send import ack_code
from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_framing import MllpError
from huizhen.integration.model import Consultation, OutboundMessage, OutboundStatus, TimelineEvent
from huizhen.integration.outbox_sender import OutboxSender
from huizhen.integration.repo import Repository
from huizhen.integration.repo.outbox import backoff
from huizhen.integration.store import Store
from huizhen.mappings.hl7v2.report import ReportParties, build_report

log = logging.getLogger(__name__)

CHANNEL = "mllp-out"
_ACCEPTED = {"AA", "CA"}
_REFUSED = {"AR", "CR"}


class ReportQueue:
    """The completion hook: queue the ORU for consultations that arrived by HL7."""

    def __init__(self, endpoints: dict[str, tuple[str, int]], tz: tzinfo) -> None:
        self.endpoints = endpoints
        self.tz = tz

    async def __call__(self, repo: Repository, c: Consultation, at: datetime) -> None:
        if c.source_order is None or not c.timeline or not (c.timeline[0].actor or "").startswith("mllp:"):
            return  # not an HL7 order: nobody is waiting for an ORU
        facility = await repo.directory.facility(c.facility_id) if c.facility_id else None
        if facility is None or facility.code not in self.endpoints:
            log.info("no report endpoint for the requesting facility", extra={"consultation": c.number})
            return
        patient = await repo.patients.get(c.patient_id)
        if patient is None:
            raise LookupError(f"consultation {c.number} has no patient")
        expert = await repo.directory.practitioner(c.expert_id) if c.expert_id else None
        control_id = f"HZR{at.strftime('%Y%m%d%H%M%S')}{c.number[-4:]}"
        payload = build_report(
            c, ReportParties(patient, expert, facility), tz=self.tz, control_id=control_id
        )
        await repo.outbox.enqueue(
            OutboundMessage(
                channel=CHANNEL, destination=facility.code, payload=payload, created_at=at,
                control_id=control_id, type="ORU^R01", consultation_id=c.id,
            )
        )


class OutboundSender(OutboxSender):
    name = "hl7-outbound"

    def __init__(
        self, store: Store, endpoints: dict[str, tuple[str, int]], *, poll_s: float = 1.0,
        ack_timeout_s: float = 30.0, lease: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(store, [CHANNEL], poll_s=poll_s, lease=lease, clock=clock)
        self.endpoints = endpoints
        self.ack_timeout_s = ack_timeout_s

    async def attempt(self, m: OutboundMessage) -> None:
        endpoint = self.endpoints.get(m.destination)
        m.attempts += 1
        code, error = "", None
        if endpoint is None:
            error = f"no endpoint configured for facility {m.destination}"
        else:
            client = MllpClient(endpoint[0], endpoint[1], ack_timeout_s=self.ack_timeout_s)
            try:
                ack = await client.send(m.payload)
                code, m.ack = ack_code(ack), ack.decode("utf-8", errors="replace")
            except (MllpError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                await client.close()
        now = self.clock()
        if code in _ACCEPTED:
            m.status, m.sent_at, m.last_error = OutboundStatus.SENT, now, None
        elif code in _REFUSED:
            m.status, m.last_error = OutboundStatus.FAILED, f"refused by the receiver ({code})"
        else:
            m.last_error = error or f"not accepted ({code or 'no ACK code'}); will retry"
            m.next_attempt_at = now + backoff(m.attempts)
        log.info("outbound attempt", extra={"channel": m.channel, "destination": m.destination,
                                            "control_id": m.control_id, "status": m.status.value,
                                            "attempts": m.attempts})
        async with self.store.write() as repo:
            await repo.outbox.update(m)
            if m.status is OutboundStatus.SENT and m.consultation_id:
                c = await repo.consultations.get(m.consultation_id)
                if c is not None:
                    c.timeline.append(TimelineEvent(at=now, type="REPORT_SENT", actor=CHANNEL,
                                                    detail=f"{m.type} {m.control_id} → {m.destination}"))
                    await repo.consultations.save(c)

