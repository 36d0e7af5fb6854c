"""Prior studies from the hospital PACS: dcmqrscp as the PACS, `huizhen serve` as the requester and receiver.

The consultation's mutation makes Huizhen C-FIND the patient's studies on the
facility's PACS (dcmtk's dcmqrscp, seeded with storescu) and C-MOVE them to
Huizhen's own listener; the timeline shows the request and its outcome.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import free_port
from tests.dicom_support import corpus, need_program
from tests.e2e.instance import Instance

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
PEERS = "TOWN_CT=QSWSY,PACS=QSWSY"

CONSULTATION = """mutation($p: ID!) { requestConsultation(input: {patientId: $p, department: "放射科",
  urgency: ROUTINE, chiefComplaint: "咳嗽两周"}) { id } }"""
RETRIEVE = """mutation($c: ID!) { retrievePriorStudies(consultationId: $c) {
  pacs found retrieved failed studyInstanceUids error
  consultation { imagingStudies { studyInstanceUid } timeline { type detail } } } }"""


class Pacs:
    def __init__(self, workdir: Path, huizhen_port: int) -> None:
        self.port = free_port()
        self.db = workdir / "pacs-db"
        self.db.mkdir()
        self.config = workdir / "dcmqrscp.cfg"
        self.config.write_text(
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 65536\nMaxAssociations = 16\n\n"
            f"HostTable BEGIN\nhuizhen = (HUIZHEN, 127.0.0.1, {huizhen_port})\nHostTable END\n\n"
            "VendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\nPACS {self.db} RW (100, 1024mb) ANY\nAETable END\n"
        )
        self.log = workdir / "dcmqrscp.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([need_program("dcmqrscp"), "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while subprocess.run([need_program("echoscu"), "-aec", "PACS", "127.0.0.1", str(self.port)],
                             capture_output=True).returncode:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"dcmqrscp did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def load(self, *files: Path) -> None:
        sent = subprocess.run([need_program("storescu"), "-aet", "LOADER", "-aec", "PACS", "127.0.0.1",
                               str(self.port), *map(str, files)], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def pacs(instance: Instance) -> Iterator[Pacs]:
    dicom_port = free_port()
    peer = Pacs(instance.workdir, dicom_port)
    instance.env.update(HUIZHEN_DICOM_PORT=str(dicom_port), HUIZHEN_DICOM_PEERS=PEERS,
                        HUIZHEN_DICOM_PACS=f"QSWSY=PACS@127.0.0.1:{peer.port}")
    yield peer
    peer.stop()


def _prior_ct(folder: Path) -> tuple[Path, str]:
    """The same patient's CT, as an older study of two instances."""
    folder.mkdir()
    ds = dcmread(corpus("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.StudyDate = generate_uid(), generate_uid(), "20030101"
    for n in (1, 2):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"prior{n}.dcm")
    return folder, str(ds.StudyInstanceUID)


def _consultation(instance: Instance, port: int) -> tuple[str, str]:
    """The current CT arrives from the township modality; a consultation is requested for its patient."""
    sent = subprocess.run([need_program("storescu"), "-aet", "TOWN_CT", "-aec", "HUIZHEN", "127.0.0.1", str(port),
                           str(corpus("CT_small.dcm"))], capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    token = instance.run("token", "--sub", "doc-1", "--role", "primary_doctor", "--facility", "QSWSY").stdout.strip()
    [patient] = instance.gql(token, '{ patients(identifier: "1CT1") { edges { node { id } } } }'
                             )["data"]["patients"]["edges"]
    c = instance.gql(token, CONSULTATION, p=patient["node"]["id"])
    return token, c["data"]["requestConsultation"]["id"]


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_prior_studies_come_from_the_facility_pacs_and_show_in_the_timeline(
    instance: Instance, pacs: Pacs, tmp_path: Path
) -> None:
    pacs.start()
    prior_dir, prior_uid = _prior_ct(tmp_path / "prior")
    pacs.load(*sorted(prior_dir.iterdir()), corpus("CT_small.dcm"), corpus("MR_small.dcm"))  # MR: another patient
    instance.start()
    token, cid = _consultation(instance, int(instance.env["HUIZHEN_DICOM_PORT"]))

    result = instance.gql(token, RETRIEVE, c=cid)
    assert "errors" not in result, result
    r = result["data"]["retrievePriorStudies"]
    assert r["pacs"] == f"PACS@127.0.0.1:{pacs.port}" and r["error"] is None
    assert (r["found"], r["retrieved"], r["failed"]) == (2, 2, 0)  # the prior and the current CT, not the MR
    assert set(r["studyInstanceUids"]) == {prior_uid, CT_STUDY}
    assert prior_uid in {s["studyInstanceUid"] for s in r["consultation"]["imagingStudies"]}
    events = [(e["type"], e["detail"]) for e in r["consultation"]["timeline"]]
    assert events[-2][0] == "PRIORS_REQUESTED" and "1CT1" in events[-2][1]
    assert events[-1] == ("PRIORS_RETRIEVED", f"2 of 2 studies retrieved from PACS PACS@127.0.0.1:{pacs.port}")

    [patient] = instance.gql(token, '{ patients(identifier: "1CT1") { edges { node { id } } } }'
                             )["data"]["patients"]["edges"]
    studies = instance.gql(token, "query($p: ID!) { imagingStudies(patientId: $p) { studyInstanceUid instanceCount } }",
                           p=patient["node"]["id"])["data"]["imagingStudies"]
    assert {"studyInstanceUid": prior_uid, "instanceCount": 2} in studies  # one patient, found by PatientID

    pacs.stop()  # the PACS goes away: the request fails, says why, and the server serves on
    failed = instance.gql(token, RETRIEVE, c=cid)["data"]["retrievePriorStudies"]
    assert failed["error"] and "not reachable" in failed["error"] and failed["retrieved"] == 0
    assert failed["consultation"]["timeline"][-1]["type"] == "PRIORS_FAILED"

    unknown = instance.gql(token, RETRIEVE, c="no-such-consultation")
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
