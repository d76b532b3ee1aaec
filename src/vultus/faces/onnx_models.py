"""Operators' own ONNX face models: an SCRFD-style detector and an ArcFace-style embedder.

Nothing is downloaded: the operator names a local ``.onnx`` file as the detector or the
embedder (``--embedder /models/w600k_r50.onnx``). Its model id is ``onnx-<name>-<hash>``,
where the hash is of the file's bytes, so two different weight files never share an id
and a gallery built with one refuses searches with the other.

What the files must look like:

* **Detector** (SCRFD family): one input of shape (1, 3, H, W), RGB scaled as
  ``(pixel - 127.5) / 128``; for each of the strides 8, 16 and 32, an output of face
  scores (rows x 1, already sigmoid), one of box distances (rows x 4, left, top, right,
  bottom from the anchor centre, in strides) and optionally one of five landmarks
  (rows x 10, offsets from the anchor centre, in strides). Outputs are matched to
  strides by their row counts, so their order in the file does not matter.
* **Embedder** (ArcFace family): one input of shape (N, 3, S, S), RGB scaled as
  ``(pixel - 127.5) / 127.5``, of a face aligned to ArcFace's five reference points; one
  output (N, D). Templates are L2-normalised, so Euclidean distance ranks as cosine does.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ModelFilesMissingError, ModelFormatError
from .base import Box, Detection, ModelSpec, register_aligner, register_file_opener
from .runtime import import_dlib, model_file, onnx_session, session_options

__all__ = [
    "ARCFACE_REFERENCE",
    "ArcFaceAligner",
    "OnnxArcFaceEmbedder",
    "OnnxScrfdDetector",
    "decode_scrfd",
    "open_onnx",
    "session_options",
    "similarity_transform",
]

#: Where ArcFace's five points (eye centres, nose tip, mouth corners, image-left first)
#: lie in its 112 x 112 training crops: the layout its embedders expect.
ARCFACE_REFERENCE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: Operating points for an ArcFace-class model before calibration: cosine similarity 0.35
#: for search and 0.30 for rights requests, as Euclidean distances of unit vectors
#: (d = sqrt(2 - 2 cos)). `vultus calibrate` replaces them with measured ones.
ARCFACE_MATCH_DISTANCE = math.sqrt(2 - 2 * 0.35)
ARCFACE_RIGHTS_DISTANCE = math.sqrt(2 - 2 * 0.30)

_STRIDES = (8, 16, 32)


def open_onnx(kind: str, name: str) -> Any:
    """A detector or embedder for the ONNX file at ``name`` (nothing loads until first use)."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelFilesMissingError(
            f"The ONNX {kind} file {path} does not exist. Give the path of the .onnx file you "
            "were supplied (Vultus never downloads model weights)."
        )
    path = path.resolve()
    return OnnxScrfdDetector(path) if kind == "detector" else OnnxArcFaceEmbedder(path)


class _Session:
    """One onnxruntime session for one file, created on first use, once across threads."""

    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind
        self._session: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._load()
        return self._session

    def _load(self) -> Any:
        try:
            import onnxruntime  # noqa: F401 - a clear error when it is missing, before the file is read
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ModelFilesMissingError("onnxruntime is not installed: pip install onnxruntime") from exc
        try:
            session = onnx_session(self.path)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelFormatError(
                f"{self.path} cannot be loaded as an ONNX {self.kind}: {str(exc).splitlines()[0]}. Give the "
                f"path of the complete .onnx file you were supplied (an SCRFD-style detector or an "
                f"ArcFace-style embedder)."
            ) from None
        if len(session.get_inputs()) != 1:
            raise ModelFormatError(
                f"{self.path} has {len(session.get_inputs())} inputs; an ONNX {self.kind} must take "
                "one image tensor."
            )
        return session


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_id(path: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:32] or "model"
    return f"onnx-{slug}-{_file_hash(path)[:12]}"


