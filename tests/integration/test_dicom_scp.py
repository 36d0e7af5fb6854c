"""The DICOM SCP in-process on a free port, a real store on both back ends, pynetdicom peers.

Edge cases a dcmtk program cannot produce (a truncated dataset sent as is, an
association aborted mid-dataset, a disk that refuses writes, a store that
does not answer) are driven here with pynetdicom as the requestor or raw PDUs
built with its codecs. ``tests/e2e/test_dicom_dcmtk.py`` covers dcmtk peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)
from sqlalchemy import text

from huizhen.adapters.dicom import DicomListener
from huizhen.adapters.objects import ObjectStore
from huizhen.integration.errors import ConfigurationError
from huizhen.integration.events import InProcessBus
from huizhen.integration.imaging import STUDY_RECEIVED
from huizhen.integration.model import (
    Consultation,
    HumanName,
    Identifier,
    ImagingStudy,
    MessageStatus,
    Patient,
    Urgency,
)
from huizhen.integration.repo import Repository
from huizhen.integration.repo.imaging import StudyFilter
from huizhen.integration.store import Store
from huizhen.settings import Settings
from tests.dicom_support import (
    FACILITY,
    MODALITY,
    Running,
    corpus,
    pynetdicom_store,
    running_listener,
    with_association,
)

CT = corpus("CT_small.dcm")
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
MR_SOP = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
NM_STUDY = "1.3.6.1.4.1.5962.1.2.8.20040826185059.5457"  # JPEG-LL and JPEG2000: two instances
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


@pytest.fixture
async def scp(store: Store, tmp_path: Path) -> Any:
    async with running_listener(store, tmp_path / "data") as running:
        yield running


async def studies(store: Store, **keys: Any) -> list[ImagingStudy]:
    async with store.read() as repo:
        ids = await repo.imaging.find_study_ids(StudyFilter(**keys), limit=100)
        return await repo.clinical.studies_by_ids(ids)


async def patient_of(store: Store, study: ImagingStudy) -> Patient:
    async with store.read() as repo:
        found = await repo.patients.get(study.patient_id)
    assert found is not None
    return found


def synthetic(name: str, charset: str | None, **attrs: Any) -> Dataset:
    """A small secondary-capture image carrying ``name`` in ``charset``."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = attrs.pop("PatientID", "CN-" + generate_uid()[-8:])
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = attrs.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = bytes(16)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def as_file(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


# --- C-ECHO, C-STORE and indexing -------------------------------------------------------------


async def test_store_indexes_patient_study_series_instance_and_journals(scp: Running) -> None:
    studies_topic = scp.bus.subscribe("study")
    echo = await with_association(scp.port, [build_context(Verification)], lambda a: int(a.send_c_echo().Status))
    assert echo == SUCCESS

    assert await pynetdicom_store(scp.port, CT) == [SUCCESS]

    [study] = await studies(scp.store, study_uids=[CT_STUDY])
    assert (study.modalities, study.series_count, study.instance_count) == (["CT"], 1, 1)
    inst = study.series[0].instances[0]
    assert inst.sop_instance_uid == CT_SOP and not inst.conflict and inst.object_key
    stored = ObjectStore(scp.settings.data_dir / "dicom", scp.store.keyring).read(inst.object_key, verify=True)
    assert dcmread(io.BytesIO(stored)).SOPInstanceUID == CT_SOP
    # the patient is named by PatientID under the calling AE's facility code: the MRN system HL7 uses
    async with scp.store.read() as repo:
        patient = await repo.patients.by_identifier(FACILITY, "1CT1")
        page = await repo.journal.search(channel="dicom")
    assert patient is not None and patient.id == study.patient_id
    assert patient.name.text == "CT1 CompressedSamples"
    [(msg, _)] = page.items
    assert (msg.status, msg.type, msg.sender, msg.control_id) == (MessageStatus.PROCESSED, "C-STORE", MODALITY, CT_SOP)
    summary = json.loads(msg.raw)
    assert summary["object_key"] == inst.object_key and summary["transfer_syntax_uid"] == ExplicitVRLittleEndian
    assert len(msg.raw) < 1000  # a summary, not the 39 KB dataset
    event = studies_topic.queue.get_nowait()
    assert (event.type, event.data["id"], event.data["new_study"]) == ("RECEIVED", study.id, True)


async def test_same_bytes_again_is_a_duplicate_and_other_bytes_are_kept_as_a_conflict(scp: Running) -> None:
    same_uid = [corpus("MR_small.dcm"), corpus("MR_small.dcm"), corpus("MR_small_implicit.dcm")]
    assert await pynetdicom_store(scp.port, *same_uid) == [SUCCESS] * 3

    async with scp.store.read() as repo:
        stored = await repo.imaging.stored_instances(
            await repo.imaging.find_study_ids(StudyFilter(sop_instance_uids=[MR_SOP]), limit=5), StudyFilter()
        )
        page = await repo.journal.search(channel="dicom")
    [study] = await studies(scp.store, sop_instance_uids=[MR_SOP])
    versions = study.series[0].instances
    assert [i.conflict for i in versions] == [False, True]  # the first content is served, the other flagged
    assert [s.transfer_syntax_uid for s in stored] == [ExplicitVRLittleEndian]
    assert len(ObjectStore(scp.settings.data_dir / "dicom", scp.store.keyring).versions(MR_SOP)) == 2
    assert sorted(m.status for m, _ in page.items) == sorted(
        [MessageStatus.PROCESSED, MessageStatus.DUPLICATE, MessageStatus.PROCESSED]
    )


async def test_patient_known_from_hl7_is_linked_not_duplicated(scp: Running) -> None:
    async with scp.store.write() as repo:
        known = await repo.patients.save(Patient(HumanName.of("张", ("伟",)), [Identifier(FACILITY, "1CT1")]))

    assert await pynetdicom_store(scp.port, CT) == [SUCCESS]

    [study] = await studies(scp.store, study_uids=[CT_STUDY])
    assert study.patient_id == known.id
    assert (await patient_of(scp.store, study)).name.text == "张伟"  # the header did not overwrite it


async def test_issuer_of_patient_id_names_the_identifier_system(scp: Running, tmp_path: Path) -> None:
    ds = synthetic("Li^Na", None, PatientID="P-77", IssuerOfPatientID="CITY_HOSPITAL")
    assert await pynetdicom_store(scp.port, as_file(ds, tmp_path / "issuer.dcm")) == [SUCCESS]

    [study] = await studies(scp.store, study_uids=[ds.StudyInstanceUID])
    assert (await patient_of(scp.store, study)).identifiers == [Identifier("CITY_HOSPITAL", "P-77")]


async def test_chinese_names_survive_utf8_gb18030_and_the_fallback_charset(store: Store, tmp_path: Path) -> None:
    gb = synthetic("张^三", "GB18030")
    raw = synthetic("Li^Si", None)
    # a sender that omits SpecificCharacterSet but writes GB18030 bytes (common in county PACS)
    raw.PatientName = "李^四".encode("gb18030")  # type: ignore[assignment]
    files = [corpus("chrX1.dcm"), as_file(gb, tmp_path / "gb.dcm"), as_file(raw, tmp_path / "raw.dcm")]
    async with running_listener(store, tmp_path / "data", dicom_fallback_charset="GB18030") as scp:
        assert await pynetdicom_store(scp.port, *files) == [SUCCESS] * 3

    names = []
    for uid in ("1.3.6.1.4.1.5962.1.2.0.1175775771.5711.0", gb.StudyInstanceUID, raw.StudyInstanceUID):
        [study] = await studies(store, study_uids=[uid])
        names.append((await patient_of(store, study)).name.text)
    assert names == ["王小東", "张三", "李四"]


async def test_study_with_matching_accession_attaches_to_the_consultation(scp: Running, tmp_path: Path) -> None:
    async with scp.store.write() as repo:
        patient = await repo.patients.save(Patient(HumanName.of("王", ("芳",)), [Identifier(FACILITY, "M-9")]))
        c = await repo.consultations.insert(
            Consultation(
                patient_id=patient.id, department="放射科", urgency=Urgency.URGENT, chief_complaint="胸痛",
                number=await repo.consultations.next_number("20250101"),
                source_order=Identifier(FACILITY, "ACC-1001"), created_at=datetime.now(UTC),
            )
        )
    topic = scp.bus.subscribe("consultation")
    first = synthetic("Wang^Fang", None, PatientID="M-9", AccessionNumber="ACC-1001")
    second = synthetic("Wang^Fang", None, PatientID="M-9", StudyInstanceUID=first.StudyInstanceUID)
    files = [as_file(first, tmp_path / "a.dcm"), as_file(second, tmp_path / "b.dcm")]
    assert await pynetdicom_store(scp.port, *files) == [SUCCESS, SUCCESS]

    async with scp.store.read() as repo:
        linked = await repo.consultations.get(c.id)
    [study] = await studies(scp.store, study_uids=[first.StudyInstanceUID])
    assert linked is not None and linked.study_ids == [study.id] and study.consultation_id == c.id
    assert [e.type for e in linked.timeline].count(STUDY_RECEIVED) == 1  # the study's arrival, once
    assert topic.queue.get_nowait().type == STUDY_RECEIVED


@pytest.mark.parametrize("order_system", [FACILITY, "urn:dicom:uid"])
async def test_study_whose_uid_is_the_order_attaches_and_the_study_event_names_it(
    scp: Running, tmp_path: Path, order_system: str
) -> None:
    ds = synthetic("Li^Lei", None, PatientID="M-10", AccessionNumber="NOT-AN-ORDER")
    async with scp.store.write() as repo:
        patient = await repo.patients.save(Patient(HumanName.of("李", ("雷",)), [Identifier(FACILITY, "M-10")]))
        c = await repo.consultations.insert(
            Consultation(
                patient_id=patient.id, department="放射科", urgency=Urgency.ROUTINE, chief_complaint="头痛",
                number=await repo.consultations.next_number("20250102"),
                source_order=Identifier(order_system, str(ds.StudyInstanceUID)), created_at=datetime.now(UTC),
            )
        )
    topic = scp.bus.subscribe("study")
    assert await pynetdicom_store(scp.port, as_file(ds, tmp_path / "a.dcm")) == [SUCCESS]

    [study] = await studies(scp.store, study_uids=[ds.StudyInstanceUID])
    async with scp.store.read() as repo:
        linked = await repo.consultations.get(c.id)
    assert linked is not None and linked.study_ids == [study.id]
    assert linked.timeline[-1].type == STUDY_RECEIVED and linked.timeline[-1].detail == ds.StudyInstanceUID
    event = topic.queue.get_nowait()  # what the studyReceived subscription is built on
    assert (event.type, event.data["id"], event.data["patient_id"], event.data["consultation_id"]) == (
        "RECEIVED", study.id, patient.id, c.id
    )


# --- bad input ---------------------------------------------------------------------------------


async def test_truncated_dataset_fails_and_nothing_is_indexed(scp: Running) -> None:
    assert await pynetdicom_store(scp.port, corpus("MR_truncated.dcm")) == [CANNOT_UNDERSTAND]

    assert await studies(scp.store, sop_instance_uids=[MR_SOP]) == []
    assert ObjectStore(scp.settings.data_dir / "dicom", scp.store.keyring).versions(MR_SOP) == []
    async with scp.store.read() as repo:
        [(msg, _)] = (await repo.journal.search(channel="dicom")).items
    assert msg.status is MessageStatus.ERROR and "truncated" in (msg.error or "")
    assert msg.ack is not None and msg.ack.startswith("0xC000")


async def test_dataset_without_patient_id_is_stored_under_an_unidentified_patient(scp: Running, tmp_path: Path) -> None:
    first = synthetic("Anonymous^Walkin", None, PatientID="")
    second = synthetic("Anonymous^Walkin", None, PatientID="", StudyInstanceUID=first.StudyInstanceUID)
    files = [as_file(first, tmp_path / "1.dcm"), as_file(second, tmp_path / "2.dcm"), corpus("image_dfl.dcm")]
    assert await pynetdicom_store(scp.port, *files) == [SUCCESS] * 3

    [study] = await studies(scp.store, study_uids=[first.StudyInstanceUID])
    patient = await patient_of(scp.store, study)
    assert study.instance_count == 2  # the second instance found the patient through its study
    assert patient.identifiers == [] and patient.name.text == "Walkin Anonymous"


def _abort_mid_dataset(port: int, path: Path) -> None:
    """Associate, send the C-STORE command and part of the dataset, then A-ABORT and hang up."""
    meta, offset = split_dataset(path)
    data = path.read_bytes()[offset:]
    cx = build_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    cx.context_id = 1
    rq = A_ASSOCIATE()
    rq.application_context_name = "1.2.840.10008.3.1.1.1"
    rq.calling_ae_title, rq.called_ae_title = MODALITY, "HUIZHEN"
    rq.presentation_context_definition_list = [cx]
    max_length, implementation = MaximumLengthNotification(), ImplementationClassUIDNotification()
    max_length.maximum_length_received, implementation.implementation_class_uid = 16382, "1.2.826.0.1.3680043.9.7"
    rq.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    req.DataSet = io.BytesIO(data)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    fragments = list(message.encode_msg(1, 16382))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(pdu.encode())
        header = sock.recv(6, socket.MSG_WAITALL)
        assert header[0] == 0x02, "expected A-ASSOCIATE-AC"
        sock.recv(struct.unpack(">I", header[2:])[0], socket.MSG_WAITALL)
        for fragment in fragments[: len(fragments) // 2]:
            p_data = P_DATA_TF()
            p_data.from_primitive(fragment)
            sock.sendall(p_data.encode())
        sock.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]))  # A-ABORT, service user


