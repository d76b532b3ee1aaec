"""At what scale, and in which pieces, a photo is searched for faces.

The scale comes from the smallest face to be found (the quality gate's minimum size) and
the detector's window (the smallest face it finds in its own input): a detector that finds
faces of 16 px looks for 32 px faces at half size. So a 250x250 photo is never blown up,
and a 6000x4000 photo is still searched finely enough for its smallest faces. Two caps
bound the cost: the detector's ``max_size`` (the long side past which it is not run) and
:data:`MAX_DETECT_PIXELS` (past which the scale goes down, and the smallest face found
goes up, as :attr:`DetectionPlan.smallest_face` says).

A detector whose cost per pixel grows on large inputs (YuNet's doubles past about 0.8
megapixels) says so with ``tile``: a detection copy much larger than a square of that side
is cut into overlapping tiles of ``tile`` pixels, and searched once more whole at ``tile`` px for the
faces too large for the tiles' overlap. Detections from different pieces are merged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from .base import Box, Detection

__all__ = ["DetectionPlan", "plan_detection", "merge_pieces", "MAX_DETECT_PIXELS", "MIN_FACE_PIXELS"]

#: Faces narrower than this (in original pixels) are too small for any template, even a
#: probe's: they are dropped whatever the detector finds.
MIN_FACE_PIXELS = 20

#: The most pixels a photo's detection copy may have; above it the scale goes down. At
#: YuNet's half scale this admits a 48-megapixel photo whole (about 2 s on one core).
MAX_DETECT_PIXELS = 12_000_000

#: A copy of at most this many times a tile's pixels is searched in one piece.
_ONE_PIECE = 1.8


@dataclass(frozen=True)
class DetectionPlan:
    """How one photo is searched: scale, detection copy size, pieces, smallest face found."""

    #: Detection pixels per original pixel.
    scale: float
    #: Size (width, height) of the detection copy.
    size: tuple[int, int]
    #: (left, top, right, bottom) of each tile in the detection copy; one tile, the whole copy,
    #: when it is searched in one piece.
    tiles: tuple[tuple[int, int, int, int], ...]
    #: Scale of the extra whole-photo pass made when there are several tiles, else None.
    coarse: float | None
    #: Shortest face side (original pixels) this plan finds (never under MIN_FACE_PIXELS); 0
    #: when the detector does not say.
    smallest_face: int


def plan_detection(width: int, height: int, detector: Any, *, min_face: int,
                   fixed_size: int | None = None, max_upscale: float | None = None) -> DetectionPlan:
    """The plan for a ``width`` x ``height`` photo, finding faces of ``min_face`` px and larger.

    ``max_upscale`` overrides the detector's cap on blowing a small picture up to its
    ``min_size`` (video frames pass 1: see vultus.video_ingest).
    ``fixed_size`` (``VULTUS_DETECT_SIZE``), or a detector that does not declare its
    ``window``, scales the long side to that size (or the detector's ``default_size``)
    instead, in one piece, as before the plan existed.
    """
    long_side = max(width, height)
    window = getattr(detector, "window", None)
    if fixed_size is not None or window is None:
        scale = (fixed_size or detector.default_size) / long_side
        if abs(scale - 1.0) <= 0.01:
            scale = 1.0
        size = _sized(width, height, scale)
        return DetectionPlan(scale, size, ((0, 0, *size),), None, _smallest(window, scale) if window else 0)
    scale = window / min_face
    # Not below the detector's smallest useful input (a network sees too little of a face
    # at the edge of a small copy, or of a turned one: see YuNetDetector.min_size), but a
    # small photo is blown up at most ``max_upscale`` times for it.
    upscale = getattr(detector, "max_upscale", 1.0) if max_upscale is None else max_upscale
    floor = min(getattr(detector, "min_size", 0) / long_side, upscale)
    scale = max(scale, floor)
    scale = min(scale, getattr(detector, "max_size", long_side * scale) / long_side)
    scale = min(scale, math.sqrt(MAX_DETECT_PIXELS / (width * height)))
    if abs(scale - 1.0) <= 0.01:
        scale = 1.0
    size = _sized(width, height, scale)
    smallest = _smallest(window, scale)
    tile = getattr(detector, "tile", None)
    if tile is None or size[0] * size[1] <= tile * tile * _ONE_PIECE:
        return DetectionPlan(scale, size, ((0, 0, *size),), None, smallest)
    coarse = tile / long_side
    # A face small enough for the fine pass to be its only finder fits whole in some tile
    # if the tiles overlap by its size; the coarse pass finds every larger one. The margin
    # covers the box the detector draws around a face being a little larger than the face.
    overlap = math.ceil(1.3 * window * scale / coarse)
    return DetectionPlan(scale, size, _tiles(size, tile, overlap), coarse, smallest)


def _smallest(window: int, scale: float) -> int:
    return max(MIN_FACE_PIXELS, math.ceil(window / scale))


def _sized(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def _tiles(size: tuple[int, int], tile: int, overlap: int) -> tuple[tuple[int, int, int, int], ...]:
    """Tiles of at most ``tile`` px a side covering ``size``, neighbours sharing ``overlap`` px.

    Along each side: as few tiles as cover it, all the same length (so none is a thin
    sliver that costs a call for little area).
    """

    def spans(length: int) -> list[tuple[int, int]]:
        count = max(1, math.ceil((length - overlap) / (tile - overlap)))
        span = min(length, math.ceil((length + (count - 1) * overlap) / count))
        step = 0 if count == 1 else (length - span) / (count - 1)
        return [(round(i * step), round(i * step) + span) for i in range(count)]

    width, height = size
    return tuple((x0, y0, x1, y1) for y0, y1 in spans(height) for x0, x1 in spans(width))


def merge_pieces(pieces: Sequence[Sequence[Detection]]) -> list[Detection]:
    """One list of the detections of several pieces of a photo (in the photo's coordinates).

    A face seen by two pieces (two overlapping tiles, or a tile and the whole-photo pass)
    is kept once, with the higher score. A piece may also see a face cut by its edge, as a
    smaller box inside the whole face's: that one goes too. Detections of the same piece
    are left alone; the detector has already resolved those.
    """
    ranked = sorted(((d, i) for i, piece in enumerate(pieces) for d in piece), key=lambda p: -p[0].score)
    kept: list[tuple[Detection, int]] = []
    for det, piece in ranked:
        if not any(piece != other and _same_face(det.box, seen.box) for seen, other in kept):
            kept.append((det, piece))
    return [d for d, _ in kept]


def _same_face(a: Box, b: Box) -> bool:
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return False
    inter = width * height
    return inter / (a.area + b.area - inter) > 0.3 or inter / max(1, min(a.area, b.area)) > 0.6
