"""export_study (the teaching-case library's entry point) over studies received by the real listener."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from huizhen.adapters.dicom_export import deidentification_key, export_study
from huizhen.integration.crypto import KeyRing
from huizhen.integration.errors import NotFound
from huizhen.integration.model import Actor
from huizhen.integration.store import Store
from tests.dicom_support import corpus, pynetdicom_store, running_listener

SUCCESS = 0x0000


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


async def test_two_studies_of_one_patient_keep_their_interval_and_links(
    store: Store, keyring: KeyRing, tmp_path: Path
) -> None:
    current = dcmread(corpus("CT_small.dcm"))
    prior = dcmread(corpus("CT_small.dcm"))
    prior.StudyInstanceUID, prior.SeriesInstanceUID, prior.StudyDate = generate_uid(), generate_uid(), "20030119"
    prior.SOPInstanceUID = prior.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    async with running_listener(store, tmp_path / "data") as scp:
        assert await pynetdicom_store(scp.port, current, prior) == [SUCCESS, SUCCESS]
        objects = scp.listener.objects
    key = deidentification_key(keyring)
    actor = Actor(id="teaching-library", roles=("system",))
    a = await export_study(store, objects, str(current.StudyInstanceUID), tmp_path / "a", deidentify_key=key,
                           actor=actor)
    b = await export_study(store, objects, str(prior.StudyInstanceUID), tmp_path / "b", deidentify_key=key,
                           actor=actor)
    [x], [y] = [dcmread(f) for f in a.files], [dcmread(f) for f in b.files]

    assert a.pseudonym == b.pseudonym == x.PatientID == y.PatientID  # one patient, one pseudonym
    assert _day(x.StudyDate) - _day(y.StudyDate) == _day(current.StudyDate) - _day(prior.StudyDate)  # interval kept
    assert x.StudyDate != current.StudyDate
    assert x.StudyInstanceUID == a.study_instance_uid != current.StudyInstanceUID
    assert x.FrameOfReferenceUID == y.FrameOfReferenceUID  # the same source UID maps to the same new UID
    assert "PatientBirthDate" not in x or not x.PatientBirthDate
    for kept in ("Modality", "Rows", "Columns"):
        assert x[kept].value == current[kept].value

    async with store.read() as repo:
        audits = [e async for e in repo.audit.all() if e.actor == "teaching-library"]
    assert [e.action for e in audits] == ["export", "export"]

    with pytest.raises(NotFound):
        await export_study(store, objects, "1.2.3.4", tmp_path / "c", deidentify_key=key)
