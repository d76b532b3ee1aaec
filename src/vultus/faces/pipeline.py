"""Detect, align and embed every face in an image, in the image's own coordinates."""

from __future__ import annotations

import math
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, Union

import numpy as np
from PIL import Image

from .base import Aligner, Box, Detection, Detector, Embedder, Face, create_aligner, create_detector, create_embedder
from .scale import MIN_FACE_PIXELS, DetectionPlan, merge_pieces, plan_detection

__all__ = ["FaceAnalyzer", "Picture", "QualityGate", "embed_detections"]


class Picture(Protocol):
    """A photo whose pixels may be decoded in two steps (see ``vultus.media.PhotoPixels``)."""

    width: int
    height: int
    #: A smaller copy of the whole photo, at least as large as its detection copy, or None.
    reduced: np.ndarray | None

    @property
    def rgb(self) -> np.ndarray:
        """The photo at full resolution (may be decoded when first asked for)."""
        ...


class _Pixels:
    """An array already decoded, as a :class:`Picture`."""

    reduced = None

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb
        self.height, self.width = rgb.shape[:2]


#: What the analyzer's methods take: an RGB array, or a picture decoded as needed.
PhotoInput = Union[np.ndarray, Picture]


def _picture(image: "PhotoInput") -> Picture:
    return _Pixels(image) if isinstance(image, np.ndarray) else image


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
    if size[0] >= width:
        return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    if factor_x == 1 and factor_y == 1:
        return _banded_resize(rgb, size)
    step = max(1, _STRIP_ROWS // factor_y) * factor_y
    parts = [np.asarray(Image.fromarray(rgb[top : top + step]).reduce((factor_x, factor_y)))
             for top in range(0, height, step)]
    reduced = Image.fromarray(np.concatenate(parts) if len(parts) > 1 else parts[0])
    return np.asarray(reduced.resize(size, Image.BILINEAR, box=(0, 0, width / factor_x, height / factor_y)))


def _banded_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bilinear shrink of ``rgb`` to ``size`` (by less than 2), made band by band of rows.

    Each band of output rows is resampled from just the input rows its filter reaches (a
    shrink by r reaches r rows either side), with ``box`` placing it exactly where it lies in
    the whole image: the same pixels, with no full-size 4-byte copy.
    """
    height, width = rgb.shape[:2]
    ratio = height / size[1]
    reach = math.ceil(ratio) + 2
    band = max(1, int(_STRIP_ROWS / ratio))
    out = np.empty((size[1], size[0], 3), dtype=np.uint8)
    for first in range(0, size[1], band):
        last = min(size[1], first + band)
        top, bottom = max(0, math.floor(first * ratio) - reach), min(height, math.ceil(last * ratio) + reach)
        strip = Image.fromarray(rgb[top:bottom])
        box = (0, first * ratio - top, width, last * ratio - top)
        out[first:last] = np.asarray(strip.resize((size[0], last - first), Image.BILINEAR, box=box))
    return out


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

    Detection runs on a copy scaled so that faces of ``min_face`` pixels (the quality
    gate's minimum) come out at the detector's window, in tiles where the detector needs
    them (:mod:`vultus.faces.scale`); ``detect_size`` instead scales every photo's long side
    to that size. Landmarks and chips are taken from the original, so boxes and templates
    are in original coordinates and at full quality.

    Up to ``lanes`` images are analysed at once, by threads (the server's searches): dlib's
    detectors and aligner keep working buffers, so each lane has its own, made the first
    time that many images are in flight at once. The embedder is shared, serialised unless
    it says it is ``thread_safe`` (an onnxruntime session is). The models' native code runs
    without the GIL, so lanes use as many cores.
    """

    def __init__(self, detector: Detector, aligner: Aligner, embedder: Embedder, *,
                 detect_size: int | None = None, min_face: int = QualityGate.min_face_size, lanes: int = 1):
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.detect_size = detect_size
        self.min_face = min_face
        self.lanes = max(1, lanes)
        self._idle: list[tuple[Detector, Aligner]] = [(detector, aligner)]
        self._made = 1
        self._free = threading.Condition()
        self._embedding = threading.Lock()

    @classmethod
    def from_names(cls, detector: str, embedder: str, *, detect_size: int | None = None,
                   min_face: int = QualityGate.min_face_size, lanes: int = 1) -> "FaceAnalyzer":
        """Build an analyzer from registered model names (weights load on first use)."""
        emb = create_embedder(embedder)
        return cls(create_detector(detector), create_aligner(emb.aligner), emb, detect_size=detect_size,
                   min_face=min_face, lanes=lanes)

    @contextmanager
    def _lane(self) -> Iterator[tuple[Detector, Aligner]]:
        """A detector and aligner no other thread is using, for one image."""
        with self._free:
            while not self._idle and self._made >= self.lanes:
                self._free.wait()
            lane = self._idle.pop() if self._idle else None
            if lane is None:
                self._made += 1
        if lane is None:
            try:
                lane = (create_detector(self.detector.name), create_aligner(self.aligner.name))
            except BaseException:
                with self._free:
                    self._made -= 1
                    self._free.notify()
                raise
        try:
            yield lane
        finally:
            with self._free:
                self._idle.append(lane)
                self._free.notify()

    @property
    def model_id(self) -> str:
        """The embedder's model id, recorded with every template it makes."""
        return self.embedder.model_id

    def plan(self, width: int, height: int, *, max_upscale: float | None = None) -> DetectionPlan:
        """How a ``width`` x ``height`` photo is searched for faces (scale, tiles, smallest face);
        ``max_upscale`` caps how much a small picture is blown up (default: the detector's)."""
        return plan_detection(width, height, self.detector, min_face=self.min_face, fixed_size=self.detect_size,
                              max_upscale=max_upscale)

    def detect(self, rgb: PhotoInput) -> list[Detection]:
        """Faces in the photo's own coordinates, largest first."""
        with self._lane() as (detector, _):
            return self._detect(detector, _picture(rgb))

    def _detect(self, detector: Detector, picture: Picture, max_upscale: float | None = None) -> list[Detection]:
        width, height = picture.width, picture.height
        plan = self.plan(width, height, max_upscale=max_upscale)
        # The detection copy comes from the reduced decode when there is one (never smaller
        # than the copy), so the full-resolution pixels are not needed to find the faces.
        source = picture.reduced if picture.reduced is not None else picture.rgb
        same = source.shape[1] == plan.size[0] and source.shape[0] == plan.size[1]
        work = source if same else scaled_for_detection(source, plan.size)
        pieces = [self._detect_piece(detector, work, tile, plan.scale, width, height) for tile in plan.tiles]
        if plan.coarse is not None:
            whole = (max(1, round(width * plan.coarse)), max(1, round(height * plan.coarse)))
            # From the detection copy, not the original: a smaller image to reduce.
            pieces.append(self._detect_piece(detector, scaled_for_detection(work, whole), (0, 0, *whole),
                                             plan.coarse, width, height))
        found = [d for d in (pieces[0] if len(pieces) == 1 else merge_pieces(pieces))
                 if min(d.box.width, d.box.height) >= MIN_FACE_PIXELS]
        # Largest first (a probe's face 1 is its main subject), except that a detector with a
        # calibrated confidence puts its sure faces before the doubtful ones: YuNet's large
        # false positives (a chest, a blurred head behind) would otherwise be face 1.
        sure = getattr(detector, "sure_score", None)
        found.sort(key=lambda d: (sure is not None and d.score < sure, -d.box.area, -d.score))
        return found

    def _detect_piece(self, detector: Detector, work: np.ndarray, tile: tuple[int, int, int, int], scale: float,
                      width: int, height: int) -> list[Detection]:
        """The detector's faces in one tile of ``work`` (a copy at ``scale``), in original coordinates."""
        left, top, right, bottom = tile
        whole = (left, top) == (0, 0) and (right, bottom) == (work.shape[1], work.shape[0])
        piece = work if whole else np.ascontiguousarray(work[top:bottom, left:right])
        found = []
        for det in detector.detect(piece):
            box = Box(round((det.box.left + left) / scale), round((det.box.top + top) / scale),
                      round((det.box.right + left) / scale), round((det.box.bottom + top) / scale))
            marks = None if det.landmarks is None else tuple(((x + left) / scale, (y + top) / scale)
                                                             for x, y in det.landmarks)
            found.append(Detection(box.clipped(width, height), det.score, marks))
        return found

    def analyze(self, rgb: PhotoInput) -> list[Face]:
        """Every face in the photo with its box, landmarks and template, largest first."""
        picture = _picture(rgb)
        with self._lane() as (detector, aligner):
            return self._embed(aligner, picture, self._detect(detector, picture))

    def analyze_gated(
        self, rgb: PhotoInput, gate: QualityGate, *, embed_rejected: bool = False, max_upscale: float | None = None
    ) -> tuple[list[Face], Counter, list[Face]]:
        """The faces in ``rgb`` that pass ``gate``, a count of the others by reason, and those others.

        Faces that fail are embedded only with ``embed_rejected`` (to screen them against
        suppression entries); otherwise their templates are never computed and the third
        list holds them with empty templates.
        """
        picture = _picture(rgb)
        with self._lane() as (detector, aligner):
            passed, failed, rejected = [], [], Counter()
            for det in self._detect(detector, picture, max_upscale):
                reason = gate.reason(det)
                if reason is None:
                    passed.append(det)
                else:
                    failed.append(det)
                    rejected[reason] += 1
            if embed_rejected:
                others = self._embed(aligner, picture, failed)
            else:
                others = [Face(d.box, d.score, (), np.zeros(0, np.float32)) for d in failed]
            return self._embed(aligner, picture, passed), rejected, others

    def reembed(self, rgb: PhotoInput, detections: Sequence[Detection]) -> list[Face]:
        """Templates for faces already located (stored boxes), without detecting again."""
        with self._lane() as (_, aligner):
            return self._embed(aligner, _picture(rgb), detections)

    def _embed(self, aligner: Aligner, picture: Picture, found: Sequence[Detection]) -> list[Face]:
        if not found:
            return []  # the full-resolution pixels are not decoded for a photo with no face
        landmarks, chips = aligner.align(picture.rgb, found, size=self.embedder.spec.input_size)
        if getattr(self.embedder, "thread_safe", False):
            vectors = self.embedder.embed(chips)
        else:
            with self._embedding:
                vectors = self.embedder.embed(chips)
        return [
            Face(box=d.box, score=d.score, landmarks=marks, embedding=vector)
            for d, marks, vector in zip(found, landmarks, vectors)
        ]
