"""The DICOM corpus (../shared/corpus/dicom, see SOURCES.md) and synthetic Part-10 files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", Path(__file__).resolve().parents[4] / "shared" / "corpus"))
MANIFEST: list[dict[str, Any]] = [
    f for f in json.loads((CORPUS / "manifest.json").read_text())["files"] if f["kind"] == "dicom"
]
BY_NAME = {Path(f["path"]).name: f for f in MANIFEST}


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / "dicom" / name).read_bytes()


def part10(ds: Dataset, *, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode a synthetic dataset as the bytes a C-STORE handler would receive."""
    ds.SOPClassUID = ds.get("SOPClassUID", SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    ds.StudyInstanceUID = ds.get("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = ds.get("SeriesInstanceUID", generate_uid())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
