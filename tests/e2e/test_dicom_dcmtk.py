"""dcmtk's own programs against the DICOM listener: echoscu, storescu, findscu, movescu, getscu.

The listener runs in-process on a free port with a real store (SQLite and
PostgreSQL); each dcmtk program is a separate process speaking real DICOM.
Responses are read back from the files the programs write (``findscu -X``,
``storescp -od``, ``getscu -od``), not from their log text.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from huizhen.integration.store import Store
from tests.conftest import free_port
from tests.dicom_support import (
    WORKSTATION,
    Running,
    corpus,
    need_program,
    run_program,
    running_listener,
    storable_corpus,
    storescu,
)

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
NM_STUDY = "1.3.6.1.4.1.5962.1.2.8.20040826185059.5457"
US_STUDY = "1.3.6.1.4.1.5962.1.2.13.20040826185059.5457"
NM_SOPS = {"1.3.6.1.4.1.5962.1.1.8.1.3.20040826185059.5457", "1.3.6.1.4.1.5962.1.1.8.1.4.20040826185059.5457"}


@pytest.fixture
async def scp(store: Store, tmp_path: Path) -> AsyncIterator[Running]:
    need_program("storescu")
    async with running_listener(store, tmp_path / "data") as running:
        yield running


async def store_all(scp: Running, files: list[Path]) -> None:
    for path in files:
        rc, out = await storescu(scp.port, path)
        assert rc == 0, f"{path.name}: {out}"


async def findscu(scp: Running, out_dir: Path, root: str, *keys: str) -> list[Any]:
    """Run findscu (-P patient root, -S study root) and read back every response identifier."""
    await asyncio.to_thread(out_dir.mkdir)
    args = [arg for key in keys for arg in ("-k", key)]
    rc, out = await run_program("findscu", root, "-aet", WORKSTATION, "-aec", "HUIZHEN", "-X", "-od", str(out_dir),
                                *args, "127.0.0.1", str(scp.port))
    assert rc == 0, out
    return await asyncio.to_thread(read_all, out_dir, "rsp*.dcm")


def read_all(folder: Path, pattern: str = "*") -> list[Any]:
    return [dcmread(p) for p in sorted(folder.glob(pattern))]


async def test_echo_and_an_unknown_ae_is_rejected(scp: Running) -> None:
    rc, out = await run_program("echoscu", "-aet", WORKSTATION, "-aec", "HUIZHEN", "127.0.0.1", str(scp.port))
    assert rc == 0, out
    rc, out = await run_program("echoscu", "-aet", "STRANGER", "-aec", "HUIZHEN", "127.0.0.1", str(scp.port))
    assert rc != 0 and "Calling AE Title Not Recognized" in out
    # a known caller addressing another AE (a misconfigured PACS node) is refused too, as PS3.8 allows
    rc, out = await run_program("echoscu", "-aet", WORKSTATION, "-aec", "WRONGAE", "127.0.0.1", str(scp.port))
    assert rc != 0 and "Called AE Title Not Recognized" in out


async def test_storescu_sends_every_corpus_file_in_its_own_transfer_syntax(scp: Running) -> None:
    files = storable_corpus()
    await store_all(scp, files)

    async with scp.store.read() as repo:
        page = await repo.journal.search(channel="dicom", first=100)
    assert len(page.items) == len(files)
    assert all(m.status.value in ("PROCESSED", "DUPLICATE") for m, _ in page.items)
    rc, out = await run_program("storescu", "-R", "-aet", "STRANGER", "-aec", "HUIZHEN", "127.0.0.1",
                                str(scp.port), str(corpus("CT_small.dcm")))
    assert rc != 0 and "Rejected" in out


async def test_findscu_at_patient_study_series_and_image_level(scp: Running, tmp_path: Path) -> None:
    await store_all(scp, storable_corpus())

    patients = await findscu(scp, tmp_path / "p", "-P", "QueryRetrieveLevel=PATIENT", "PatientName=Compressed*",
                             "PatientID", "NumberOfPatientRelatedStudies")
    assert {(p.PatientID, int(p.NumberOfPatientRelatedStudies)) for p in patients} == {
        ("1CT1", 1), ("4MR1", 1), ("8NM1", 1), ("13US1", 1)
    }
    august = await findscu(scp, tmp_path / "s1", "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20040801-20040831",
                           "StudyInstanceUID", "ModalitiesInStudy")
    assert {s.StudyInstanceUID for s in august} == {MR_STUDY, NM_STUDY, US_STUDY}
    before_2004 = await findscu(scp, tmp_path / "s2", "-S", "QueryRetrieveLevel=STUDY", "StudyDate=-20031231",
                                "PatientID")
    assert sorted(s.PatientID for s in before_2004) == ["99000", "id00001"]
    series = await findscu(scp, tmp_path / "se", "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={NM_STUDY}",
                           "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert [(s.Modality, int(s.NumberOfSeriesRelatedInstances)) for s in series] == [("NM", 2)]
    images = await findscu(scp, tmp_path / "i", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={NM_STUDY}",
                           f"SeriesInstanceUID={series[0].SeriesInstanceUID}", "SOPInstanceUID")
    assert {i.SOPInstanceUID for i in images} == NM_SOPS
    chinese = await findscu(scp, tmp_path / "zh", "-P", "SpecificCharacterSet=ISO_IR 192",
                            "QueryRetrieveLevel=PATIENT", "PatientName=王*", "PatientID")
    assert [(p.PatientID, str(p.PatientName)) for p in chinese] == [("X1EXAMPLE", "王^小東")]


@contextlib.asynccontextmanager
async def storescp(out_dir: Path) -> AsyncIterator[int]:
    """dcmtk's storescp on a free port, accepting every transfer syntax it knows."""
    await asyncio.to_thread(out_dir.mkdir)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        need_program("storescp"), "+xa", "-od", str(out_dir), "-aet", "STORESCP", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.kill()
        await proc.wait()