def _dims(shape: Sequence[Any]) -> list[int | None]:
    """A tensor shape with symbolic (dynamic) dimensions as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


# -- embedder ------------------------------------------------------------------------------


class OnnxArcFaceEmbedder:
    """An ArcFace-style ONNX embedder: aligned S x S RGB faces in, L2-normalised templates out."""

    aligner = "arcface-5pt"
    #: Faces per onnxruntime call: large enough to use the cores, small enough for memory.
    batch_size = 32
    #: An onnxruntime session runs calls from several threads at once.
    thread_safe = True

    def __init__(self, path: Path):
        self.path = Path(path)
        self._session = _Session(self.path, "embedder")
        self._spec: ModelSpec | None = None

    @property
    def spec(self) -> ModelSpec:
        """The model's id, input size and template length, read from the file on first use."""
        if self._spec is None:
            session = self._session.get()
            shape = _dims(session.get_inputs()[0].shape)
            if len(shape) != 4 or shape[1] not in (3, None) or shape[2] != shape[3]:
                raise ModelFormatError(
                    f"{self.path}: input shape {session.get_inputs()[0].shape} is not an embedder's "
                    "(batch, 3, size, size) face image."
                )
            outputs = session.get_outputs()
            out = _dims(outputs[0].shape)
            if len(out) != 2 or out[1] is None:
                raise ModelFormatError(
                    f"{self.path}: output shape {outputs[0].shape} is not (batch, dimensions); "
                    "an embedder gives one vector per face."
                )
            self._spec = ModelSpec(
                model_id=_model_id(self.path),
                path=str(self.path),
                input_size=shape[2] or 112,
                dim=out[1],
                licence="supplied by the operator; see the model's own licence",
                match_distance=ARCFACE_MATCH_DISTANCE,
                rights_distance=ARCFACE_RIGHTS_DISTANCE,
            )
        return self._spec

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        spec = self.spec
        if len(chips) == 0:
            return np.zeros((0, spec.dim), dtype=np.float32)
        session = self._session.get()
        name = session.get_inputs()[0].name
        fixed_batch = _dims(session.get_inputs()[0].shape)[0]
        step = fixed_batch or self.batch_size
        vectors = []
        for start in range(0, len(chips), step):
            part = np.stack([np.asarray(c, dtype=np.float32) for c in chips[start : start + step]])
            blob = ((part - 127.5) / 127.5).transpose(0, 3, 1, 2)
            count = len(blob)
            if fixed_batch and count < fixed_batch:  # a file exported with batch 1 (or n)
                blob = np.concatenate([blob, np.zeros((fixed_batch - count, *blob.shape[1:]), np.float32)])
            out = np.asarray(session.run(None, {name: np.ascontiguousarray(blob, dtype=np.float32)})[0])
            vectors.append(out[:count])
        result = np.concatenate(vectors).astype(np.float32)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return result / np.maximum(norms, 1e-12)