async def test_association_aborted_mid_transfer_stores_nothing_and_the_listener_serves_on(scp: Running) -> None:
    big = corpus("US1_UNCR.dcm")  # 900 KB: many PDUs, so the abort lands inside the dataset
    await asyncio.to_thread(_abort_mid_dataset, scp.port, big)

    sop = str(dcmread(big, stop_before_pixels=True).SOPInstanceUID)
    assert await pynetdicom_store(scp.port, CT) == [SUCCESS]  # still serving, after the aborted one
    assert await studies(scp.store, sop_instance_uids=[sop]) == []
    assert ObjectStore(scp.settings.data_dir / "dicom", scp.store.keyring).versions(sop) == []


async def test_unknown_calling_ae_is_rejected(scp: Running) -> None:
    result = await with_association(scp.port, [build_context(Verification)], lambda a: "accepted",
                                    ae_title="STRANGER")
    assert result == {"rejected": True}


async def test_production_without_an_allow_list_refuses_to_start(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="HUIZHEN_DICOM_PEERS"):
        DicomListener(Settings(env="production", data_dir=tmp_path), store, InProcessBus(), port=0)


async def test_development_without_an_allow_list_accepts_any_ae(store: Store, tmp_path: Path) -> None:
    async with running_listener(store, tmp_path / "data", dicom_peers=None) as scp:
        assert await pynetdicom_store(scp.port, CT, ae_title="ANY_MODALITY") == [SUCCESS]
    async with store.read() as repo:  # no facility: the AE names the PatientID's namespace
        assert await repo.patients.by_identifier("urn:huizhen:dicom-ae:ANY_MODALITY", "1CT1") is not None


