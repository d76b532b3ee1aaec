"""Detect, align and embed every face in an image, in the image's own coordinates."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .base import Aligner, Detection, Detector, Embedder, Face, create_aligner, create_detector, create_embedder

__all__ = ["FaceAnalyzer", "QualityGate", "embed_detections"]

#: Faces narrower than this (in original pixels) are too small for any template, even a probe's.
MIN_FACE_PIXELS = 20


@dataclass(frozen=True)
class QualityGate:
    """What a face needs to be indexed: a minimum size and a minimum detector score.

    Faces that fall short are not stored; their reasons (``too_small``, ``low_score``)
    are counted in the ingest summary. Probes are not gated: an investigator's one photo
    is searched as it is.
    """

    #: Shorter side of the face box, in original pixels.
    min_face_size: int = 32
    #: The detector's own score (HOG's SVM margin, CNN and SCRFD confidences).
    min_score: float = 0.0

    def reason(self, detection: Detection) -> str | None:
        """Why ``detection`` may not be indexed, or None when it may."""
        if min(detection.box.width, detection.box.height) < self.min_face_size:
            return "too_small"
        if detection.score < self.min_score:
            return "low_score"
        return None


#: Rows of the full-size photo handed to Pillow at a time when it is scaled down.
_STRIP_ROWS = 512


def scaled_for_detection(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (width, height), bilinear, as Pillow does with a reducing gap of 2.

    The same pixels as ``Image.fromarray(rgb).resize(size, BILINEAR, reducing_gap=2.0)``
    when shrinking, without its full-size copy: Pillow holds RGB at 4 bytes a pixel, which
    for a 110-megapixel photo is 440 MB beside the decoded array. The integer box
    reduction that Pillow would apply first is made here strip by strip (strips whose
    height is a multiple of the factor reduce exactly as the whole image does), and only
    the reduced image is resampled to ``size``.
    """
    height, width = rgb.shape[:2]
    factor_x = int(width / size[0] / 2.0) or 1
    factor_y = int(height / size[1] / 2.0) or 1
    if size[0] >= width or (factor_x == 1 and factor_y == 1):
        return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=None if size[0] >= width else 2.0))
    step = max(1, _STRIP_ROWS // factor_y) * factor_y
    parts = [np.asarray(Image.fromarray(rgb[top : top + step]).reduce((factor_x, factor_y)))
             for top in range(0, height, step)]
    reduced = Image.fromarray(np.concatenate(parts) if len(parts) > 1 else parts[0])
    return np.asarray(reduced.resize(size, Image.BILINEAR, box=(0, 0, width / factor_x, height / factor_y)))


def embed_detections(
    rgb: np.ndarray, detections: Sequence[Detection], aligner: Aligner, embedder: Embedder
) -> tuple[list[tuple[tuple[float, float], ...]], np.ndarray]:
    """Landmarks and templates of ``detections`` in ``rgb`` with one aligner and embedder."""
    if not detections:
        return [], np.zeros((0, embedder.spec.dim), dtype=np.float32)
    landmarks, chips = aligner.align(rgb, detections, size=embedder.spec.input_size)
    return landmarks, embedder.embed(chips)


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
            work = scaled_for_detection(rgb, (max(1, round(width * scale)), max(1, round(height * scale))))
        else:
            scale, work = 1.0, rgb
        found = []
        for det in self.detector.detect(work):
            det = det.scaled(1.0 / scale, width, height)
            if min(det.box.width, det.box.height) >= MIN_FACE_PIXELS:
                found.append(det)
        # Largest first (a probe's face 1 is its main subject), except that a detector with a
        # calibrated confidence puts its sure faces before the doubtful ones: YuNet's large
        # false positives (a chest, a blurred head behind) would otherwise be face 1.
        sure = getattr(self.detector, "sure_score", None)
        found.sort(key=lambda d: (sure is not None and d.score < sure, -d.box.area, -d.score))
        return found

    def analyze(self, rgb: np.ndarray) -> list[Face]:
        """Every face in ``rgb`` with its box, landmarks and template, largest first."""
        with self._lock:
            return self._embed(rgb, self._detect(rgb))

    def analyze_gated(
        self, rgb: np.ndarray, gate: QualityGate, *, embed_rejected: bool = False
    ) -> tuple[list[Face], Counter, list[Face]]:
        """The faces in ``rgb`` that pass ``gate``, a count of the others by reason, and those others.

        Faces that fail are embedded only with ``embed_rejected`` (to screen them against
        suppression entries); otherwise their templates are never computed and the third
        list holds them with empty templates.
        """
        with self._lock:
            passed, failed, rejected = [], [], Counter()
            for det in self._detect(rgb):
                reason = gate.reason(det)
                if reason is None:
                    passed.append(det)
                else:
                    failed.append(det)
                    rejected[reason] += 1
            if embed_rejected:
                others = self._embed(rgb, failed)
            else:
                others = [Face(d.box, d.score, (), np.zeros(0, np.float32)) for d in failed]
            return self._embed(rgb, passed), rejected, others

    def reembed(self, rgb: np.ndarray, detections: Sequence[Detection]) -> list[Face]:
        """Templates for faces already located (stored boxes), without detecting again."""
        with self._lock:
            return self._embed(rgb, detections)

    def _embed(self, rgb: np.ndarray, found: Sequence[Detection]) -> list[Face]:
        landmarks, vectors = embed_detections(rgb, found, self.aligner, self.embedder)
        return [
            Face(box=d.box, score=d.score, landmarks=marks, embedding=vector)
            for d, marks, vector in zip(found, landmarks, vectors)
        ]
