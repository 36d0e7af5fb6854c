"""The FHIR report back: a COMPLETED consultation's Encounter and DiagnosticReport, PUT to the HIS FHIR
server of the requesting facility (``fhir_his_servers``, see :mod:`.fhir_his`).

The same two halves as the HL7 report back (:mod:`.hl7_outbound`), so nothing
is lost between them:

* :class:`FhirPushQueue` runs inside the transaction that completes the
  consultation and puts the resources, rendered for the HIS
  (:func:`~huizhen.mappings.fhir.outbound_push.for_his`), in the durable
  outbox on channel ``fhir-out:<FACILITY>``;
* :class:`FhirPushSender` claims due rows of those channels (by lease) and
  PUTs them with the facility's :class:`~.fhir_client.FhirClient`: all
  accepted → SENT and a ``REPORT_SENT`` timeline event; refused with a 4xx
  other than 408/429 → FAILED (retrying would not help); anything else
  (no connection, timeout, 5xx, 429 after the client's own retries) →
  retried later with the outbox's backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from huizhen.adapters.fhir_client import FhirClientError, FhirServerError
from huizhen.adapters.fhir_his import CHANNEL_PREFIX, HisClients
from huizhen.integration.errors import NotFound
from huizhen.integration.model import Consultation, OutboundMessage, OutboundStatus, TimelineEvent
from huizhen.integration.outbox_sender import OutboxSender
from huizhen.integration.repo import Repository
from huizhen.integration.repo.outbox import backoff
from huizhen.integration.store import Store
from huizhen.mappings.fhir import jsonio
from huizhen.mappings.fhir.outbound_push import for_his

log = logging.getLogger(__name__)

PUSH_TYPE = "Encounter+DiagnosticReport"


class FhirPushQueue:
    """The completion hook: queue the push for consultations of a facility with a HIS FHIR server."""

    def __init__(self, his: HisClients) -> None:
        self.his = his

    async def __call__(self, repo: Repository, c: Consultation, at: datetime) -> None:
        facility = await repo.directory.facility(c.facility_id) if c.facility_id else None
        server = self.his.servers.get(facility.code) if facility else None
        if facility is None or server is None:
            return
        patient = await repo.patients.get(c.patient_id)
        if patient is None:
            raise LookupError(f"consultation {c.number} has no patient")
        names = {f"Organization/{facility.id}": facility.name}
        for role_id in filter(None, (c.requester_id, c.expert_id)):
            person = await repo.directory.practitioner(role_id)
            if person is not None:
                names[f"Practitioner/{person.id}"] = person.name.text
        resources = for_his(c, patient, names, server.patient_identifier_system)
        await repo.outbox.enqueue(OutboundMessage(
            channel=server.channel, destination=facility.code, payload=jsonio.dumps(resources), created_at=at,
            control_id=c.number or c.id, type=PUSH_TYPE, consultation_id=c.id,
        ))


class FhirPushSender(OutboxSender):
    name = "fhir-push"

    def __init__(
        self, store: Store, his: HisClients, *, poll_s: float = 1.0, lease: timedelta = timedelta(seconds=120),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(store, [server.channel for server in his.servers.values()], poll_s=poll_s, lease=lease,
                         clock=clock)
        self.his = his

    async def attempt(self, m: OutboundMessage) -> None:
        m.attempts += 1
        now = self.clock()
        try:
            client = self.his.client(m.channel.removeprefix(CHANNEL_PREFIX))
            for resource in jsonio.load_json(m.payload):
                await client.put(resource)
        except FhirServerError as exc:
            if 400 <= exc.status < 500 and exc.status not in (408, 429):
                m.status, m.last_error = OutboundStatus.FAILED, f"refused by the HIS: {exc}"
            else:
                m.last_error, m.next_attempt_at = f"{exc}; will retry", now + backoff(m.attempts)
        except FhirClientError as exc:
            m.last_error, m.next_attempt_at = f"{exc}; will retry", now + backoff(m.attempts)
        except NotFound:
            m.status, m.last_error = OutboundStatus.FAILED, f"no HIS FHIR server configured for {m.destination}"
        else:
            m.status, m.sent_at, m.last_error = OutboundStatus.SENT, now, None
        log.info("FHIR push attempt", extra={"channel": m.channel, "control_id": m.control_id,
                                             "status": m.status.value, "attempts": m.attempts})
        async with self.store.write() as repo:
            await repo.outbox.update(m)
            if m.status is OutboundStatus.SENT and m.consultation_id:
                c = await repo.consultations.get(m.consultation_id)
                if c is not None:
                    c.timeline.append(TimelineEvent(at=now, type="REPORT_SENT", actor=m.channel,
                                                    detail=f"{m.type} → {m.destination}"))
                    await repo.consultations.save(c)
