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

:func:`read_indexed` is the C-STORE's cheaper path to the same checks: the
structure is checked by a byte scan (:mod:`dicom_part10`) and only the elements
the index maps (``HEADER_KEYWORDS``) and those the checks need are decoded, as
plain values (:mod:`dicom_header`) or, for what that does not follow, by
pydicom; bytes the scan does not handle go through :func:`read_instance`.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import AMBIGUOUS_VR, VR

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom import HEADER_KEYWORDS
from huizhen.mappings.dicom_header import PlainHeader, plain_header
from huizhen.mappings.dicom_part10 import PIXEL_DATA, Scan, Unscannable, scan

REQUIRED_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED = 0xFFFFFFFF
_CHARSET = BaseTag(0x00080005)  # Specific Character Set
_DECODED_ON_ACCESS = frozenset({VR.SQ, *AMBIGUOUS_VR})  # pydicom's item access fixes these up
_PIXEL_SHAPE = ("Rows", "Columns", "SamplesPerPixel", "NumberOfFrames", "BitsAllocated")
_INDEXED_TAGS = frozenset(int(tag_for_keyword(k) or 0) for k in (*HEADER_KEYWORDS, *_PIXEL_SHAPE))


@dataclass(frozen=True, slots=True)
class _Pixels:
    """The pixel data facts the checks need, from a parsed dataset or from a scan."""

    present: bool  # any of the pixel data elements
    pixel_data: bool  # (7FE0,0010) itself
    length: int | None  # its value length; None when encapsulated
    fragments_complete: bool = True


def read_header(data: bytes) -> Dataset:
    """Parse Part-10 bytes up to the pixel data, for indexing what is already stored."""
    return _parse(io.BytesIO(data), stop_before_pixels=True)


def read_indexed(data: bytes) -> Dataset | PlainHeader:
    """Check a received instance as :func:`read_instance` does; the header returned holds
    the File Meta Information, ``HEADER_KEYWORDS`` and the pixel description only: as plain
    values where :mod:`dicom_header` can give them, else as a pydicom Dataset."""
    try:
        found = scan(data, _INDEXED_TAGS)
    except Unscannable:
        return read_instance(data)
    ds = plain_header(data, found) or _header_dataset(data, found)
    _check(ds, _Pixels(
        present=found.pixel_tag is not None, pixel_data=found.pixel_tag == PIXEL_DATA, length=found.pixel_length,
        fragments_complete=found.fragments >= 2,
    ))
    return ds


def _header_dataset(data: bytes, found: Scan) -> Dataset:
    """The located elements as a dataset. Plain elements are decoded here, once, in the
    character set the dataset declares, as pydicom's item access would decode them on first
    read (without its per-access bookkeeping: a fifth of a C-STORE's header work); sequences
    and elements of ambiguous VR stay raw, for pydicom to decode and fix up on access."""
    implicit = found.implicit_vr
    elements: dict[BaseTag, DataElement | RawDataElement] = {
        BaseTag(tag): RawDataElement(BaseTag(tag), e.vr, e.length, data[e.value : e.end], e.value, implicit, True)
        for tag, e in sorted(found.elements.items())
    }
    encoding: str | list[str] = default_encoding
    charset = elements.get(_CHARSET)
    if isinstance(charset, RawDataElement):
        decoded = elements[_CHARSET] = convert_raw_data_element(charset, encoding=default_encoding)
        encoding = convert_encodings(decoded.value)  # as pydicom's Dataset derives it
    for tag, element in elements.items():
        if isinstance(element, RawDataElement) and (element.VR or dictionary_VR(tag)) not in _DECODED_ON_ACCESS:
            decoded = convert_raw_data_element(element, encoding=encoding)
            if decoded.VR != VR.SQ:  # an SQ sent as UN stays raw as well
                elements[tag] = decoded
    ds = Dataset(elements)
    ds.set_original_encoding(implicit, True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(found.transfer_syntax_uid)
    return ds


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
    pixel_data = "PixelData" in ds
    encapsulated = pixel_data and ds["PixelData"].is_undefined_length
    _check(ds, _Pixels(
        present=any(k in ds for k in _PIXEL_KEYWORDS), pixel_data=pixel_data,
        length=None if encapsulated or not pixel_data else len(ds.PixelData),
        fragments_complete=not encapsulated or _fragments_complete(ds.PixelData),
    ))


def _check(ds: Dataset | PlainHeader, pixels: _Pixels) -> None:
    missing = [kw for kw in REQUIRED_UIDS if not str(ds.get(kw, "") or "").strip()]
    if missing:
        raise BadInput(f"missing {', '.join(missing)}")
    if not pixels.present and _is_image_class(str(ds.get("SOPClassUID", ""))):
        raise BadInput("image without pixel data (dataset cut short?)")
    if not pixels.pixel_data:
        return
    if pixels.length is None:
        if not pixels.fragments_complete:
            raise BadInput("encapsulated pixel data truncated")
        return
    expected = _native_pixel_length(ds)
    if expected is not None and pixels.length < expected:
        raise BadInput(f"pixel data truncated: {pixels.length} of {expected} bytes")


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


def _native_pixel_length(ds: Dataset | PlainHeader) -> int | None:
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
