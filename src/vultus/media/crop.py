"""Small JPEG face crops for showing candidates to a person, stills of frames and of video appearances, and redaction of faces."""

from __future__ import annotations

import io
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

__all__ = ["face_crop_jpeg", "frame_jpeg", "redact_regions", "still_jpeg"]

#: The colour and width (pixels) of the outline a still draws around its face.
_OUTLINE = (255, 196, 0)
_OUTLINE_WIDTH = 3


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
    _black_out(rgb, boxes, margin)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=92)
    return out.getvalue()


def still_jpeg(rgb: np.ndarray, box: tuple[int, int, int, int], *,
               redact: Sequence[tuple[int, int, int, int]] = (), margin: float = 0.3) -> bytes:
    """The still of a video appearance: the frame ``rgb`` as a JPEG, ``box`` outlined, each of ``redact`` black.

    The outline is drawn just outside ``box``, so the face's own pixels are as decoded.
    ``redact`` are the boxes, in the same frame, of people who objected (or anyone else the
    still must not show): filled black, widened by ``margin``, as :func:`redact_regions`
    fills an objector's face in a photo. The frame is not changed.
    """
    colour = rgb if rgb.ndim == 3 else np.repeat(rgb[:, :, None], 3, axis=2)
    frame = np.array(colour[:, :, :3], dtype=np.uint8, order="C")  # a copy: the caller's frame is not changed
    _black_out(frame, redact, margin)
    height, width = frame.shape[:2]
    left, top, right, bottom = box
    w = _OUTLINE_WIDTH
    outer = (max(0, left - w), max(0, top - w), min(width, right + w), min(height, bottom + w))
    frame[outer[1] : max(outer[1], top), outer[0] : outer[2]] = _OUTLINE
    frame[min(bottom, outer[3]) : outer[3], outer[0] : outer[2]] = _OUTLINE
    frame[outer[1] : outer[3], outer[0] : max(outer[0], left)] = _OUTLINE
    frame[outer[1] : outer[3], min(right, outer[2]) : outer[2]] = _OUTLINE
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _black_out(rgb: np.ndarray, boxes: Iterable[tuple[int, int, int, int]], margin: float) -> None:
    """Fill each box of ``rgb``, widened by ``margin`` of its size on every side, with black (in place)."""
    height, width = rgb.shape[:2]
    for left, top, right, bottom in boxes:
        pad_x = round((right - left) * margin)
        pad_y = round((bottom - top) * margin)
        rgb[max(0, top - pad_y) : min(height, bottom + pad_y), max(0, left - pad_x) : min(width, right + pad_x)] = 0


def frame_jpeg(rgb: np.ndarray, *, quality: int = 92) -> bytes:
    """A JPEG of a whole frame, without metadata: the still kept of a frame that is no photo file."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, format="JPEG", quality=quality)
    return out.getvalue()
