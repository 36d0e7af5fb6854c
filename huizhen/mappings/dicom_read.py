"""Received DICOM bytes → a checked pydicom Dataset (pure).

The C-STORE handler calls :func:`read_instance` on ``event.encoded_dataset()``
(preamble, File Meta Information and the dataset exactly as sent): it parses
everything, and refuses with :class:`BadInput` what cannot be stored and
indexed — bytes pydicom cannot read, a dataset cut short, an instance without
its SOP Instance / Study / Series UIDs, pixel data shorter than the image it
describes. The SCP turns that into a DIMSE failure status in one place.

pydicom reads a truncated file without complaint in most places, so
truncation is detected from the outside: bytes left unparsed, a last element
shorter than its declared length, an image SOP class without pixel data, native
pixel data shorter than Rows × Columns × samples × frames × bits, or
encapsulated pixel data whose last fragment is incomplete. (A file cut inside an
encapsulated pixel data sequence also makes pydicom warn "End of file reached
before delimiter".)
"""

from __future__ import annotations

import io
import struct

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from huizhen.integration.errors import BadInput

REQUIRED_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED = 0xFFFFFFFF


def read_header(data: bytes) -> Dataset:
    """Parse Part-10 bytes up to the pixel data, for indexing what is already stored."""
    return _parse(io.BytesIO(data), stop_before_pixels=True)


def read_instance(data: bytes) -> Dataset:
    """Parse and check a received instance; :class:`BadInput` says why it cannot be stored."""
    fp = io.BytesIO(data)
    ds = _parse(fp, stop_before_pixels=False)
    deflated = str(ds.file_meta.get("TransferSyntaxUID", "")) == _DEFLATED
    if (not deflated and fp.tell() < len(data)) or _last_element_short(ds):
        raise BadInput("dataset truncated")
    validate_instance(ds)
    return ds


def validate_instance(ds: Dataset) -> None:
    """Refuse an instance without its UIDs or with pixel data cut short."""
    missing = [kw for kw in REQUIRED_UIDS if not str(ds.get(kw, "") or "").strip()]
    if missing:
        raise BadInput(f"missing {', '.join(missing)}")
    has_pixels = any(k in ds for k in _PIXEL_KEYWORDS)
    if not has_pixels and _is_image_class(str(ds.get("SOPClassUID", ""))):
        raise BadInput("image without pixel data (dataset cut short?)")
    if "PixelData" not in ds:
        return
    if ds["PixelData"].is_undefined_length:
        if not _fragments_complete(ds.PixelData):
            raise BadInput("encapsulated pixel data truncated")
        return
    expected = _native_pixel_length(ds)
    if expected is not None and len(ds.PixelData) < expected:
        raise BadInput(f"pixel data truncated: {len(ds.PixelData)} of {expected} bytes")


def _parse(fp: io.BytesIO, *, stop_before_pixels: bool) -> Dataset:
    try:
        return dcmread(fp, stop_before_pixels=stop_before_pixels)
    except Exception as exc:
        # pydicom raises many types on bad input (InvalidDicomError, EOFError,
        # struct.error, zlib.error for a cut deflate stream…): all mean "unreadable"
        raise BadInput(f"not a readable DICOM dataset: {exc}") from exc


def _last_element_short(ds: Dataset) -> bool:
    tags = sorted(ds.keys())
    if not tags:
        return True
    raw = ds.get_item(tags[-1])
    if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED:
        return False
    return isinstance(raw.value, bytes) and len(raw.value) < raw.length


def _is_image_class(sop_class_uid: str) -> bool:
    return "Image Storage" in UID(sop_class_uid).name


def _native_pixel_length(ds: Dataset) -> int | None:
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * frames
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (pixels * bits + 7) // 8


def _fragments_complete(value: bytes) -> bool:
    """Whether encapsulated pixel data is whole: offset table plus complete fragment items."""
    pos, items = 0, 0
    while pos + 8 <= len(value):
        group, element, length = struct.unpack_from("<HHI", value, pos)
        if (group, element) != (0xFFFE, 0xE000) or pos + 8 + length > len(value):
            return False
        pos, items = pos + 8 + length, items + 1
    return pos == len(value) and items >= 2
