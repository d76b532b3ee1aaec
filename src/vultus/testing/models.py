"""Fake face models: solid coloured squares stand in for faces, their colour for identity.

:class:`FakeDetector` finds axis-aligned squares that differ from a plain background,
:class:`FakeAligner` cuts each square out as a chip, and :class:`FakeEmbedder` turns the
chip's colour into a unit-length template: two squares of the same colour give (nearly)
the same template, two colours of :data:`~vultus.testing.photos.PALETTE` are far apart.
They need no weights and no native library, so the use cases above the model seam can be
tested quickly and anywhere. They are not face models: never point them at real photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..faces.base import Box, Detection, ModelSpec

__all__ = ["FAKE_SPEC", "FakeAligner", "FakeDetector", "FakeEmbedder", "colour_template"]

FAKE_SPEC = ModelSpec(
    model_id="fake-colour-v1",
    path="(none: computed from the chip's colour)",
    input_size=32,
    dim=64,
    licence="Vultus's own (test fake)",
    match_distance=0.6,
    rights_distance=0.65,
)

#: Summed per-channel difference from the background above which a pixel is part of a square;
#: well above JPEG noise on a plain background, well below the palette's contrast.
_CONTRAST = 48
#: The most squares one image is searched for, and pixels tried as a square's corner: a real
#: photo fed to the fake by mistake finishes quickly instead of tracing every speck.
_MAX_FOUND = 64
_MAX_STARTS = 4096
#: Width of the kernel (in colour levels) that templates are drawn from: colours closer than
#: this give close templates, colours several times further apart give orthogonal ones.
_COLOUR_SCALE = 24.0
#: Fixed seed of the projection, so that templates are the same in every process and release.
_SEED = 20240917


def _projection(dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    return rng.normal(size=(dim, 3)) / _COLOUR_SCALE, rng.uniform(0.0, 2.0 * np.pi, size=dim)


_WEIGHTS, _PHASES = _projection(FAKE_SPEC.dim)


def colour_template(rgb: Sequence[float]) -> np.ndarray:
    """The L2-normalised template :class:`FakeEmbedder` makes for a square of colour ``rgb``.

    Random Fourier features of a Gaussian kernel over RGB: the distance between two
    templates grows smoothly with the distance between their colours, to about sqrt(2).
    """
    features = np.cos(_WEIGHTS @ np.asarray(rgb, dtype=np.float64) + _PHASES)
    return (features / np.linalg.norm(features)).astype(np.float32)


def _background(rgb: np.ndarray) -> np.ndarray:
    """The plain background's colour: the median of the image's border pixels."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border.reshape(-1, 3), axis=0)


class FakeDetector:
    """Finds solid squares (rectangles) on a plain background; each box is one square."""

    name = "fake"
    #: Squares narrower than this (in the pixels it detects at) are taken for noise.
    window = 16
    default_size = 640

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        height, width = rgb.shape[:2]
        if min(height, width) < self.window:
            return []
        differs = np.abs(rgb.astype(np.int16) - _background(rgb)).sum(axis=2) > _CONTRAST
        # A pixel counts only with its right and lower neighbours: stray JPEG specks go,
        # a square loses one row and column, given back below.
        mask = np.zeros_like(differs)
        mask[:-1, :-1] = differs[:-1, :-1] & differs[1:, :-1] & differs[:-1, 1:] & differs[1:, 1:]
        found: list[Detection] = []
        ys, xs = np.nonzero(mask)
        for y, x in zip(ys[:_MAX_STARTS].tolist(), xs[:_MAX_STARTS].tolist()):
            if not mask[y, x]:
                continue  # inside a square already traced
            # Row-major order meets a square first at its top-left corner.
            w = _run(mask[y, x:])
            h = _run(mask[y:, x])
            region = mask[y : y + h, x : x + w]
            fill = float(region.mean())
            region[:] = False
            if min(w, h) + 1 >= self.window:
                box = Box(x, y, min(width, x + w + 1), min(height, y + h + 1))
                found.append(Detection(box, round(fill, 4)))
                if len(found) >= _MAX_FOUND:
                    break
        found.sort(key=lambda d: (-d.score, -d.box.area))
        return found


def _run(line: np.ndarray) -> int:
    """How many leading elements of a boolean line are True."""
    gaps = np.flatnonzero(~line)
    return int(gaps[0]) if len(gaps) else len(line)


def _landmarks(box: Box) -> tuple[tuple[float, float], ...]:
    """Five points where a face's eyes, nose tip and mouth corners would sit in ``box``."""
    w, h = box.width, box.height
    at = [(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75)]
    return tuple((box.left + fx * w, box.top + fy * h) for fx, fy in at)


class FakeAligner:
    """Cuts each box out of the image as a ``size`` x ``size`` chip; landmarks from the box."""

    name = "fake"

    def align(
        self, rgb: np.ndarray, detections: Sequence[Detection], *, size: int
    ) -> tuple[list[tuple[tuple[float, float], ...]], list[np.ndarray]]:
        landmarks, chips = [], []
        height, width = rgb.shape[:2]
        for det in detections:
            box = det.box.clipped(width, height)
            piece = rgb[box.top : max(box.top + 1, box.bottom), box.left : max(box.left + 1, box.right)]
            chip = Image.fromarray(np.ascontiguousarray(piece, dtype=np.uint8)).resize((size, size), Image.BILINEAR)
            chips.append(np.asarray(chip, dtype=np.uint8))
            landmarks.append(det.landmarks or _landmarks(box))
        return landmarks, chips


class FakeEmbedder:
    """Templates from the colour at the centre of each chip (see :func:`colour_template`)."""

    spec = FAKE_SPEC
    aligner = "fake"
    #: Pure numpy with no state: threads may embed at once.
    thread_safe = True

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        rows = []
        for chip in chips:
            chip = np.asarray(chip)
            if chip.ndim == 2:
                chip = np.repeat(chip[:, :, None], 3, axis=2)
            h, w = chip.shape[:2]
            # The centre half only: the box's edges may take in background or blended pixels.
            centre = chip[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4), :3]
            rows.append(colour_template(centre.reshape(-1, 3).mean(axis=0)))
        return np.stack(rows)
