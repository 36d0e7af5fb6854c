"""Prior studies from a facility's PACS: C-FIND (study root) then C-MOVE to Huizhen itself (SCU).

``HUIZHEN_DICOM_PACS`` (``FACILITY=AE@host:port,…``) names each facility's
PACS. For a consultation, :class:`PriorStudies` asks the PACS of the
consultation's facility (or of the facility that issued one of the patient's
identifiers) for the patient's studies by PatientID, then asks it to C-MOVE
each one to ``HUIZHEN_DICOM_AE``. The PACS sends them to the DICOM listener
like any modality (its AE title must be on ``HUIZHEN_DICOM_PEERS``), so they
are stored, indexed and linked to the patient the usual way; those not yet
attached to a consultation are attached to this one.

The consultation's timeline shows ``PRIORS_REQUESTED`` and then
``PRIORS_RETRIEVED`` ("N studies retrieved") or ``PRIORS_FAILED`` (why).
The association runs in a worker thread: the listener that receives the
moved instances needs the event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from huizhen.adapters.dicom_status import Status, describe
from huizhen.integration.errors import BadInput, HuizhenError, NotFound
from huizhen.integration.events import EventBus
from huizhen.integration.imaging import PRIORS_FAILED, PRIORS_REQUESTED, PRIORS_RETRIEVED, note_on_consultation
from huizhen.integration.model import Actor, Consultation, Identifier
from huizhen.integration.store import Store
from huizhen.settings import Settings, parse_pacs

log = logging.getLogger(__name__)

_PENDING = (int(Status.PENDING), 0xFF01)
_FIND_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "StudyDescription", "PatientName")


class PacsError(HuizhenError):
    """The PACS could not be reached or refused the query; the message says how."""


@dataclass(frozen=True, slots=True)
class Pacs:
    facility_code: str
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Retrieval:
    """What one prior-studies request did."""

    pacs: Pacs
    patient_id: str
    found: list[str] = field(default_factory=list)  # Study Instance UIDs the PACS reported
    retrieved: list[str] = field(default_factory=list)  # moved with every sub-operation succeeding
    failed: dict[str, str] = field(default_factory=dict)  # study UID -> final status
    error: str | None = None  # the whole request failed (association, C-FIND)


class PacsClient:
    """A C-FIND/C-MOVE requestor (blocking; run it in a thread)."""

    def __init__(self, calling_ae: str, move_destination: str, *, timeout: float) -> None:
        self.calling_ae = calling_ae
        self.move_destination = move_destination
        self.timeout = timeout

    def fetch(self, pacs: Pacs, patient_id: str) -> Retrieval:
        ae = AE(self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title,
                             evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "is not reachable"
            raise PacsError(f"PACS {pacs} {why}")
        try:
            found = self._find(assoc, pacs, patient_id)
            out = Retrieval(pacs, patient_id, found=found)
            for uid in found:
                status = self._move(assoc, uid)
                if status == Status.SUCCESS:
                    out.retrieved.append(uid)
                else:
                    out.failed[uid] = describe(status) if status is not None else "no answer"
            return out
        finally:
            if assoc.is_established:
                assoc.release()

    def _find(self, assoc: Association, pacs: Pacs, patient_id: str) -> list[str]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = patient_id
        query.StudyInstanceUID = ""
        for keyword in _FIND_KEYS:
            setattr(query, keyword, "")
        uids: list[str] = []
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if not status:  # no response within the DIMSE timeout, or the association went away
                raise PacsError(f"PACS {pacs} did not answer the C-FIND")
            code = int(status.Status)
            if code in _PENDING and identifier is not None:
                uid = str(identifier.get("StudyInstanceUID", "")).strip()
                if uid and uid not in uids:
                    uids.append(uid)
            elif code not in (int(Status.SUCCESS), *_PENDING):
                raise PacsError(f"PACS {pacs} answered the C-FIND with {describe(code)}")
        return uids

    def _move(self, assoc: Association, study_uid: str) -> int | None:
        """The final status of moving one study to ourselves (None: no answer)."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        final: int | None = None
        for status, _ in assoc.send_c_move(
            ident, self.move_destination, StudyRootQueryRetrieveInformationModelMove
        ):
            if not status:
                return None
            if int(status.Status) not in _PENDING:
                final = int(status.Status)
        return final


class PriorStudies:
    def __init__(self, settings: Settings, store: Store, bus: EventBus, client: PacsClient | None = None) -> None:
        self.store = store
        self.bus = bus
        self.timeout = settings.dicom_pacs_timeout_seconds
        self.pacs = {code: Pacs(code, *where) for code, where in parse_pacs(settings.dicom_pacs).items()}
        # the move destination is Huizhen's own AE title: the PACS sends to our listener
        self.client = client or PacsClient(settings.dicom_ae, settings.dicom_ae, timeout=self.timeout)

    async def target(self, c: Consultation) -> tuple[Pacs, str]:
        """The PACS to ask and the PatientID to ask it for; :class:`BadInput` when none is configured."""
        async with self.store.read() as repo:
            patient = await repo.patients.get(c.patient_id)
            facility = await repo.directory.facility(c.facility_id) if c.facility_id else None
        if patient is None:
            raise NotFound("Patient", c.patient_id)
        codes = [facility.code] if facility else []
        codes += [i.system for i in patient.identifiers if i.system not in codes]
        for code in codes:
            pacs = self.pacs.get(code)
            ident = _identifier_for(patient.identifiers, code)
            if pacs is not None and ident is not None:
                return pacs, ident.value
        raise BadInput(
            "no PACS is configured (HUIZHEN_DICOM_PACS) for a facility that knows this patient "
            f"(tried {', '.join(codes) or 'none'})"
        )

    async def retrieve(self, consultation_id: str, actor: Actor) -> tuple[Consultation, Retrieval]:
        async with self.store.read() as repo:
            c = await repo.consultations.get(consultation_id)
        if c is None:
            raise NotFound("Consultation", consultation_id)
        pacs, patient_id = await self.target(c)
        await note_on_consultation(self.store, self.bus, c.id, PRIORS_REQUESTED, actor.id,
                                   f"prior studies of PatientID {patient_id} from PACS {pacs}")
        try:
            result = await asyncio.wait_for(asyncio.to_thread(self.client.fetch, pacs, patient_id), self.timeout)
        except (PacsError, TimeoutError, OSError) as exc:
            why = str(exc) or f"no answer from PACS {pacs} within {self.timeout:g} s"
            log.warning("prior studies: %s", why, extra={"consultation_id": c.id})
            result = Retrieval(pacs, patient_id, error=why)
            c = await note_on_consultation(self.store, self.bus, c.id, PRIORS_FAILED, actor.id, why)
            return c, result
        c = await note_on_consultation(
            self.store, self.bus, c.id, PRIORS_FAILED if result.failed else PRIORS_RETRIEVED, actor.id,
            _summary(result), attach=result.retrieved,
        )
        return c, result


def _identifier_for(identifiers: list[Identifier], code: str) -> Identifier | None:
    return next((i for i in identifiers if i.system == code), None)


def _summary(r: Retrieval) -> str:
    text = f"{len(r.retrieved)} of {len(r.found)} studies retrieved from PACS {r.pacs}"
    if r.failed:
        text += "; failed: " + ", ".join(f"{uid} ({status})" for uid, status in r.failed.items())
    return text


def _no_delay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
