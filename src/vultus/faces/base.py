"""The face-model seams: what a detector, an aligner and an embedder promise, and their registry.

A backend is a class that satisfies one of the protocols below and registers a factory
under a name (``register_detector("hog", HogDetector)``). Built-in backends register the
same way a third-party one would (the ``vultus.faces`` package imports them; this
registry imports none). Factories must not load weights: models load lazily on
first use, so that creating one is cheap and importing Vultus loads nothing.

A name that is a path ending in ``.onnx`` is an operator's own model file, run with
onnxruntime (see :mod:`vultus.faces.onnx_models`): an SCRFD-style detector or an
ArcFace-style embedder, registered under a model id that includes the file's hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import UnknownModelError

__all__ = [
    "Box",
    "Detection",
    "Face",
    "ModelSpec",
    "Detector",
    "Aligner",
    "Embedder",
    "register_detector",
    "register_aligner",
    "register_embedder",
    "register_file_opener",
    "create_detector",
    "create_aligner",
    "create_embedder",
    "detector_names",
    "embedder_names",
]


@dataclass(frozen=True)
class Box:
    """A face rectangle in pixel coordinates of the upright original image (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def scaled(self, factor: float) -> "Box":
        """The same box in an image scaled by ``1 / factor`` (``factor`` maps back to original)."""
        return Box(
            round(self.left * factor),
            round(self.top * factor),
            round(self.right * factor),
            round(self.bottom * factor),
        )

    def clipped(self, width: int, height: int) -> "Box":
        """The box limited to an image of the given size."""
        return Box(
            max(0, self.left), max(0, self.top), min(width, self.right), min(height, self.bottom)
        )

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class Detection:
    """One face found by a detector: its box, the detector's confidence score and, for
    detectors that find them, five landmarks (eye centres, nose tip, mouth corners)."""

    box: Box
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    def scaled(self, factor: float, width: int, height: int) -> "Detection":
        """The detection in an image scaled by ``1 / factor``, clipped to ``width`` x ``height``."""
        marks = None
        if self.landmarks is not None:
            marks = tuple((x * factor, y * factor) for x, y in self.landmarks)
        return Detection(self.box.scaled(factor).clipped(width, height), self.score, marks)


@dataclass(frozen=True)
class Face:
    """A detected, aligned and embedded face ready to be stored or searched."""

    box: Box
    score: float
    landmarks: tuple[tuple[float, float], ...]
    embedding: np.ndarray


@dataclass(frozen=True)
class ModelSpec:
    """A model described as data: where its weights are and how its output is read."""

    model_id: str
    path: str
    input_size: int
    dim: int
    licence: str
    #: Distance at which two faces are taken to be the same person (dlib: 0.6).
    match_distance: float
    #: Distance at which rights requests match a person: deliberately more inclusive than
    #: search, so that access and erasure miss less (dlib: 0.65).
    rights_distance: float

    def similarity(self, distance):  # noqa: ANN001,ANN201 - a float, or an array of them
        """Similarity shown to people: ``1 - distance / 2``, clipped to [0, 1], higher is closer.

        A monotone map of the model's Euclidean distance, so ranking is unchanged; it is
        not a probability. With dlib, distance 0.6 (the usual operating point) is 0.70.
        Takes a float (and returns one) or a numpy array (element-wise).
        """
        result = np.clip(1.0 - np.asarray(distance, dtype=np.float64) / 2.0, 0.0, 1.0)
        return float(result) if result.ndim == 0 else result

    def distance(self, similarity: float) -> float:
        """The distance that :meth:`similarity` maps to ``similarity``."""
        return 2.0 * (1.0 - similarity)

    @property
    def default_threshold(self) -> float:
        """The similarity at the model's usual operating point."""
        return self.similarity(self.match_distance)

    @property
    def default_rights_threshold(self) -> float:
        """The similarity at which rights requests match a person, unless set."""
        return self.similarity(self.rights_distance)


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB image (height x width x 3, uint8)."""

    name: str
    #: Long side (px) that images are best scaled to for this detector: its cost/recall balance.
    default_size: int

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Return faces in ``rgb``'s own coordinates, best first."""
        ...


@runtime_checkable
class Aligner(Protocol):
    """Locates landmarks and cuts out normalised face chips for an embedder."""

    name: str

    def align(
        self, rgb: np.ndarray, detections: Sequence[Detection], *, size: int
    ) -> tuple[list[tuple[tuple[float, float], ...]], list[np.ndarray]]:
        """Return the landmarks and a ``size`` x ``size`` RGB chip for each detection.

        An aligner may use the detector's own landmarks where it gives them; it must
        work from the box alone otherwise (stored faces are re-aligned from their box).
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    """Maps a batch of aligned face chips to fixed-length templates."""

    spec: ModelSpec
    aligner: str

    @property
    def model_id(self) -> str: ...

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Return a float32 array of shape (len(chips), spec.dim)."""
        ...


_DETECTORS: dict[str, Callable[[], Detector]] = {}
_ALIGNERS: dict[str, Callable[[], Aligner]] = {}
_EMBEDDERS: dict[str, Callable[[], Embedder]] = {}


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    """Make a detector available under ``name``."""
    _DETECTORS[name] = factory


def register_aligner(name: str, factory: Callable[[], Aligner]) -> None:
    """Make an aligner available under ``name``."""
    _ALIGNERS[name] = factory


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make an embedder available under ``name``."""
    _EMBEDDERS[name] = factory


#: Openers of model files by the end of their name (``.onnx``, registered by
#: vultus.faces.onnx_models): ``opener(kind, path)`` gives a detector or an embedder.
_FILE_OPENERS: dict[str, Callable[[str, str], object]] = {}


def register_file_opener(suffix: str, opener: Callable[[str, str], object]) -> None:
    """Open detectors and embedders named by a path ending in ``suffix`` with ``opener(kind, path)``."""
    _FILE_OPENERS[suffix.lower()] = opener


def _create(kind: str, registry: dict[str, Callable[[], object]], name: str) -> object:
    if kind in ("detector", "embedder"):
        for suffix, opener in _FILE_OPENERS.items():
            if name.lower().endswith(suffix):
                return opener(kind, name)
    try:
        factory = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        also = " or the path of an ONNX file (ending in .onnx)" if kind in ("detector", "embedder") else ""
        raise UnknownModelError(f"No {kind} is named {name!r}; choose one of: {known}{also}.") from None
    return factory()


def create_detector(name: str) -> Detector:
    """Create the detector registered under ``name`` (weights load on first use)."""
    return _create("detector", _DETECTORS, name)  # type: ignore[return-value]


def create_aligner(name: str) -> Aligner:
    """Create the aligner registered under ``name``."""
    return _create("aligner", _ALIGNERS, name)  # type: ignore[return-value]


def create_embedder(name: str) -> Embedder:
    """Create the embedder registered under ``name``."""
    return _create("embedder", _EMBEDDERS, name)  # type: ignore[return-value]


def detector_names() -> list[str]:
    """Names of every registered detector."""
    return sorted(_DETECTORS)


def embedder_names() -> list[str]:
    """Names of every registered embedder."""
    return sorted(_EMBEDDERS)