@contextlib.contextmanager
def unwritable(root: Path) -> Iterator[None]:
    """Make a folder tree refuse new entries, even for root (``chattr +i``)."""
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    if os.geteuid() != 0:
        for d in dirs:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *map(str, dirs)], capture_output=True).returncode:
        pytest.skip("running as root without a working chattr +i: cannot make the object store unwritable")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, dirs)], check=True)


async def test_disk_write_failure_answers_out_of_resources_and_keeps_earlier_objects(scp: Running) -> None:
    assert await pynetdicom_store(scp.port, CT) == [SUCCESS]
    objects = ObjectStore(scp.settings.data_dir / "dicom", scp.store.keyring)
    [earlier] = objects.versions(CT_SOP)

    with unwritable(objects.root):
        assert await pynetdicom_store(scp.port, corpus("MR_small.dcm")) == [OUT_OF_RESOURCES]

    assert objects.read(earlier, verify=True)
    assert await studies(scp.store, sop_instance_uids=[MR_SOP]) == []
    assert len(await studies(scp.store, sop_instance_uids=[CT_SOP])) == 1
    async with scp.store.read() as repo:
        errors = (await repo.journal.search(channel="dicom", status=MessageStatus.ERROR)).items
    assert [m.control_id for m, _ in errors] == [MR_SOP]


