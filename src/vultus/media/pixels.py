"""What a decode will cost in memory, and the conversion to upright 8-bit RGB that keeps to it.

A decode holds two full-size things at once: Pillow's own image (at its mode's storage
size, plus whatever buffer the format's decoder keeps) and the 8-bit RGB array handed on.
:func:`decode_cost` estimates that peak from the header, before a pixel is decoded;
:func:`to_upright_rgb8` converts in strips of rows, so no full-size intermediate (a float
copy, an RGBA copy, a rotated copy) ever exists beside those two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image

__all__ = ["DecodeCost", "decode_cost", "orientation_of", "to_upright_rgb8", "CONVERTIBLE_MODES", "STRIP_PIXELS"]

#: Bytes per pixel of Pillow's storage for each mode (multi-band modes use 4 bytes).
_STORAGE_BYTES = {
    "1": 1, "L": 1, "P": 1,
    "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
    "LA": 4, "La": 4, "PA": 4, "RGB": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4,
    "CMYK": 4, "YCbCr": 4, "HSV": 4, "I": 4, "F": 4,
}
#: Modes read as one number per pixel and scaled down to 8 bits (not clipped at 255).
_NUMERIC_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Modes with an alpha band, composited on white.
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
#: Every mode :func:`to_upright_rgb8` converts; others are refused before decoding.
CONVERTIBLE_MODES = tuple(_STORAGE_BYTES)
#: Pixels converted at a time: a strip's float64 temporaries stay near 8 MB each.
STRIP_PIXELS = 1 << 20
#: What the strips, Pillow's small decode buffers and the EXIF/ICC blocks add at most.
_FIXED_OVERHEAD = 48 * STRIP_PIXELS

_ROTATES = (5, 6, 7, 8)


@dataclass(frozen=True)
class DecodeCost:
    """The estimated peak of one decode, in bytes, and its parts (for the message)."""

    raw: int
    decoder: int
    output: int
    overhead: int

    @property
    def total(self) -> int:
        return self.raw + self.decoder + self.output + self.overhead

    def describe(self) -> str:
        """The parts in words, e.g. ``420 MB decoded + 315 MB 8-bit RGB result + 48 MB working space``."""
        parts = [f"{_mb(self.raw)} MB decoded", f"{_mb(self.output)} MB 8-bit RGB result"]
        if self.decoder:
            parts.insert(1, f"{_mb(self.decoder)} MB decoder buffer")
        parts.append(f"{_mb(self.overhead)} MB working space")
        return " + ".join(parts)


def decode_cost(image: Image.Image) -> DecodeCost:
    """Estimate the peak bytes of decoding ``image`` (opened, not loaded) into 8-bit RGB."""
    width, height = image.size
    pixels = width * height
    raw = pixels * _STORAGE_BYTES.get(image.mode, 8)
    return DecodeCost(raw=raw, decoder=_decoder_buffer(image, pixels), output=pixels * 3, overhead=_FIXED_OVERHEAD)


def _decoder_buffer(image: Image.Image, pixels: int) -> int:
    """Bytes a format's decoder keeps beside Pillow's image while it decodes."""
    fmt = image.format
    if fmt in ("JPEG", "MPO") and (image.info.get("progressive") or image.info.get("progression")):
        # libjpeg keeps every DCT coefficient (2 bytes) of every component for a progressive scan.
        return pixels * 2 * max(1, len(image.getbands()))
    if fmt == "WEBP":
        return pixels * 4  # libwebp decodes the whole frame to RGBA bytes, then Pillow copies them
    if fmt == "BMP":
        return pixels * 2  # the RLE decoders gather the whole image in Python, then copy it once
    if fmt == "TIFF":
        return _tiff_strip_bytes(image)
    return 0


def _tiff_strip_bytes(image: Image.Image) -> int:
    """The largest strip or tile libtiff decodes into a buffer of its own."""
    width, height = image.size
    tags = getattr(image, "tag_v2", {})
    try:
        bits = tags.get(258, (8,))
        bits_total = sum(bits) if isinstance(bits, tuple) else int(bits) * int(tags.get(277, 1))
        bytes_per_pixel = max(4, -(-int(bits_total) // 8))
        if 322 in tags and 323 in tags:
            area = int(tags[322]) * int(tags[323])
        else:
            area = width * min(height, max(1, int(tags.get(278, height))))
    except (TypeError, ValueError):
        area, bytes_per_pixel = width * height, 8
    return max(0, area) * bytes_per_pixel


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8) of ``image``; 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_upright_rgb8(image: Image.Image, orientation: int = 1) -> np.ndarray:
    """Convert a loaded image to an upright 8-bit RGB array (height x width x 3).

    Greyscale, palette, CMYK and the like go through Pillow's own conversion; alpha is
    composited on white; 16-bit, 32-bit and float greyscale are scaled from their full range
    (65535 for 16-bit; for 32-bit and float, 255 unless a value is larger, then 65535).
    The result is written strip by strip, through a view that applies ``orientation``, into
    the one array returned: nothing else full-size is made.
    """
    width, height = image.size
    shape = (width, height, 3) if orientation in _ROTATES else (height, width, 3)
    out = np.empty(shape, dtype=np.uint8)
    target = _source_view(out, orientation)
    convert = _strip_converter(image)
    rows = max(1, STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        target[top:bottom] = convert(image.crop((0, top, width, bottom)))
    return out


def _source_view(out: np.ndarray, orientation: int) -> np.ndarray:
    """A view of ``out`` in the stored image's own orientation (writing it fills ``out`` upright)."""
    # Each is the inverse of Pillow's transpose for that EXIF value (ImageOps.exif_transpose).
    if orientation == 2:
        return out[:, ::-1]
    if orientation == 3:
        return out[::-1, ::-1]
    if orientation == 4:
        return out[::-1]
    if orientation == 5:
        return out.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(out, 1)
    if orientation == 7:
        return out[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(out, -1)
    return out


def _strip_converter(image: Image.Image):
    """A function from one strip (a Pillow image) to its height x width x 3 uint8 array."""
    mode = image.mode
    if mode in _NUMERIC_MODES:
        top = 65535.0 if mode.startswith("I;16") else _numeric_top(image)
        return lambda strip: _scale_numeric(strip, top)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _composite_on_white
    if mode == "RGB":
        return lambda strip: np.asarray(strip, dtype=np.uint8)
    return lambda strip: np.asarray(strip.convert("RGB"), dtype=np.uint8)


def _numeric_top(image: Image.Image) -> float:
    """255, or 65535 when a finite value of a 32-bit or float image is over 255."""
    width, height = image.size
    rows = max(1, STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        values = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size and finite.max() > 255:
            return 65535.0
    return 255.0


def _scale_numeric(strip: Image.Image, top: float) -> np.ndarray:
    values = np.asarray(strip, dtype=np.float64)
    # NaN has no brightness: it is black, as an unset pixel would be.
    values = np.nan_to_num(values, nan=0.0, posinf=top, neginf=0.0)
    grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _composite_on_white(strip: Image.Image) -> np.ndarray:
    rgba = strip.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)


def _mb(size: int) -> int:
    return -(-size // (1024 * 1024))
