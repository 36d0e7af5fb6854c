"""The DICOM SCP: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET on one AE (pynetdicom).

pynetdicom runs each association in its own threads; the handlers here only
translate between its events and the services, which answer a DIMSE status
and reach the asyncio loop through :class:`LoopBridge`:

* C-STORE → :class:`StorageService` (check, store the bytes, index);
* C-FIND → :class:`QueryService`; C-MOVE, C-GET → :class:`RetrieveService`.

Associations are accepted only from the calling AE titles of
``HUIZHEN_DICOM_PEERS`` (see :mod:`dicom_peers`); a refused one is logged.
An accepted peer acts as the ``his_system`` role of its facility, and each
operation is a Casbin decision (C-STORE: ``study write``; C-FIND, C-MOVE,
C-GET: ``study read``); a denied one is answered 0x0124 Not Authorized.
Every socket gets TCP_NODELAY: pynetdicom writes a DIMSE response in small
pieces and without it each C-STORE waits on Nagle and delayed ACK (~40 ms).
Each accepted association's reactor waits on its socket instead of polling it
every millisecond, its copy of the supported contexts is cheap, and
pynetdicom's per-PDU log handlers stay unbound unless its logger is enabled
for INFO (:mod:`dicom_reactor`); C-STORE requests are read from their command
set's bytes (:mod:`dicom_store_request`) and responses encoded as bytes directly
(:mod:`dicom_store_response`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any, cast

from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event as DicomEvent
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from huizhen.adapters.dicom_bridge import BridgeTimeout, LoopBridge
from huizhen.adapters.dicom_find_service import QueryService
from huizhen.adapters.dicom_peers import Peer, PeerPolicy, move_destinations
from huizhen.adapters.dicom_reactor import cheaply_copied, quiet_pynetdicom_logs, wait_for_requests, wake_on_events
from huizhen.adapters.dicom_retrieve import RetrieveService
from huizhen.adapters.dicom_status import Status
from huizhen.adapters.dicom_storage import StorageService
from huizhen.adapters.dicom_store_request import receive_stores_directly
from huizhen.adapters.dicom_store_response import answer_stores_directly
from huizhen.adapters.objects import ObjectStore
from huizhen.integration.errors import BadInput
from huizhen.integration.events import EventBus
from huizhen.integration.imaging import ImagingIndexer
from huizhen.integration.store import Store
from huizhen.mappings.dicom_part10 import file_meta
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.rows import PLATFORM
from huizhen.settings import Settings

log = logging.getLogger(__name__)
_PEER_ROLES = frozenset({"his_system"})  # what a DICOM peer is to the policy, in its facility

_MAX_PDU = 256 * 1024  # fewer, larger P-DATA PDUs per instance than pynetdicom's 16 KiB default
_QR_MODELS = (
    PatientRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelGet,
)


class DicomListener:
    """``await start()`` binds ``settings.host`` and ``port`` (default ``settings.dicom_port``;
    0 lets the OS choose, see :attr:`port`); ``await stop()`` closes every association."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: EventBus,
        *,
        port: int | None = None,
        objects: ObjectStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.settings = settings
        self.authorizer = authorizer  # None: the allow-list alone decides (tests of the listener by itself)
        self.policy = PeerPolicy.from_settings(settings)  # ConfigurationError in production without peers
        self.store = store
        self.bus = bus
        self.objects = objects or ObjectStore(settings.data_dir / "dicom", store.keyring)
        self.indexer = ImagingIndexer(store, bus)
        self.ssl_context = ssl_context
        self._port = settings.dicom_port if port is None else port
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the DICOM listener is not started")
        return int(self._server.server_address[1])

    @property
    def server(self) -> ThreadedAssociationServer | None:
        """The running association server (for event handlers such as metrics), if started."""
        return self._server

    async def start(self) -> None:
        self.objects.root.mkdir(parents=True, exist_ok=True)
        s = self.settings
        bridge = LoopBridge(asyncio.get_running_loop())
        timeout = s.dicom_store_timeout_seconds
        self._storage = StorageService(
            self.objects, self.indexer, bridge, tz=s.tz, timeout=timeout, fallback_charset=s.dicom_fallback_charset
        )
        self._queries = QueryService(self.store, bridge, tz=s.tz, timeout=timeout, max_results=s.dicom_max_find_results)
        self._retrieve = RetrieveService(
            self._queries, self.objects, move_destinations(s.dicom_move_destinations),
            sub_association_handlers=[(evt.EVT_CONN_OPEN, _no_delay)],
        )
        quiet_pynetdicom_logs()
        ae = self._ae = self._application_entity()
        self._server = await asyncio.to_thread(
            ae.start_server, (s.host, self._port), block=False, evt_handlers=self._handlers(),
            ssl_context=self.ssl_context, contexts=cheaply_copied(ae.supported_contexts),
        )
        log.info(
            "DICOM listener started",
            extra={"port": self.port, "ae_title": s.dicom_ae, "tls": self.ssl_context is not None,
                   "allow_list": self.policy.allowed_ae_titles or "any AE (development)"},
        )

    async def stop(self) -> None:
        """Close the port and abort the associations still open."""
        if self._server is not None:
            server, self._server = self._server, None
            # off the loop: association threads may be waiting on the loop to finish a store
            await asyncio.to_thread(_let_refused_close, server)
            await asyncio.to_thread(self._ae.shutdown)

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.settings.dicom_ae)
        ae.maximum_pdu_size = _MAX_PDU
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            # scp_role: a C-GET requestor asks to be the Storage SCP of the sub-operations
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=False, scp_role=True)
        for model in _QR_MODELS:
            ae.add_supported_context(model)
        # an association addressed to another AE title was meant for another node: refused (called AE
        # title not recognised), not served as if it were ours
        ae.require_called_aet = True
        if not self.policy.open_to_any:
            ae.require_calling_aet = self.policy.allowed_ae_titles
        return ae

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_CONN_OPEN, _on_connection),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
        ]

    def _peer(self, event: DicomEvent) -> Peer:
        requestor = event.assoc.requestor
        return self.policy.peer(requestor.ae_title, f"{requestor.address}:{requestor.port}")

    def _on_accepted(self, event: DicomEvent) -> None:
        if self.policy.open_to_any:
            peer = self._peer(event)
            log.info("DICOM association accepted from %s (development: no HUIZHEN_DICOM_PEERS allow-list)",
                     peer.ae_title, extra={"calling_ae": peer.ae_title, "peer": peer.address})

    def _on_rejected(self, event: DicomEvent) -> None:
        peer = self._peer(event)
        log.warning("DICOM association rejected: calling AE %r is not in HUIZHEN_DICOM_PEERS", peer.ae_title,
                    extra={"calling_ae": peer.ae_title, "peer": peer.address})

    def _on_echo(self, event: DicomEvent) -> int:
        return int(Status.SUCCESS)

    def _allowed(self, peer: Peer, action: str, operation: str) -> bool:
        """A peer acts as the ``his_system`` role of its facility: the policy decides per operation."""
        if self.authorizer is None:
            return True
        domain = peer.facility_code or PLATFORM
        if self.authorizer.allowed(_PEER_ROLES, domain, "study", action):
            return True
        log.warning("DICOM %s refused by the policy: his_system in %s may not %s studies", operation, domain, action,
                    extra={"calling_ae": peer.ae_title, "peer": peer.address})
        return False

    def _on_store(self, event: DicomEvent) -> int:
        peer = self._peer(event)
        if not self._allowed(peer, "write", "C-STORE"):
            return int(Status.NOT_AUTHORIZED)
        return int(self._storage.store(_received_bytes(event), peer))

    def _on_find(self, event: DicomEvent) -> Iterator[tuple[int, Any]]:
        peer = self._peer(event)
        if not self._allowed(peer, "read", "C-FIND"):
            yield int(Status.NOT_AUTHORIZED), None
            return
        try:
            identifier = event.identifier
            _check_root(str(event.request.AffectedSOPClassUID), identifier)
            result = self._queries.find(identifier, peer)
        except BadInput as exc:
            log.warning("C-FIND refused: %s", exc, extra={"calling_ae": peer.ae_title})
            yield int(Status.IDENTIFIER_MISMATCH), None
            return
        except BridgeTimeout:
            yield int(Status.OUT_OF_RESOURCES), None
            return
        except Exception:  # a failing database or an undecodable identifier: answer, keep serving
            log.exception("C-FIND failed", extra={"calling_ae": peer.ae_title})
            yield int(Status.UNABLE_TO_PROCESS), None
            return
        for response in result.responses:
            if event.is_cancelled:
                yield int(Status.CANCEL), None
                return
            yield int(Status.PENDING), response
        if result.limited:
            yield int(Status.RESPONSE_LIMIT), None

    def _on_move(self, event: DicomEvent) -> Iterator[Any]:
        destination = event.move_destination
        ae = destination.decode(errors="replace") if isinstance(destination, bytes) else str(destination or "")
        peer = self._peer(event)
        refused = not self._allowed(peer, "read", "C-MOVE")
        yield from self._retrieve.move(event.identifier, ae, peer, lambda: event.is_cancelled, refused=refused)

    def _on_get(self, event: DicomEvent) -> Iterator[Any]:
        peer = self._peer(event)
        refused = not self._allowed(peer, "read", "C-GET")
        yield from self._retrieve.get(event.identifier, peer, lambda: event.is_cancelled, refused=refused)


