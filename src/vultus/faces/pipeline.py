"""Detect, align and embed every face in an image, in the image's own coordinates."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from .base import Aligner, Detection, Detector, Embedder, Face, create_aligner, create_detector, create_embedder

__all__ = ["FaceAnalyzer"]

#: Faces narrower than this (in original pixels) are too small for a usable template.
MIN_FACE_PIXELS = 20


class FaceAnalyzer:
    """Runs a detector, an aligner and an embedder over one image.

    Detection runs on a copy scaled so that its long side is ``detect_size`` pixels (by
    default the detector's own ``default_size``):
    large photos are scaled down (HOG's cost grows with the pixel count) and small ones
    up (HOG misses faces under ~80 px). Landmarks and chips are taken from the original,
    so boxes and templates are in original coordinates and at full quality.
    """

    def __init__(self, detector: Detector, aligner: Aligner, embedder: Embedder, *, detect_size: int | None = None):
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.detect_size = detect_size or detector.default_size
        # dlib's models keep working buffers: one image at a time per analyzer.
        self._lock = threading.Lock()

    @classmethod
    def from_names(cls, detector: str, embedder: str, *, detect_size: int | None = None) -> "FaceAnalyzer":
        """Build an analyzer from registered model names (weights load on first use)."""
        emb = create_embedder(embedder)
        return cls(create_detector(detector), create_aligner(emb.aligner), emb, detect_size=detect_size)

    @property
    def model_id(self) -> str:
        """The embedder's model id, recorded with every template it makes."""
        return self.embedder.model_id

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in ``rgb``'s own coordinates, largest first."""
        with self._lock:
            return self._detect(rgb)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = self.detect_size / max(height, width)
        if abs(scale - 1.0) > 0.01:
            small = Image.fromarray(rgb).resize(
                (max(1, round(width * scale)), max(1, round(height * scale))),
                Image.BILINEAR,
                reducing_gap=2.0 if scale < 1 else None,
            )
            work = np.asarray(small)
        else:
            scale, work = 1.0, rgb
        found = []
        for det in self.detector.detect(work):
            box = det.box.scaled(1.0 / scale).clipped(width, height)
            if min(box.width, box.height) >= MIN_FACE_PIXELS:
                found.append(Detection(box, det.score))
        found.sort(key=lambda d: (-d.box.area, -d.score))
        return found

    def analyze(self, rgb: np.ndarray) -> list[Face]:
        """Every face in ``rgb`` with its box, landmarks and template, largest first."""
        with self._lock:
            return self._analyze(rgb)

    def _analyze(self, rgb: np.ndarray) -> list[Face]:
        found = self._detect(rgb)
        if not found:
            return []
        boxes = [d.box for d in found]
        landmarks, chips = self.aligner.align(rgb, boxes, size=self.embedder.spec.input_size)
        vectors = self.embedder.embed(chips)
        return [
            Face(box=d.box, score=d.score, landmarks=marks, embedding=vector)
            for d, marks, vector in zip(found, landmarks, vectors)
        ]