async def test_movescu_sends_a_study_to_a_configured_storescp(store: Store, tmp_path: Path) -> None:
    need_program("movescu")
    async with storescp(tmp_path / "received") as port, running_listener(
        store, tmp_path / "data", dicom_move_destinations=f"STORESCP=127.0.0.1:{port}"
    ) as scp:
        await store_all(scp, [corpus("JPEG-LL.dcm"), corpus("JPEG2000.dcm"), corpus("CT_small.dcm")])
        rc, out = await run_program("movescu", "-S", "-aet", WORKSTATION, "-aec", "HUIZHEN", "-aem", "STORESCP",
                                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={NM_STUDY}",
                                    "127.0.0.1", str(scp.port))
        assert rc == 0, out
        rc, unknown = await run_program("movescu", "-S", "-aet", WORKSTATION, "-aec", "HUIZHEN", "-aem", "NOWHERE",
                                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={CT_STUDY}",
                                        "127.0.0.1", str(scp.port))
    received = await asyncio.to_thread(read_all, tmp_path / "received")
    # both compressed instances, in their own transfer syntaxes; nothing of the other study
    assert {str(d.SOPInstanceUID) for d in received} == NM_SOPS
    assert {str(d.file_meta.TransferSyntaxUID) for d in received} == {"1.2.840.10008.1.2.4.70",
                                                                       "1.2.840.10008.1.2.4.91"}
    assert "MoveDestinationUnknown" in unknown


async def test_getscu_retrieves_a_series_over_its_own_association(scp: Running, tmp_path: Path) -> None:
    need_program("getscu")
    await store_all(scp, [corpus("CT_small.dcm"), corpus("MR_small.dcm")])
    out_dir = tmp_path / "got"
    await asyncio.to_thread(out_dir.mkdir)
    rc, out = await run_program("getscu", "-S", "-aet", WORKSTATION, "-aec", "HUIZHEN", "-od", str(out_dir),
                                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={CT_STUDY}",
                                "127.0.0.1", str(scp.port))
    assert rc == 0, out
    got = await asyncio.to_thread(read_all, out_dir)
    assert [str(d.SOPInstanceUID) for d in got] == ["1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]
    assert got[0].PixelData == dcmread(corpus("CT_small.dcm")).PixelData