async def _hold_the_index(repo: Repository) -> None:
    if repo.dialect == "postgresql":  # SQLite: the open write transaction already holds the writer lock
        await repo.conn.execute(text("LOCK TABLE imaging_studies IN ACCESS EXCLUSIVE MODE"))


async def test_a_store_that_cannot_keep_up_answers_out_of_resources_not_never(store: Store, tmp_path: Path) -> None:
    async with running_listener(store, tmp_path / "data", dicom_store_timeout_seconds=1.0) as scp:
        async with store.write() as repo:
            await _hold_the_index(repo)
            assert await pynetdicom_store(scp.port, CT) == [OUT_OF_RESOURCES]
        # the sender's retry is idempotent: the same bytes, now indexed once
        assert await pynetdicom_store(scp.port, CT) == [SUCCESS]
    [study] = await studies(store, study_uids=[CT_STUDY])
    assert study.instance_count == 1


# --- C-FIND and C-GET over pynetdicom ----------------------------------------------------------


def _find(model: str, **keys: Any) -> Any:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)

    def go(assoc: Any) -> tuple[list[Dataset], int]:
        matches, final = [], -1
        for status, found in assoc.send_c_find(identifier, model):
            if status is not None and status.Status == 0xFF00:
                matches.append(found)
            elif status is not None:
                final = int(status.Status)
        return matches, final

    return go


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # pydicom on the refused dates sent
async def test_find_at_every_level_of_both_roots(scp: Running) -> None:
    files = [CT, corpus("MR_small.dcm"), corpus("MR_small_RLE.dcm"), corpus("JPEG-LL.dcm"), corpus("JPEG2000.dcm")]
    assert await pynetdicom_store(scp.port, *files) == [SUCCESS] * 5
    contexts = [build_context(PatientRootQueryRetrieveInformationModelFind),
                build_context(StudyRootQueryRetrieveInformationModelFind)]

    async def find(model: str, **keys: Any) -> tuple[list[Dataset], int]:
        result: tuple[list[Dataset], int] = await with_association(scp.port, contexts, _find(model, **keys))
        return result

    patients, status = await find(PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT",
                                  PatientName="compressed*", PatientID="", NumberOfPatientRelatedInstances="")
    assert status == SUCCESS
    assert {(p.PatientID, int(p.NumberOfPatientRelatedInstances)) for p in patients} == {
        ("1CT1", 1), ("4MR1", 1), ("8NM1", 2)  # the RLE version of MR_small is a conflict: not counted
    }
    # the API's summary read counts instances in SQL (a CT series holds hundreds) and agrees
    async with scp.store.read() as repo:
        refs = [await repo.imaging.study_ref(uid) for uid in (MR_STUDY, NM_STUDY)]
        ids = [r.id for r in refs if r is not None]
        full = await repo.clinical.studies_by_ids(ids)
        summary = await repo.clinical.studies_by_ids(ids, instances=False)
    assert sorted(s.instance_count for s in full) == sorted(s.instance_count for s in summary) == [1, 2]
    assert not any(se.instances for s in summary for se in s.series)
    found, _ = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                          StudyDate="20040101-20040131", StudyInstanceUID="", ModalitiesInStudy="")
    assert [(s.StudyInstanceUID, s.ModalitiesInStudy) for s in found] == [(CT_STUDY, "CT")]
    # StudyID is a required key of the study level (PS3.4 C.6.2.1.2): returned and matched
    by_id, _ = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                          StudyID="4MR*", StudyInstanceUID="", ReferringPhysicianName="")
    assert [(s.StudyID, s.ReferringPhysicianName) for s in by_id] == [("4MR1", "")]  # "" : none was sent
    # matched and returned on the date and time the images hold (20040826 185059 -0400), not on
    # the instant in the server's zone (20040827 065059 +0800)
    on_the_day, status = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                                    StudyDate="20040826", PatientID="4MR1", StudyInstanceUID="", StudyTime="",
                                    TimezoneOffsetFromUTC="")
    assert status == SUCCESS
    assert [(s.StudyInstanceUID, s.StudyDate, s.StudyTime, s.TimezoneOffsetFromUTC) for s in on_the_day] == [
        (MR_STUDY, "20040826", "185059", "-0400")]
    next_day, _ = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                             StudyDate="20040827", PatientID="4MR1", StudyInstanceUID="")
    assert next_day == []
    series, _ = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="SERIES",
                           Modality="NM", SeriesInstanceUID="", NumberOfSeriesRelatedInstances="")
    assert [int(s.NumberOfSeriesRelatedInstances) for s in series] == [2]
    images, _ = await find(PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="IMAGE",
                           PatientID="4MR1", SOPInstanceUID="")
    assert [i.SOPInstanceUID for i in images] == [MR_SOP]
    _, refused = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT", PatientID="")
    assert refused == 0xA900  # Study Root has no PATIENT level
    # a date or time that is none matches nothing: refused, not answered as an empty success
    for key in ({"StudyDate": "2004x"}, {"StudyDate": "20040101-soon"}, {"StudyTime": "noon"}):
        matched, bad = await find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY",
                                  StudyInstanceUID="", **key)
        assert (matched, bad) == ([], 0xA900), key


