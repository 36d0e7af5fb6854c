"""C-MOVE and C-GET: send stored instances to an expert's workstation.

Both are pynetdicom generator handlers (PS3.4 C.4.2, C.4.3). The identifier
names what to send by its level's unique key; the instances come from the
index (first-stored content of each SOP Instance UID) and their bytes from
the object store. C-MOVE sends only to an AE of ``dicom_move_destinations``
(an unknown one is 0xA801), over a new association proposing each
instance's stored transfer syntax — plus the uncompressed ones when it is
uncompressed, since those convert losslessly. C-GET sends back over the
requesting association, in the contexts the requestor offered.

An instance whose file cannot be read fails as one sub-operation; the others
are still sent and the final status says how many failed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.presentation import PresentationContext, build_context

from huizhen.adapters.dicom_bridge import BridgeTimeout
from huizhen.adapters.dicom_find_service import QueryService
from huizhen.adapters.dicom_peers import Peer
from huizhen.adapters.dicom_status import Status
from huizhen.adapters.objects import ObjectStore
from huizhen.integration.errors import BadInput
from huizhen.integration.repo.imaging import StoredInstance

log = logging.getLogger(__name__)

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
_MAX_CONTEXTS = 128  # PS3.8: presentation context ids are odd numbers 1-255


class RetrieveService:
    def __init__(
        self, queries: QueryService, objects: ObjectStore, destinations: dict[str, tuple[str, int]],
        *, sub_association_handlers: list[Any] | None = None,
    ) -> None:
        self.queries = queries
        self.objects = objects
        self.destinations = destinations
        self.sub_association_handlers = sub_association_handlers or []

    def move(
        self, identifier: Dataset, destination_ae: str, peer: Peer, is_cancelled: Any, *, refused: bool = False,
    ) -> Iterator[Any]:
        """The EVT_C_MOVE yields: destination, number of sub-operations, (status, dataset)…

        ``refused``: the policy denies the peer; answered 0x0124 without looking anything up."""
        address = self.destinations.get(destination_ae.strip())
        if address is None:
            log.warning("C-MOVE to an unknown destination", extra={"destination": destination_ae,
                                                                   "calling_ae": peer.ae_title})
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        what = f"C-MOVE to {destination_ae.strip()}"
        found = Status.NOT_AUTHORIZED if refused else self._find(identifier, peer, what)
        if isinstance(found, Status):
            # the failure status can only be given after the destination and a sub-operation count
            yield address[0], address[1], {"contexts": [build_context(ImplicitVRLittleEndian)]}
            yield 1
            yield found, None
            return
        kwargs = {"contexts": contexts_for(found), "evt_handlers": self.sub_association_handlers}
        yield address[0], address[1], kwargs
        yield len(found)
        yield from self._send(found, is_cancelled)

    def get(self, identifier: Dataset, peer: Peer, is_cancelled: Any, *, refused: bool = False) -> Iterator[Any]:
        """The EVT_C_GET yields: number of sub-operations, (status, dataset)…"""
        found = Status.NOT_AUTHORIZED if refused else self._find(identifier, peer, "C-GET")
        if isinstance(found, Status):
            yield 1
            yield found, None
            return
        yield len(found)
        yield from self._send(found, is_cancelled)

    def _find(self, identifier: Dataset, peer: Peer, what: str) -> list[StoredInstance] | Status:
        try:
            return self.queries.retrievable(identifier, peer, what)
        except BadInput as exc:
            log.warning("%s refused: %s", what, exc, extra={"calling_ae": peer.ae_title})
            return Status.IDENTIFIER_MISMATCH
        except BridgeTimeout:
            log.warning("%s: the store did not answer in time", what, extra={"calling_ae": peer.ae_title})
            return Status.UNABLE_TO_CALCULATE_MATCHES
        except Exception:  # a failing database: answer, keep serving
            log.exception("%s failed", what, extra={"calling_ae": peer.ae_title})
            return Status.UNABLE_TO_CALCULATE_MATCHES

    def _send(self, found: list[StoredInstance], is_cancelled: Any) -> Iterator[tuple[Status, Dataset]]:
        for n, inst in enumerate(found):
            if is_cancelled():
                yield Status.CANCEL, _failed_list(found[n:])
                return
            yield Status.PENDING, self._dataset(inst)

    def _dataset(self, inst: StoredInstance) -> Dataset:
        try:
            return dcmread(io.BytesIO(self.objects.read(inst.object_key)))
        except Exception as exc:  # missing or unreadable file: this sub-operation fails
            log.error("retrieve: cannot read stored instance %s: %s", inst.sop_instance_uid, exc)
            return _unsendable(inst.sop_instance_uid)


def contexts_for(instances: list[StoredInstance]) -> list[PresentationContext]:
    """One proposed context per (SOP class, stored transfer syntax), at most 128."""
    pairs = sorted({(i.sop_class_uid, i.transfer_syntax_uid or ExplicitVRLittleEndian)
                    for i in instances if i.sop_class_uid})
    if len(pairs) > _MAX_CONTEXTS:
        log.warning("retrieve needs %d presentation contexts; proposing the first %d", len(pairs), _MAX_CONTEXTS)
    out = []
    for sop_class, syntax in pairs[:_MAX_CONTEXTS]:
        syntaxes = [syntax, *(s for s in _UNCOMPRESSED[:2] if s != syntax)] if syntax in _UNCOMPRESSED else [syntax]
        out.append(build_context(sop_class, syntaxes))
    return out


def _unsendable(sop_instance_uid: str) -> Dataset:
    # A Dataset without SOP Class UID makes pynetdicom's C-STORE sub-operation fail
    # before anything is sent, and pynetdicom lists the UID as failed.
    ds = Dataset()
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def _failed_list(remaining: list[StoredInstance]) -> Dataset:
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = [i.sop_instance_uid for i in remaining]
    return ds