def _let_refused_close(server: ThreadedAssociationServer, within: float = 2.0) -> None:
    """Wait (bounded) for rejected associations to see their peer close: aborting one still in
    Sta13 raises in pynetdicom's reactor thread (an invalid event for that state)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(
        a.is_alive() and a.is_rejected for a in server.active_associations
    ):
        time.sleep(0.01)


def _check_root(sop_class_uid: str, identifier: Any) -> None:
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if sop_class_uid == StudyRootQueryRetrieveInformationModelFind and level == "PATIENT":
        raise BadInput("the Study Root information model has no PATIENT level")


def _received_bytes(event: DicomEvent) -> bytes:
    """What ``event.encoded_dataset()`` returns (Part-10: preamble, File Meta Information, the data set
    as received), with the File Meta Information encoded directly rather than through pydicom."""
    request = cast(C_STORE, event.request)
    meta = file_meta(
        str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID), str(event.context.transfer_syntax),
        PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION,
    )
    return meta + cast(io.BytesIO, request.DataSet).getvalue()


def _on_connection(event: DicomEvent) -> None:
    """An accepted connection: no Nagle, reactors that wait on events rather than polling,
    C-STORE requests read and responses encoded directly."""
    _no_delay(event)
    wake_on_events(event.assoc.dul)
    wait_for_requests(event.assoc)
    answer_stores_directly(event.assoc)
    receive_stores_directly(event.assoc)


def _no_delay(event: DicomEvent) -> None:
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
