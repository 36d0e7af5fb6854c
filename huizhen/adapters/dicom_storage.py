"""C-STORE: check the received bytes, store them, index them, answer a DIMSE status.

Runs in the association's thread. The order is what makes a Success mean
"kept": the bytes as received (``event.encoded_dataset()``, never decoded
and re-encoded) are checked by :func:`read_indexed`; this thread writes them
atomically to the object store (fsync); then the asyncio loop writes the
index rows and commits them (group commit, shared with the other
associations); only then is 0x0000 returned. The rows are written after the
write returned, not alongside it: overlapping the two cost a second
hand-off to the loop per instance and the two threads contending for the
GIL, measured at ~0.3 ms of CPU per C-STORE, more than the overlap saved.
Every failure becomes one status here:

* unreadable, truncated or UID-less dataset → 0xC000, nothing stored;
* the disk refuses the write → 0xA700, nothing indexed, earlier objects intact;
* the index does not commit within ``dicom_store_timeout_seconds`` (or the
  database fails) → 0xA700. The object may already be on disk: a resend is
  idempotent (same bytes, same key) and gets it indexed.

Refusals are journaled as ERROR messages on the ``dicom`` channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from huizhen.adapters.dicom_bridge import BridgeTimeout, LoopBridge
from huizhen.adapters.dicom_peers import Peer
from huizhen.adapters.dicom_status import Status, describe
from huizhen.adapters.objects import InvalidObjectKey, ObjectStore, ObjectWriteError, StoredObject
from huizhen.integration.errors import BadInput, HuizhenError
from huizhen.integration.imaging import ImagingIndexer, ReceivedInstance
from huizhen.mappings.dicom import Header, instance_from_dataset, patient_from_dataset, study_from_dataset
from huizhen.mappings.dicom_read import read_indexed

log = logging.getLogger(__name__)


class StorageService:
    def __init__(
        self,
        objects: ObjectStore,
        indexer: ImagingIndexer,
        bridge: LoopBridge,
        *,
        tz: tzinfo,
        timeout: float,
        fallback_charset: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.objects = objects
        self.indexer = indexer
        self.bridge = bridge
        self.tz = tz
        self.timeout = timeout
        self.fallback_charset = fallback_charset
        self.clock = clock or (lambda: datetime.now(UTC))

    def store(self, data: bytes, peer: Peer) -> Status:
        """Take one received instance (Part-10 bytes); never raises."""
        at = self.clock()
        try:
            ds = read_indexed(data)
        except BadInput as exc:
            return self._refuse(peer, None, Status.CANNOT_UNDERSTAND, str(exc), at)
        uid = str(ds.SOPInstanceUID)
        try:
            key, digest = self.objects.address(uid, data)
            item = self._received(ds, StoredObject(key, uid, digest, len(data), created=True), peer, at)
        except InvalidObjectKey as exc:
            return self._refuse(peer, uid, Status.CANNOT_UNDERSTAND, str(exc), at)
        except (HuizhenError, ValueError) as exc:  # a header value the mapping cannot use
            return self._refuse(peer, uid, Status.CANNOT_UNDERSTAND, f"header: {exc}", at)
        try:  # the bytes durable first, then the rows committed (see the module docstring)
            self.objects.put(uid, data, digest=digest)
            self.bridge.call(self.indexer.index(item), timeout=self.timeout)
        except ObjectWriteError as exc:
            return self._refuse(peer, uid, Status.OUT_OF_RESOURCES, f"object store: {exc}", at)
        except BridgeTimeout as exc:
            return self._refuse(peer, uid, Status.OUT_OF_RESOURCES, f"index: {exc}", at)
        except Exception as exc:  # the database failed: say so and keep serving
            log.exception("C-STORE: indexing failed", extra={"sop_instance_uid": uid, "calling_ae": peer.ae_title})
            return self._refuse(peer, uid, Status.OUT_OF_RESOURCES, f"index: {type(exc).__name__}", at)
        return Status.SUCCESS

    def _received(self, ds: Header, stored: StoredObject, peer: Peer, at: datetime) -> ReceivedInstance:
        instance = instance_from_dataset(
            ds, object_key=stored.key, size=stored.size, sha256=stored.sha256, conflict=stored.conflict
        )
        instance.transfer_syntax_uid = str(ds.file_meta.get("TransferSyntaxUID", "")) or None
        patient = patient_from_dataset(ds, default_issuer=peer.default_issuer, fallback_charset=self.fallback_charset)
        study = study_from_dataset(
            ds, patient_id=patient.id, default_tz=self.tz, instance=instance, fallback_charset=self.fallback_charset
        )
        return ReceivedInstance(
            patient=patient, study=study, calling_ae=peer.ae_title, received_at=at,
            peer=peer.address, facility_code=peer.facility_code,
        )

    def _refuse(self, peer: Peer, uid: str | None, status: Status, error: str, at: datetime) -> Status:
        log.warning(
            "C-STORE refused: %s", error,
            extra={"status": describe(status), "calling_ae": peer.ae_title, "sop_instance_uid": uid},
        )
        try:
            self.bridge.call(
                self.indexer.record_failure(
                    calling_ae=peer.ae_title, peer=peer.address, sop_instance_uid=uid, error=error,
                    answer=describe(status), received_at=at,
                ),
                timeout=self.timeout,
            )
        except Exception:  # the journal is best effort here: the answer matters more
            log.exception("C-STORE: could not journal the refusal")
        return status

