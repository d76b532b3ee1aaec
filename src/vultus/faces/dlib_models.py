"""dlib's face models: HOG and CNN (MMOD) detectors, 5-point alignment, the ResNet embedder.

The weights come from the PyPI package ``face_recognition_models``; nothing is downloaded.
Each class loads its weights once, on first use, so creating one costs nothing.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..config import DLIB_BACKENDS, environment_value
from ..errors import ModelError, SettingsError, UnknownModelError
from .base import (
    Box,
    Detection,
    ModelSpec,
    register_aligner,
    register_detector,
    register_embedder,
)
from .runtime import import_dlib, model_file, onnx_session

__all__ = [
    "HogDetector",
    "CnnDetector",
    "DlibFivePointAligner",
    "DlibResNetEmbedder",
    "model_file",
    "RESNET_SPEC",
]

RESNET_SPEC = ModelSpec(
    model_id="dlib-resnet-v1",
    path="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    input_size=150,
    dim=128,
    licence="Boost Software License 1.0 (dlib); weights CC0 (Davis King)",
    match_distance=0.6,
    rights_distance=0.65,
)


class _Lazy:
    """Holds one lazily built model object, built once even across threads."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def get(self, build: Any) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = build()
        return self._model


class HogDetector:
    """dlib's frontal-face HOG + linear SVM detector: fast on CPU, frontal faces >= ~80 px."""

    name = "hog"
    #: HOG's window: it finds faces of 80 px and larger, so photos are searched at 80 / the
    #: minimum face size, up to a long side of ``max_size`` (its cost grows with the pixels).
    window = 80
    max_size = 1600
    #: Used only where a fixed detection size is asked for (VULTUS_DETECT_SIZE).
    default_size = 1600

    def __init__(self) -> None:
        self._lazy = _Lazy()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        detector = self._lazy.get(_frontal_detector)
        # On a colour image dlib computes gradients for each channel and keeps the strongest;
        # on grey it computes one. Measured on the shared photos: the same faces, 10% faster.
        grey = rgb if rgb.ndim == 2 else np.asarray(Image.fromarray(rgb).convert("L"))
        rects, scores, _ = detector.run(grey, 0, 0.0)
        found = [
            Detection(Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
            for r, s in zip(rects, scores)
        ]
        return sorted(found, key=lambda d: -d.score)


def _frontal_detector() -> Any:
    """dlib's frontal HOG detector, from a cached copy of it when there is one.

    dlib builds it from a text form compiled into the library, which takes ~0.4 s, a fifth
    of a cold search; loading the binary copy it saves takes 2 ms. The copy sits beside the
    converted ResNet in the user cache directory, named by dlib's version, and is rebuilt
    whenever it cannot be read.
    """
    from .dlib_onnx import cache_dir

    dlib = import_dlib()
    path = cache_dir() / f"dlib-frontal-hog-{getattr(dlib, '__version__', 'unknown')}.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:
            pass  # damaged: rebuilt and saved again below
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        detector.save(str(tmp))
        os.replace(tmp, path)  # atomic: another process sees no file or the whole file
    except (OSError, RuntimeError):
        pass  # no cache: the next process builds it again
    return detector


class _ConvertedNetwork:
    """A dlib network run as Vultus's ONNX conversion of it, with dlib itself as the fallback.

    Subclasses give ``_onnx_runner()`` (the converted graph behind a function) and
    ``_reference()`` (dlib's own function, the same interface). ``runtime`` says which one
    is in use after the first call.
    """

    #: What the network is, for the warning when dlib has to run it.
    what = "network"

    def __init__(self, backend: str | None = None) -> None:
        self.backend = _backend(backend)
        self._lazy = _Lazy()
        self._dlib = _Lazy()
        #: Which runtime ran the network (after the first call): "onnx" or "dlib".
        self.runtime: str | None = None

    def _run(self) -> Any:
        """The function that runs the network, built on first use."""
        return self._lazy.get(self._load)

    def _load(self) -> Any:
        if self.backend == "onnx":
            try:
                return self._onnx_runner()
            except (ModelError, ImportError, OSError) as exc:
                warnings.warn(f"Using dlib for the {self.what}: {exc}", RuntimeWarning, stacklevel=4)
        self.runtime = "dlib"
        return self._reference()

    def _onnx_runner(self) -> Any:
        raise NotImplementedError

    def _reference(self) -> Any:
        raise NotImplementedError


class CnnDetector(_ConvertedNetwork):
    """dlib's MMOD CNN detector: finds turned and partly hidden faces that HOG misses.

    By default its network runs as an ONNX graph converted from dlib's own weight file
    (:mod:`vultus.faces.dlib_mmod`), with dlib's image pyramid and decoding reproduced,
    under onnxruntime: the same boxes as dlib's, about 30 times faster on CPU. With
    ``VULTUS_DLIB_BACKEND=dlib``, or when the graph cannot be built, dlib runs it.
    """

    name = "cnn"
    # MMOD's window is 80 px, like HOG's, in a pyramid that starts at the given size: at
    # 1600 px both find faces down to 5% of the long side. (At 800 px the shared group
    # photos lose 14 of their 42 faces.) Sized as HOG is, by its window.
    window = 80
    max_size = 1600
    default_size = 1600
    #: Images narrower than this hold no face the 80 px window could find; dlib itself
    #: fails on them (and aborts the process on some), so they are not passed on.
    min_side = 20
    what = "CNN face detector"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        if min(rgb.shape[:2]) < self.min_side:
            return []
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        found = [
            Detection(Box(left, top, right + 1, bottom + 1), score)
            for (left, top, right, bottom), score in self._run()(rgb)
        ]
        return sorted(found, key=lambda d: -d.score)

    def detect_with_dlib(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """dlib's own boxes ``((left, top, right, bottom), confidence)``, corners inclusive."""
        detector = self._dlib.get(
            lambda: import_dlib().cnn_face_detection_model_v1(model_file("mmod_human_face_detector.dat"))
        )
        return [
            ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
            for d in detector(np.ascontiguousarray(rgb), 0)
        ]

    def _reference(self) -> Any:
        return self.detect_with_dlib

    def _onnx_runner(self) -> Any:
        import onnxruntime  # noqa: F401 - not installed: dlib runs it, before any conversion

        from .dlib_mmod import converted_mmod, decode, tiled_pyramid

        weights = model_file("mmod_human_face_detector.dat")
        net = None

        def convert(use_cache: bool) -> bytes | Path:
            nonlocal net
            net, graph = converted_mmod(weights, use_cache=use_cache)
            return graph

        session = _open_converted(convert)
        self.runtime = "onnx"

        def run(rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
            tiled, levels = tiled_pyramid(rgb, net)
            return decode(session.run(None, {"pyramid": tiled})[0], levels, net)

        return run


def _open_converted(convert: Any) -> Any:
    """An onnxruntime CPU session for ``convert(use_cache)``'s graph (a cached file, or bytes).

    A cached file onnxruntime cannot load is damaged: the graph is converted again.
    """
    graph = convert(True)
    try:
        return onnx_session(graph)
    except Exception:  # noqa: BLE001 - whatever onnxruntime raises for a damaged file
        return onnx_session(convert(False))


def _backend(explicit: str | None) -> str:
    """The runtime for dlib's networks: ``onnx`` (default) or ``dlib`` (``VULTUS_DLIB_BACKEND``)."""
    if not explicit:
        try:
            return environment_value("dlib_backend")
        except SettingsError as exc:
            # To the faces package an unknown runtime is an unknown model, as for a given name.
            raise UnknownModelError(str(exc)) from None
    backend = explicit.lower()
    if backend not in DLIB_BACKENDS:
        raise UnknownModelError(f"VULTUS_DLIB_BACKEND is {backend!r}; use onnx (the default) or dlib.")
    return backend


class DlibFivePointAligner:
    """Eye-corner and nose landmarks (dlib's 5-point model) and dlib's face-chip alignment."""

    name = "dlib-5pt"
    #: Border around the face in a chip, as dlib's ResNet was trained with.
    padding = 0.25

    def __init__(self) -> None:
        self._lazy = _Lazy()

    def align(
        self, rgb: np.ndarray, detections: Sequence[Detection], *, size: int
    ) -> tuple[list[tuple[tuple[float, float], ...]], list[np.ndarray]]:
        # dlib's chips are defined by its own 5 points (eye corners, nose base), so a
        # detector's landmarks, which are other points, are not used here.
        boxes = [d.box for d in detections]
        if not boxes:
            return [], []
        dlib = import_dlib()
        predictor = self._lazy.get(
            lambda: dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
        )
        shapes = dlib.full_object_detections()
        landmarks = []
        for box in boxes:
            shape = predictor(rgb, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
            shapes.append(shape)
            landmarks.append(tuple((float(p.x), float(p.y)) for p in shape.parts()))
        chips = dlib.get_face_chips(rgb, shapes, size=size, padding=self.padding)
        return landmarks, [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]


class DlibResNetEmbedder(_ConvertedNetwork):
    """dlib's ResNet-34-style network: 128-d templates, same person below distance 0.6.

    By default the network runs as an ONNX graph converted from dlib's own weight file
    (:mod:`vultus.faces.dlib_onnx`) under onnxruntime, about 25 times faster on CPU. The
    graph is used only after it has matched dlib's own output within 1e-4, which is why it
    keeps dlib's model id; otherwise, or with ``VULTUS_DLIB_BACKEND=dlib``, dlib runs it.
    """

    spec = RESNET_SPEC
    aligner = "dlib-5pt"
    #: Faces per onnxruntime call.
    batch_size = 32

    what = "face embedder"

    def __init__(self, backend: str | None = None) -> None:
        super().__init__(backend)
        #: The converted graph's largest difference from dlib on its check, when it is used.
        self.conversion_error: float | None = None

    @property
    def thread_safe(self) -> bool:
        """Whether threads may embed at once: under onnxruntime yes, under dlib itself no."""
        return self.runtime == "onnx"

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return self._run()(chips)

    def embed_with_dlib(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Templates computed by dlib itself: the reference the ONNX graph is checked against."""
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        net = self._dlib.get(
            lambda: import_dlib().face_recognition_model_v1(model_file("dlib_face_recognition_resnet_model_v1.dat"))
        )
        # One call for the whole batch: dlib runs the chips through the network together.
        vectors = net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)

    def _reference(self) -> Any:
        return self.embed_with_dlib

    def _onnx_runner(self) -> Any:
        import onnxruntime  # noqa: F401 - not installed: dlib runs it, before any conversion

        from .dlib_onnx import converted_resnet

        weights = model_file("dlib_face_recognition_resnet_model_v1.dat")

        def convert(use_cache: bool) -> bytes | Path:
            graph, self.conversion_error = converted_resnet(weights, self.embed_with_dlib, use_cache=use_cache)
            return graph

        session = _open_converted(convert)
        self.runtime = "onnx"

        def run(chips: Sequence[np.ndarray]) -> np.ndarray:
            batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
            parts = [session.run(None, {"chips": batch[i : i + self.batch_size]})[0]
                     for i in range(0, len(batch), self.batch_size)]
            return np.concatenate(parts).astype(np.float32)

        return run


register_detector("hog", HogDetector)
register_detector("cnn", CnnDetector)
register_aligner("dlib-5pt", DlibFivePointAligner)
register_embedder("dlib-resnet-v1", DlibResNetEmbedder)
