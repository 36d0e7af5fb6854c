"""Reading received bytes: every corpus file, truncations, garbage."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom_read import read_header, read_instance, validate_instance

from .conftest import MANIFEST, corpus_bytes, part10

VALID = [f for f in MANIFEST if f["expected_valid"]]
INVALID = [f for f in MANIFEST if not f["expected_valid"]]
ENCAPSULATED = ("JPEG-LL.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm")


def name(entry: dict[str, object]) -> str:
    return str(entry["path"]).rsplit("/", 1)[-1]


@pytest.mark.parametrize("entry", VALID, ids=name)
def test_every_valid_corpus_file_reads_and_validates(entry: dict[str, object]) -> None:
    ds = read_instance(corpus_bytes(name(entry)))
    assert ds.SOPInstanceUID == entry["SOPInstanceUID"]
    assert ds.StudyInstanceUID == entry["StudyInstanceUID"]
    assert ds.file_meta.TransferSyntaxUID == entry["transfer_syntax_uid"]


@pytest.mark.parametrize("entry", INVALID, ids=name)
def test_invalid_corpus_file_is_refused_but_its_header_reads(entry: dict[str, object]) -> None:
    data = corpus_bytes(name(entry))
    with pytest.raises(BadInput, match="truncated"):
        read_instance(data)
    assert read_header(data).PatientID == entry["PatientID"]


def test_mr_truncated_pixel_data_is_named() -> None:
    ds = read_header(corpus_bytes("MR_small.dcm"))
    full = read_instance(corpus_bytes("MR_small.dcm"))
    assert "PixelData" not in ds and len(full.PixelData) == 64 * 64 * 2
    truncated = read_header(corpus_bytes("MR_truncated.dcm"))
    truncated.PixelData = b"\0" * 8130
    with pytest.raises(BadInput, match="8130 of 8192"):
        validate_instance(truncated)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize(
    "file", ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "test-SR.dcm"]
)
def test_cut_short_native_files_are_refused(file: str, fraction: float) -> None:
    data = corpus_bytes(file)
    with pytest.raises(BadInput):
        read_instance(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("file", ENCAPSULATED)
def test_cut_inside_encapsulated_pixel_data_is_refused(file: str) -> None:
    data = corpus_bytes(file)
    # pydicom itself only warns here; the refusal comes from our checks
    with pytest.warns(UserWarning, match="End of file reached before delimiter"):
        with pytest.raises(BadInput, match="truncated"):
            read_instance(data[: int(len(data) * 0.95)])


def test_cut_deflate_stream_is_refused() -> None:
    data = corpus_bytes("image_dfl.dcm")
    with pytest.raises(BadInput, match="not a readable DICOM dataset"):
        read_instance(data[: len(data) // 2])


def test_cut_at_an_element_boundary_before_the_pixels_is_refused() -> None:
    data = corpus_bytes("JPEG2000.dcm")
    with pytest.raises(BadInput, match="image without pixel data"):
        read_instance(data[:2646])  # ends exactly after (0020,0011)


@pytest.mark.parametrize("garbage", [b"", b"DICM", b"\x00" * 200, b"not dicom at all" * 50])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(BadInput):
        read_instance(garbage)


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uids_are_refused(missing: str) -> None:
    ds = read_instance(corpus_bytes("rtplan.dcm"))
    del ds[missing]
    with pytest.raises(BadInput, match=missing):
        validate_instance(ds)


def test_dataset_without_patient_id_is_readable() -> None:
    ds = Dataset()
    ds.PatientName = "No^Id"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR: no pixel data
    ds.Modality = "SR"
    read = read_instance(part10(ds))
    assert "PatientID" not in read and read.PatientName == "No^Id"
