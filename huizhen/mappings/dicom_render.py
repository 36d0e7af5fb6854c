"""One frame of an instance as a consumer image (WADO-RS rendered, PS3.18 9.5), pure.

The pixel data is decoded by pydicom (uncompressed, deflate and RLE natively;
JPEG baseline, JPEG lossless where Pillow can, JPEG 2000 through Pillow's
OpenJPEG), the modality and VOI LUTs (rescale, window) are applied, the
result is scaled to 8 bits (MONOCHROME1 inverted) and encoded as JPEG or
PNG. An instance whose pixels cannot be decoded here raises
:class:`NotRenderable`, which the edge answers 406.
"""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from huizhen.integration.errors import BadInput, HuizhenError

MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}


class NotRenderable(HuizhenError):
    """The instance has no pixel data this server can decode."""


def render_frame(data: bytes, frame: int, media_type: str, *, quality: int = 90) -> bytes:
    """Frame ``frame`` (1-based) of the Part-10 ``data`` as ``media_type`` (image/jpeg or image/png)."""
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if media_type not in MEDIA_TYPES:
        raise NotRenderable(f"cannot render as {media_type}; offer image/jpeg or image/png")
    try:
        ds = dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise NotRenderable("the stored object is not readable DICOM") from exc
    if "PixelData" not in ds:
        raise NotRenderable(f"{ds.get('SOPClassUID', 'this instance')!s} has no pixel data to render")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise BadInput(f"frame {frame} is out of range: the instance has {frames} frame(s)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for "no decoder for this transfer syntax"
        syntax = ds.file_meta.get("TransferSyntaxUID", "?")
        raise NotRenderable(f"the pixel data ({syntax}) cannot be decoded here: {exc}") from exc
    if frames > 1:
        pixels = pixels[frame - 1]
    colour = pixels.ndim == 3
    if not colour:
        pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    arr = pixels.astype("float64")
    low, high = float(arr.min()), float(arr.max())
    scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
    image8 = scaled.clip(0, 255).astype("uint8")
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        image8 = 255 - image8
    image = Image.fromarray(image8, mode="RGB" if colour else "L")
    out = io.BytesIO()
    image.save(out, format=MEDIA_TYPES[media_type], **({"quality": quality} if media_type == "image/jpeg" else {}))
    return out.getvalue()


def frame_bytes(data: bytes, frames: list[int]) -> tuple[list[bytes], str | None]:
    """Frames (1-based) of the Part-10 ``data`` as stored (WADO-RS frames, PS3.18 9.4.1.2).

    Native pixel data is cut into frames; encapsulated pixel data gives each
    frame's compressed bitstream. Returns the frames and the transfer syntax
    they are encoded in (None for native: ``application/octet-stream``).
    """
    from pydicom.encaps import generate_frames

    try:
        ds = dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise NotRenderable("the stored object is not readable DICOM") from exc
    if "PixelData" not in ds:
        raise NotRenderable(f"{ds.get('SOPClassUID', 'this instance')!s} has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    bad = [n for n in frames if not 1 <= n <= count]
    if bad or not frames:
        raise BadInput(f"frame(s) {bad or frames} out of range: the instance has {count} frame(s)")
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_encapsulated:
        every = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [every[n - 1] for n in frames], str(syntax)
    if not syntax.is_little_endian or int(ds.BitsAllocated) % 8:  # deflate: inflated by dcmread
        raise NotRenderable(f"frames of {syntax.name} pixel data are not served; retrieve the instance")
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
    pixels = bytes(ds.PixelData)
    if len(pixels) < size * count:
        raise NotRenderable("the pixel data is shorter than its frames")
    return [pixels[(n - 1) * size : n * size] for n in frames], None
