"""`huizhen serve`: storescu in, DICOMweb (QIDO-RS, WADO-RS) out over HTTP, and `huizhen dicom export`."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import io
import subprocess
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydicom import dcmread

from tests.conftest import free_port
from tests.dicom_support import corpus, need_program
from tests.e2e.instance import Instance

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
NM_STUDY = "1.3.6.1.4.1.5962.1.2.8.20040826185059.5457"
SENT = ("CT_small.dcm", "MR_small.dcm", "JPEG-LL.dcm", "rtplan.dcm")


def _serve_with_studies(instance: Instance) -> str:
    """Start the server, storescu the sample files in, return a platform-wide coordinator token."""
    storescu = need_program("storescu")
    port = free_port()
    instance.env.update(HUIZHEN_DICOM_PORT=str(port), HUIZHEN_DICOM_PEERS="TOWN_CT=QSWSY")
    instance.start()
    for name in SENT:
        syntax = str(dcmread(corpus(name), stop_before_pixels=True).file_meta.TransferSyntaxUID)
        option = {"1.2.840.10008.1.2.4.70": "-xs"}.get(syntax, "-x=")
        sent = subprocess.run(
            [storescu, "-R", option, "-aet", "TOWN_CT", "-aec", "HUIZHEN", "127.0.0.1", str(port), str(corpus(name))],
            capture_output=True, text=True, timeout=60, env={**instance.env, "TCP_NODELAY": "1"},
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
    return instance.run("token", "--sub", "coord-1", "--role", "coordinator").stdout.strip()


def _get(instance: Instance, token: str | None, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.get(instance.base + "/dicomweb" + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _parts(r: httpx.Response) -> list[email.message.EmailMessage]:
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related"), r.text[:300]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + r.headers["content-type"].encode() + b"\r\n\r\n" + r.content
    )
    return list(message.iter_parts())  # type: ignore[attr-defined]


def _value(item: dict, tag: str) -> object:  # type: ignore[type-arg]
    return item[tag].get("Value", [None])[0]


@pytest.mark.parametrize("instance", ["sqlite", "postgresql"], indirect=True)
def test_qido_and_wado_for_a_web_viewer(instance: Instance) -> None:
    token = _serve_with_studies(instance)
    assert _get(instance, None, "/studies").status_code == 401

    r = _get(instance, token, "/studies")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom+json")
    studies = {_value(s, "0020000D"): s for s in r.json()}
    assert {CT_STUDY, MR_STUDY, NM_STUDY} <= set(studies)
    ct = studies[CT_STUDY]
    assert _value(ct, "00100020") == "1CT1" and _value(ct, "00201208") == 1  # NumberOfStudyRelatedInstances
    assert ct["00080061"]["Value"] == ["CT"]
    assert _value(ct, "00200010") == "1CT1"  # StudyID, a default return attribute of QIDO-RS

    [only] = _get(instance, token, "/studies", params={"PatientID": "4MR*", "StudyDate": "20040101-20041231"}).json()
    assert _value(only, "0020000D") == MR_STUDY
    # the date and time the images hold (-0400), not the instant in the server's zone (20040827 065059 +0800)
    [mr] = _get(instance, token, "/studies", params={"PatientID": "4MR1", "StudyDate": "20040826",
                                                     "includefield": "00080201"}).json()
    assert (_value(mr, "00080020"), _value(mr, "00080030"), _value(mr, "00080201")) == ("20040826", "185059", "-0400")
    assert _get(instance, token, "/studies", params={"PatientID": "4MR1", "StudyDate": "20040827"}).json() == []
    assert _get(instance, token, "/studies", params={"ModalitiesInStudy": "US"}).json() == []
    page = _get(instance, token, "/studies", params={"limit": "1"})
    assert len(page.json()) == 1
    assert "additional results" in page.headers["warning"] and page.headers["warning"].startswith("299 ")
    assert "warning" not in _get(instance, token, "/studies", params={"offset": "2"}).headers  # the last page
    # PS3.18: fuzzymatching is not supported, so the answer says only literal matching was done
    fuzzy = _get(instance, token, "/studies", params={"PatientID": "1CT1", "fuzzymatching": "true"})
    assert [_value(s, "0020000D") for s in fuzzy.json()] == [CT_STUDY]
    assert "fuzzymatching parameter is not supported" in fuzzy.headers["warning"]
    assert "warning" not in _get(instance, token, "/studies", params={"PatientID": "1CT1"}).headers
    bad_date = _get(instance, token, "/studies", params={"StudyDate": "2004x"})
    assert bad_date.status_code == 400 and bad_date.json()["error"]["code"] == "BAD_INPUT"
    bad = _get(instance, token, "/studies", params={"NoSuchAttribute": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_INPUT"

    [series] = _get(instance, token, f"/studies/{CT_STUDY}/series").json()
    assert _value(series, "00080060") == "CT"
    series_uid = str(_value(series, "0020000E"))
    [inst] = _get(instance, token, f"/studies/{CT_STUDY}/series/{series_uid}/instances").json()
    sop_uid = str(_value(inst, "00080018"))

    # WADO-RS: the instance as stored, in a multipart/related body
    path = f"/studies/{CT_STUDY}/series/{series_uid}/instances/{sop_uid}"
    r = _get(instance, token, path, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
    [part] = _parts(r)
    assert part.get_content_type() == "application/dicom"
    got, sent = dcmread(io.BytesIO(part.get_payload(decode=True))), dcmread(corpus("CT_small.dcm"))
    assert got.SOPInstanceUID == sent.SOPInstanceUID and got.PixelData == sent.PixelData

    [meta] = _get(instance, token, path + "/metadata").json()
    assert _value(meta, "00080018") == sop_uid and "7FE00010" not in meta

    jpeg = _get(instance, token, path + "/rendered", headers={"Accept": "image/jpeg"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (128, 128)
    png = _get(instance, token, path + "/frames/1/rendered", headers={"Accept": "image/png"})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    assert _get(instance, token, path + "/frames/2/rendered").status_code == 400
    assert _get(instance, token, path + "/rendered", headers={"Accept": "image/gif"}).status_code == 406

    # frames as stored, the way OHIF's wadors loader asks for them
    wadors = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
    [frame] = _parts(_get(instance, token, path + "/frames/1", headers=wadors))
    assert frame.get_content_type() == "application/octet-stream"
    assert frame.get_payload(decode=True) == dcmread(corpus("CT_small.dcm")).PixelData  # 128 x 128 x 16 bits

    # pixel data this server cannot decode (JPEG lossless) and an object without pixels: a clear 406
    [nm] = _get(instance, token, f"/studies/{NM_STUDY}/instances").json()
    nm_base = f"/studies/{NM_STUDY}/series/{_value(nm, '0020000E')}/instances/{_value(nm, '00080018')}"
    refused = _get(instance, token, nm_base + "/rendered")
    assert refused.status_code == 406 and "cannot be decoded" in refused.json()["error"]["message"]
    [compressed] = _parts(_get(instance, token, nm_base + "/frames/1", headers=wadors))  # but served as stored
    assert compressed.get_content_type() == "application/octet-stream"
    assert compressed.get_param("transfer-syntax") == "1.2.840.10008.1.2.4.70"  # JPEG lossless
    other = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'}
    assert _get(instance, token, nm_base + "/frames/1", headers=other).status_code == 406
    assert _get(instance, token, nm_base + "/frames/1,x", headers=wadors).status_code == 400

    assert _get(instance, token, "/studies/1.2.3.4/metadata").status_code == 404
    # an expert with no consultation sees no study at all
    stranger = instance.run("token", "--sub", "expert-x", "--role", "expert", "--facility", "QSWSY").stdout.strip()
    assert _get(instance, stranger, "/studies").json() == []
    assert _get(instance, stranger, path).status_code == 404
    # a role the policy gives no `study read` (an integration admin) is refused outright, whatever exists
    admin = instance.run("token", "--sub", "ops-1", "--role", "integration_admin").stdout.strip()
    for probe in ("/studies", path, "/studies/1.2.3.4/metadata"):
        assert _get(instance, admin, probe).status_code == 403


def test_deidentified_export_of_a_stored_study(instance: Instance, tmp_path: Path) -> None:
    _serve_with_studies(instance)
    out = tmp_path / "teaching"
    done = instance.run("dicom", "export", MR_STUDY, str(out), "--deidentify")
    assert "exported 1 instance(s)" in done.stdout
    [path] = list(out.glob("*.dcm"))
    ds = dcmread(path)
    original = dcmread(corpus("MR_small.dcm"))
    assert ds.PatientID.startswith("HZ") and ds.PatientID != original.PatientID
    assert str(ds.PatientName) == ds.PatientID
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID != original.StudyInstanceUID and ds.StudyInstanceUID.startswith("2.25.")
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == path.stem
    assert ds.StudyDate != original.StudyDate
    assert (ds.pixel_array == original.pixel_array).all()  # the image itself is kept

    again = tmp_path / "again"
    instance.run("dicom", "export", MR_STUDY, str(again), "--deidentify")
    ds2 = dcmread(next(again.glob("*.dcm")))
    # the same key: the same pseudonym, UIDs and date shift in every export
    assert (ds2.PatientID, ds2.StudyInstanceUID, ds2.StudyDate) == (ds.PatientID, ds.StudyInstanceUID, ds.StudyDate)

    plain = tmp_path / "plain"
    instance.run("dicom", "export", MR_STUDY, str(plain))
    assert dcmread(next(plain.glob("*.dcm"))).PatientID == original.PatientID
    missing = instance.run("dicom", "export", "1.2.3.4", str(tmp_path / "none"), check=False)
    assert missing.returncode == 1 and "1.2.3.4" in missing.stderr
