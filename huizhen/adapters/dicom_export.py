"""Export a stored study as Part-10 files, optionally de-identified (PS3.15 basic profile).

``huizhen dicom export STUDY_UID DIR [--deidentify]`` and the teaching-case
library call :func:`export_study`. With ``deidentify`` every instance goes
through :func:`huizhen.mappings.deidentify.deidentify` with the deployment's
de-identification key (:func:`deidentification_key`): names and ids become
the keyed pseudonym, dates move by the patient's offset and UIDs are remapped,
each the same way in every export, so the exported studies of one patient
stay linked to each other and to nothing else. Files are named by their
(new) SOP Instance UID; the first-stored content of a conflicting instance
is the one exported. Every export is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from huizhen.adapters.objects import ObjectStore
from huizhen.integration.crypto import KeyRing
from huizhen.integration.errors import BadInput, NotFound
from huizhen.integration.model import Actor, AuditEvent
from huizhen.integration.repo.imaging import StudyFilter
from huizhen.integration.store import Store
from huizhen.mappings.deidentify import deidentify
from huizhen.settings import Settings


@dataclass(frozen=True)
class ExportedStudy:
    study_instance_uid: str  # as written (remapped when de-identified)
    files: list[Path] = field(default_factory=list)
    pseudonym: str | None = None  # the de-identified PatientID/PatientName
    burned_in: int = 0  # instances whose header says the pixels carry burned-in text


def deidentification_key(keyring: KeyRing) -> bytes:
    """The deployment's de-identification key, derived from its index key (never stored apart)."""
    return hmac.new(keyring.index_key, b"huizhen:dicom-deidentify:v1", hashlib.sha256).digest()


async def export_study(
    store: Store, objects: ObjectStore, study_instance_uid: str, out_dir: Path, *,
    deidentify_key: bytes | None = None, actor: Actor | None = None,
) -> ExportedStudy:
    """Write the study's instances to ``out_dir``; :class:`NotFound` for an unknown study."""
    async with store.read() as repo:
        ref = await repo.imaging.study_ref(study_instance_uid)
        if ref is None:
            raise NotFound("ImagingStudy", study_instance_uid)
        stored = await repo.imaging.stored_instances([ref.id], StudyFilter())
    result = await asyncio.to_thread(_write_all, objects, [s.object_key for s in stored], out_dir, deidentify_key)
    who = actor or Actor(id="cli", roles=("integration_admin",))
    async with store.write() as repo:
        await repo.audit.append(
            AuditEvent(
                at=datetime.now(UTC), actor=who.id, roles=list(who.roles), action="export",
                entity_type="ImagingStudy", entity_id=ref.id, outcome="success",
                detail=f"{len(result.files)} instance(s), {'de-identified' if deidentify_key else 'identified'}",
            )
        )
    return ExportedStudy(result.study_instance_uid or study_instance_uid, result.files, result.pseudonym,
                         result.burned_in)


def _write_all(objects: ObjectStore, keys: list[str], out_dir: Path, key: bytes | None) -> ExportedStudy:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    study_uid, pseudonym, burned_in = "", None, 0
    for object_key in keys:
        try:
            ds: Dataset = dcmread(io.BytesIO(objects.read(object_key)))
        except InvalidDicomError as exc:
            raise BadInput(f"{object_key} is not readable DICOM") from exc
        if key is not None:
            done = deidentify(ds, key)
            ds, pseudonym = done.dataset, done.pseudonym
            burned_in += done.burned_in
        study_uid = str(ds.StudyInstanceUID)
        target = out_dir / f"{ds.SOPInstanceUID}.dcm"
        temp = target.with_name(f".{target.name}.tmp")
        ds.save_as(temp, enforce_file_format=True)
        os.replace(temp, target)
        files.append(target)
    return ExportedStudy(study_uid, files, pseudonym, burned_in)


async def export_from_settings(
    settings: Settings, study_instance_uid: str, out_dir: Path, *, deidentify: bool
) -> ExportedStudy:
    """``huizhen dicom export``: the configured data folder and database, opened for one export."""
    from huizhen.app import open_store  # the composition root, imported only by this entry point

    store = await open_store(settings, migrate_db=False)
    keyring = store.keyring
    data = settings.data_dir
    try:
        return await export_study(
            store, ObjectStore(data / "dicom", keyring), study_instance_uid, out_dir,
            deidentify_key=deidentification_key(keyring) if deidentify else None,
        )
    finally:
        await store.close()
