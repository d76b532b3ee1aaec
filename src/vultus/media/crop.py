"""Small JPEG face crops for showing candidates to a person, stills of frames, and redaction of faces."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["face_crop_jpeg", "frame_jpeg", "redact_regions"]


def face_crop_jpeg(rgb: np.ndarray, box: tuple[int, int, int, int], *, size: int = 160, margin: float = 0.25) -> bytes:
    """A JPEG of the face in ``box`` with a ``margin`` around it, at most ``size`` px a side."""
    height, width = rgb.shape[:2]
    left, top, right, bottom = box
    pad_x = round((right - left) * margin)
    pad_y = round((bottom - top) * margin)
    region = rgb[max(0, top - pad_y) : min(height, bottom + pad_y), max(0, left - pad_x) : min(width, right + pad_x)]
    image = Image.fromarray(np.ascontiguousarray(region))
    image.thumbnail((size, size), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def redact_regions(data: bytes, boxes: list[tuple[int, int, int, int]], *, margin: float = 0.3,
                   max_pixels: int, max_decode_mb: int) -> bytes:
    """The photo re-encoded as JPEG with each box (widened by ``margin``) filled black.

    Used when a photo shows a person who objected next to others: the others' faces are
    kept, the objector's pixels are not. Boxes are in upright (EXIF-applied) coordinates,
    and the result is saved upright with no metadata. The decode keeps the deployment's
    pixel and memory limits, as every decode does.
    """
    from .decode import decode_image

    rgb = decode_image(data, name="the photo to redact", max_pixels=max_pixels, max_decode_mb=max_decode_mb).rgb
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    height, width = rgb.shape[:2]
    for left, top, right, bottom in boxes:
        pad_x = round((right - left) * margin)
        pad_y = round((bottom - top) * margin)
        rgb[max(0, top - pad_y) : min(height, bottom + pad_y), max(0, left - pad_x) : min(width, right + pad_x)] = 0
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=92)
    return out.getvalue()


def frame_jpeg(rgb: np.ndarray, *, quality: int = 92) -> bytes:
    """A JPEG of a whole frame, without metadata: the still kept of a frame that is no photo file."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="JPEG", quality=quality)
    return out.getvalue()