async def test_find_stops_at_the_response_limit_with_a_warning(store: Store, tmp_path: Path) -> None:
    async with running_listener(store, tmp_path / "data", dicom_max_find_results=1) as scp:
        assert await pynetdicom_store(scp.port, CT, corpus("MR_small.dcm")) == [SUCCESS, SUCCESS]
        found, status = await with_association(
            scp.port, [build_context(StudyRootQueryRetrieveInformationModelFind)],
            _find(StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY", StudyInstanceUID=""),
        )
    assert (len(found), status) == (1, 0xB001)


async def test_get_sends_the_study_back_over_the_same_association(scp: Running) -> None:
    assert await pynetdicom_store(scp.port, CT) == [SUCCESS]
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0

    def go(assoc: Any) -> int:
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", CT_STUDY
        statuses = [int(s.Status) for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)]
        return statuses[-1]

    status = await asyncio.to_thread(_get_with_handler, scp.port, go, on_store)
    assert (status, received) == (SUCCESS, [CT_SOP])


def _get_with_handler(port: int, go: Any, on_store: Any) -> int:
    from pynetdicom import AE, build_role, evt

    ae = AE("EXPERT_WS")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)  # CT Image Storage
    assoc = ae.associate("127.0.0.1", port, ae_title="HUIZHEN",
                         ext_neg=[build_role("1.2.840.10008.5.1.4.1.1.2", scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        result: int = go(assoc)
        return result
    finally:
        assoc.release()
