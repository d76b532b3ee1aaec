"""Strip GPS and other location tags from the engine's stored copy of a photo.

Purpose limitation and data minimisation (GDPR Art. 5(1)(b)(c)): face search needs the
pixels, not where the photo was taken. JPEGs are edited losslessly (only the EXIF block is
rewritten and location-bearing XMP dropped); other formats that carry a GPS block are
re-encoded losslessly as PNG. Photos without location tags are stored byte for byte.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import CorruptImageError

__all__ = ["strip_location", "GPS_IFD"]

GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_INTEROP_IFD = 0xA005
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


def strip_location(data: bytes, fmt: str, *, pixels: np.ndarray | None = None) -> tuple[bytes, str]:
    """Return the photo's bytes without location tags, and the format they are in.

    ``pixels`` is the photo already decoded (upright 8-bit RGB). When given, a non-JPEG
    photo that carries a GPS block is stored as a PNG of those pixels with no metadata at
    all: decoding it a second time, in its own mode, would cost its full memory again
    outside the decode budget, and some modes (float or CMYK TIFF) cannot be PNGs at all.
    Without ``pixels`` the photo is re-encoded from its own data, keeping its other tags;
    one that cannot be raises :class:`~vultus.errors.MediaError`: its location is never kept.
    """
    if fmt == "JPEG" and data.startswith(b"\xff\xd8"):
        stripped = _strip_jpeg(data)
        if stripped is not None:
            return stripped, "JPEG"
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif()
            if not exif.get_ifd(GPS_IFD) and GPS_IFD not in exif:
                return data, fmt
            if pixels is not None:
                out = io.BytesIO()
                Image.fromarray(pixels).save(out, format="PNG")
                return out.getvalue(), "PNG"
            try:
                clean = _without_gps(exif)
                out = io.BytesIO()
                image.seek(0)
                frame = image.copy()
                frame.save(out, format="PNG", exif=clean.tobytes())
                return out.getvalue(), "PNG"
            except Exception:  # noqa: BLE001 - a mode PNG cannot hold
                raise CorruptImageError(
                    "The photo carries location tags that cannot be removed from its format; convert it to "
                    "JPEG or PNG and ingest it again."
                ) from None
    except CorruptImageError:
        raise
    except Exception:  # noqa: BLE001 - undecodable here means it was refused earlier anyway
        return data, fmt


def _without_gps(exif: Image.Exif) -> Image.Exif:
    # Load the sub-IFDs first so that they are written back out.
    for pointer in (_EXIF_IFD, _INTEROP_IFD):
        exif.get_ifd(pointer)
    if GPS_IFD in exif:
        del exif[GPS_IFD]
    return exif


def _strip_jpeg(data: bytes) -> bytes | None:
    """Rewrite a JPEG's APP1 segments without location; None if its structure is odd."""
    out = bytearray(data[:2])
    pos = 2
    changed = False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data, copied unchanged
            out += data[pos:]
            return bytes(out) if changed else data
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            out += data[pos : pos + 2]
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return None
        segment = data[pos:end]
        payload = segment[4:]
        if marker == 0xE1 and payload.startswith(_EXIF_HEADER):
            exif = Image.Exif()
            exif.load(payload)
            if exif.get_ifd(GPS_IFD) or GPS_IFD in exif:
                new_payload = _without_gps(exif).tobytes()
                if len(new_payload) + 2 > 0xFFFF:
                    return None
                segment = b"\xff\xe1" + (len(new_payload) + 2).to_bytes(2, "big") + new_payload
                changed = True
        elif marker == 0xE1 and payload.startswith(_XMP_HEADER) and b"GPS" in payload:
            segment = b""  # XMP with exif:GPS* properties: drop the packet
            changed = True
        out += segment
        pos = end
    return None