# -- alignment -----------------------------------------------------------------------------


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 rotation + uniform scale + translation that best maps ``src`` onto ``dst``.

    Least squares over the point pairs (x' = a x - b y + tx, y' = b x + a y + ty).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    rows = np.zeros((2 * len(src), 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def _warp(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` chip that ``matrix`` (image to chip) cuts from ``rgb``."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]  # PIL asks, for each chip pixel, where it comes from
    chip = Image.fromarray(rgb).transform(
        (size, size), Image.Transform.AFFINE, data=tuple(inverse.reshape(-1)), resample=Image.BILINEAR
    )
    return np.ascontiguousarray(np.asarray(chip), dtype=np.uint8)


class ArcFaceAligner:
    """Cuts chips with five points on ArcFace's reference layout.

    The points come from the detector where it finds them (SCRFD does); otherwise, as
    for HOG and CNN boxes or a stored face being re-embedded, from dlib's 68-point
    landmark model (the eye centres, the nose tip and the mouth corners).
    """

    name = "arcface-5pt"

    def __init__(self) -> None:
        self._predictor: Any = None
        self._lock = threading.Lock()

    def align(
        self, rgb: np.ndarray, detections: Sequence[Detection], *, size: int
    ) -> tuple[list[tuple[tuple[float, float], ...]], list[np.ndarray]]:
        landmarks = []
        chips = []
        reference = ARCFACE_REFERENCE * (size / 112.0)
        for det in detections:
            points = det.landmarks if det.landmarks is not None and len(det.landmarks) == 5 else None
            if points is None:
                points = self._five_points(rgb, det.box)
            landmarks.append(tuple((float(x), float(y)) for x, y in points))
            chips.append(_warp(rgb, similarity_transform(np.asarray(points), reference), size))
        return landmarks, chips

    def _five_points(self, rgb: np.ndarray, box: Box) -> tuple[tuple[float, float], ...]:
        dlib = import_dlib()
        with self._lock:
            if self._predictor is None:
                self._predictor = dlib.shape_predictor(model_file("shape_predictor_68_face_landmarks.dat"))
        shape = self._predictor(rgb, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
        parts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        # 68-point layout: 36-41 image-left eye, 42-47 image-right eye, 30 nose tip, 48/54 mouth corners.
        five = [parts[36:42].mean(axis=0), parts[42:48].mean(axis=0), parts[30], parts[48], parts[54]]
        return tuple((float(x), float(y)) for x, y in five)


register_aligner("arcface-5pt", ArcFaceAligner)


# -- detector ------------------------------------------------------------------------------


class OnnxScrfdDetector:
    """An SCRFD-style ONNX detector: scores, boxes and five landmarks at strides 8, 16, 32."""

    #: Input side for files whose input size is dynamic; the photo is letterboxed into it.
    default_input = 640
    default_size = 640
    score_threshold = 0.5
    nms_iou = 0.4

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = str(self.path)
        self._session = _Session(self.path, "detector")

    def _input_size(self, session: Any) -> tuple[int, int]:
        """The network's input height and width, after checking the file is a detector's."""
        if len(session.get_outputs()) not in (6, 9):
            raise ModelFormatError(
                f"{self.path} has {len(session.get_outputs())} output(s), so it is not a detector's: an "
                "SCRFD-style detector has scores and boxes (and landmarks) for strides 8, 16 and 32, "
                "6 or 9 outputs. Is it an embedder given as the detector?"
            )
        shape = _dims(session.get_inputs()[0].shape)
        if len(shape) != 4 or shape[1] not in (3, None):
            raise ModelFormatError(
                f"{self.path}: input shape {session.get_inputs()[0].shape} is not a detector's "
                "(1, 3, height, width) image."
            )
        height, width = shape[2] or self.default_input, shape[3] or self.default_input
        if height % 32 or width % 32:
            raise ModelFormatError(f"{self.path}: input {height}x{width} is not a multiple of stride 32.")
        return height, width

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        session = self._session.get()
        height, width = self._input_size(session)
        scale = min(height / rgb.shape[0], width / rgb.shape[1])
        fitted = Image.fromarray(rgb).resize(
            (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))), Image.BILINEAR
        )
        canvas = np.zeros((height, width, 3), dtype=np.float32)
        canvas[: fitted.height, : fitted.width] = np.asarray(fitted, dtype=np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(blob)})
        boxes, scores, points = decode_scrfd(
            outputs, height, width, score_threshold=self.score_threshold, iou=self.nms_iou, source=self.path
        )
        found = []
        for n in range(len(scores)):
            left, top, right, bottom = boxes[n] / scale
            box = Box(math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
            box = box.clipped(rgb.shape[1], rgb.shape[0])
            if box.width <= 0 or box.height <= 0:
                continue
            marks = None if points is None else tuple((float(x), float(y)) for x, y in points[n] / scale)
            found.append(Detection(box, float(scores[n]), marks))
        return found


def decode_scrfd(
    outputs: Sequence[np.ndarray],
    height: int,
    width: int,
    *,
    score_threshold: float,
    iou: float,
    source: object = "the detector",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Boxes (n, 4), scores (n,) and landmarks (n, 5, 2) or None from SCRFD's raw outputs.

    Coordinates are in the (height x width) network input. Outputs are told apart by
    their width (1 scores, 4 boxes, 10 landmarks) and matched to strides by their row
    counts; non-maximum suppression at ``iou`` keeps the best of overlapping boxes.
    """
    groups: dict[int, list[np.ndarray]] = {1: [], 4: [], 10: []}
    for out in outputs:
        arr = np.asarray(out, dtype=np.float32)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2 or arr.shape[1] not in groups:
            raise ModelFormatError(
                f"{source}: an output of shape {tuple(np.shape(out))} is not an SCRFD score (n, 1), "
                "box (n, 4) or landmark (n, 10) map."
            )
        groups[arr.shape[1]].append(arr)
    if len(groups[1]) != 3 or len(groups[4]) != 3 or len(groups[10]) not in (0, 3):
        raise ModelFormatError(
            f"{source}: expected scores and boxes (and optionally landmarks) for strides 8, 16 and 32, "
            f"found {len(groups[1])} score, {len(groups[4])} box and {len(groups[10])} landmark outputs."
        )
    by_stride: dict[int, dict[int, np.ndarray]] = {s: {} for s in _STRIDES}
    for width_of, arrays in groups.items():
        for stride, arr in zip(_STRIDES, sorted(arrays, key=lambda a: -len(a))):
            by_stride[stride][width_of] = arr
    all_boxes, all_scores, all_points = [], [], []
    for stride, parts in by_stride.items():
        rows_y, rows_x = height // stride, width // stride
        cells = rows_y * rows_x
        scores = parts[1][:, 0]
        anchors, rest = divmod(len(scores), cells)
        if anchors < 1 or rest or any(len(a) != len(scores) for a in parts.values()):
            raise ModelFormatError(
                f"{source}: outputs with {len(scores)} rows do not fit stride {stride} of a "
                f"{height}x{width} input ({cells} cells)."
            )
        ys, xs = np.mgrid[0:rows_y, 0:rows_x]
        centres = np.repeat(np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride, anchors, axis=0).astype(np.float32)
        keep = scores >= score_threshold
        if not keep.any():
            continue
        c = centres[keep]
        d = parts[4][keep] * stride
        all_boxes.append(np.column_stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]]))
        all_scores.append(scores[keep])
        if 10 in parts:
            offsets = parts[10][keep].reshape(-1, 5, 2) * stride
            all_points.append(c[:, None, :] + offsets)
    has_points = bool(groups[10])
    if not all_scores:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), (np.zeros((0, 5, 2), np.float32) if has_points else None)
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores)
    points = np.concatenate(all_points) if has_points else None
    order = _nms(boxes, scores, iou)
    return boxes[order], scores[order], (points[order] if points is not None else None)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept = []
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(best)
        left = np.maximum(boxes[best, 0], boxes[rest, 0])
        top = np.maximum(boxes[best, 1], boxes[rest, 1])
        right = np.minimum(boxes[best, 2], boxes[rest, 2])
        bottom = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(kept, dtype=np.int64)


# onnxruntime is imported only when an ONNX file is named.
register_file_opener(".onnx", open_onnx)
