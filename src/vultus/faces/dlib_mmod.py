"""dlib's MMOD CNN face detector as an ONNX graph, with dlib's image pyramid and decoding.

``mmod_human_face_detector.dat`` holds a small fully convolutional network: three
5x5 stride-2 convolutions (16, 32, 32 filters) that bring the image down 8x, three 5x5
convolutions of 45 filters and one 9x9 convolution that scores every position for an
80x80 face window. Each convolution but the last is followed by a batch norm and a ReLU.
dlib runs it once over a *tiled pyramid*: the photo and copies of it scaled down by
5/6 again and again, packed into one large image with zero padding between them, so
that one pass finds faces of every size from 80 px up.

This module does the same in three steps, each mirroring dlib's own arithmetic so that
the boxes and confidences agree with dlib's:

1. :func:`pyramid_layout` and :func:`tiled_pyramid` build the tiled input (dlib's
   ``input_rgb_image_pyramid<pyramid_down<6>>``: channel means subtracted, divided by
   256, each level resized from the one before with corner-aligned bilinear sampling);
2. the ONNX graph (:func:`mmod_to_onnx`, each batch norm folded into its convolution)
   scores every position, under onnxruntime on all cores;
3. :func:`decode` maps each position scoring above zero back to a box in the photo
   and keeps the best of overlapping boxes (dlib's ``loss_mmod`` rules).

:func:`converted_mmod` builds the graph once per weight file and caches it beside the
converted ResNet.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError
from .dlib_onnx import _Graph, _name_at, _Reader, cache_dir

__all__ = [
    "MmodConv",
    "MmodNetwork",
    "read_mmod_network",
    "mmod_to_onnx",
    "pyramid_layout",
    "tiled_pyramid",
    "decode",
    "converted_mmod",
]

_RECORDS = ("loss_mmod_", "input_rgb_image_pyramid", "input_rgb_image_pyramid2", "con_4", "bn_con2", "affine_", "relu_")
#: pyramid_down<6>: each level is 5/6 the size of the one before.
_RATE = 5.0 / 6.0
#: Levels shorter than this are not built (dlib's ``min_height``).
_MIN_LEVEL_HEIGHT = 5


@dataclass(frozen=True)
class MmodConv:
    """One convolution with its batch norm folded in, and whether a ReLU follows it."""

    weights: np.ndarray  # (out, in, rows, cols)
    bias: np.ndarray
    stride: int
    pad: int
    relu: bool


@dataclass(frozen=True)
class MmodNetwork:
    """What the detector needs from the weight file."""

    means: np.ndarray  # red, green, blue
    window: tuple[int, int]  # the face window in the tiled image: width, height
    nms_iou: float  # boxes overlapping a kept one by more than this IoU are dropped...
    nms_covered: float  # ...or covered by more than this fraction
    convs: tuple[MmodConv, ...]
    padding: int = 10  # between pyramid levels
    outer_padding: int = 11  # around the tiled image

    def to_input(self, position: np.ndarray) -> np.ndarray:
        """Output-grid coordinates to the tiled image's: each convolution maps ``p`` to
        ``p * stride - pad + kernel // 2`` (dlib's ``map_output_to_input``)."""
        p = np.asarray(position, dtype=np.float64)
        for conv in reversed(self.convs):
            p = p * conv.stride - conv.pad + conv.weights.shape[-1] // 2
        return p


def read_mmod_network(path: str | Path) -> MmodNetwork:
    """The detector in a dlib MMOD weight file (the training form with batch norms, or affine)."""
    try:
        return _read(path, Path(path).read_bytes())
    except (IndexError, ValueError) as exc:  # records running past the end: a cut-off file
        raise ModelFormatError(
            f"{path} is damaged ({exc}); reinstall it with: pip install --force-reinstall face_recognition_models"
        ) from exc


def _read(path: str | Path, data: bytes) -> MmodNetwork:
    loss: dict | None = None
    means: np.ndarray | None = None
    padding = (10, 11)
    raw: list[tuple[str, object]] = []
    pos, end = 0, len(data) - 8
    while pos < end:
        name = _name_at(data, pos, _RECORDS)
        if name is None:
            pos += 1
            continue
        reader = _Reader(data, pos)
        reader.text()
        if name == "loss_mmod_":
            version = reader.integer()
            if version != 1:
                raise ModelFormatError(f"{path}: MMOD options version {version} is not supported (expected 1).")
            width, height = reader.integer(), reader.integer()
            values = [reader.real() for _ in range(7)]
            # loss per false alarm, per missed target, truth-match IoU, then the
            # non-max suppression test (IoU, covered fraction) and the ignore test.
            loss = {"window": (width, height), "nms_iou": values[3], "nms_covered": values[4]}
        elif name.startswith("input_rgb_image_pyramid"):
            means = np.asarray([reader.real() for _ in range(3)], np.float32)
            if name.endswith("2"):
                padding = (reader.integer(), reader.integer())
        elif name == "con_4":
            params = reader.tensor().reshape(-1)
            n, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
            reader.alias()
            reader.alias()
            if rows != cols or stride_y != stride_x or pad_y != pad_x:
                raise ModelFormatError(f"{path}: only square convolutions are supported.")
            raw.append(("con", (params, n, rows, stride_y, pad_y)))
        elif name == "bn_con2":
            params = reader.tensor().reshape(-1)
            reader.alias()
            reader.alias()
            reader.tensor()  # batch means and inverse deviations: training state
            reader.tensor()
            running_means = reader.tensor().reshape(-1)
            running_variances = reader.tensor().reshape(-1)
            reader.integer()
            reader.integer()
            eps = [reader.real() for _ in range(5)][-1]
            half = len(params) // 2
            # dlib's affine layer made from a batch norm: gamma / sqrt(var + eps), and
            # beta - that * mean.
            scale = params[:half] / np.sqrt(running_variances + eps)
            raw.append(("affine", (scale, params[half:] - scale * running_means)))
        elif name == "affine_":
            params = reader.tensor().reshape(-1)
            reader.alias()
            reader.alias()
            reader.integer()
            half = len(params) // 2
            raw.append(("affine", (params[:half], params[half:])))
        elif name == "relu_":
            raw.append(("relu", None))
        pos = reader.pos
    if loss is None or means is None:
        raise ModelFormatError(f"{path} is not a dlib MMOD detector (no loss_mmod or input pyramid record).")
    return MmodNetwork(means, loss["window"], loss["nms_iou"], loss["nms_covered"], _fold(raw, path),
                       padding[0], padding[1])


def _fold(raw: list[tuple[str, object]], path: str | Path) -> tuple[MmodConv, ...]:
    """Convolutions in running order, each with its affine layer folded in."""
    convs: list[MmodConv] = []
    channels = 3
    i = 0
    while i < len(raw):
        kind, value = raw[i]
        if kind != "con":
            raise ModelFormatError(f"{path}: expected a convolution, found {kind}.")
        params, n, k, stride, pad = value  # type: ignore[misc]
        weights = params[: n * channels * k * k].reshape(n, channels, k, k)
        bias = params[weights.size :]
        if len(bias) != n:
            raise ModelFormatError(f"{path}: a convolution's parameters do not match its shape.")
        i += 1
        if i < len(raw) and raw[i][0] == "affine":
            scale, shift = raw[i][1]  # type: ignore[misc]
            weights = weights * scale[:, None, None, None]
            bias = bias * scale + shift
            i += 1
        relu = i < len(raw) and raw[i][0] == "relu"
        i += relu
        convs.append(MmodConv(weights.astype(np.float32), bias.astype(np.float32), stride, pad, relu))
        channels = n
    if not convs or channels != 1:
        raise ModelFormatError(f"{path}: the network does not end in one score channel.")
    return tuple(convs)


def mmod_to_onnx(net: MmodNetwork):  # noqa: ANN201 - an onnx.ModelProto
    """The scoring network: input ``pyramid`` (1, 3, H, W) float32, output ``scores`` (1, 1, h, w)."""
    from onnx import TensorProto, helper

    g = _Graph()
    x = "pyramid"
    for conv in net.convs:
        out = g.node("Conv", [x, g.const(conv.weights, "w"), g.const(conv.bias, "b")], (0, 0, 0),
                     kernel_shape=list(conv.weights.shape[2:]), strides=[conv.stride] * 2, pads=[conv.pad] * 4)
        x = g.node("Relu", [out], (0, 0, 0)) if conv.relu else out
    g.nodes.append(helper.make_node("Identity", [x], ["scores"]))
    graph = helper.make_graph(
        g.nodes, "dlib_mmod_human_face_detector",
        [helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vultus")
    model.ir_version = 8
    return model


# -- dlib's tiled image pyramid -------------------------------------------------------------


def pyramid_layout(rows: int, cols: int, padding: int = 10, outer_padding: int = 11
                   ) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """Where each pyramid level goes in the tiled image, as dlib lays them out.

    Returns the levels as ``(left, top, right, bottom)`` (inclusive, like dlib's
    rectangles) and the tiled image's rows and columns. The levels run down the left
    column until the rest fit back up the right-hand side, beside the smaller ones.
    """
    sizes = [(cols, rows)]
    nr, nc = rows, cols
    while True:
        nr, nc = math.floor(_RATE * nr), math.floor(_RATE * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_HEIGHT:
            break
        sizes.append((nc, nr))
    width0, height0 = sizes[0]
    total = sum(h + padding for _, h in sizes) - 2 * padding
    height, previous_width = 0, 0
    for w, h in sizes:
        # The first column ends once the next level fits beside the one before it and
        # the column holds at least half of the total height.
        if w <= width0 - previous_width - padding and (height - height0) * 2 >= total - height0:
            break
        height += h + padding
        previous_width = w
    height -= padding
    placed: list[tuple[int, int, int, int]] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        placed.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = placed[0]
    while i < len(sizes):
        w, h = sizes[i]
        right, bottom = outer_padding + width0 - 1, y - 1
        rect = (right - w + 1, bottom - h + 1, right, bottom)
        overlaps = rect[0] <= first[2] and first[0] <= rect[2] and rect[1] <= first[3] and first[1] <= rect[3]
        if overlaps:
            break  # the rest would overlap the full-size photo: dlib drops them
        placed.append(rect)
        y -= h + padding
        i += 1
    return placed, height + 2 * outer_padding, width0 + 2 * outer_padding


def _resize_bilinear(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's ``resize_bilinear`` (corners aligned), in float32 like dlib, for (C, H, W).

    dlib blends each output pixel as ``(1-fy) * ((1-fx) * tl + fx * tr) + fy * (...)``.
    The horizontal blends depend only on the source row and output column, so they are
    computed once per source row and shared by the output rows above and below it: the
    same operations in the same order, so the same floats, with less work.
    """
    src_rows, src_cols = src.shape[1:]
    y_scale = np.float32(src_rows - 1) / np.float32(max(rows - 1, 1))
    x_scale = np.float32(src_cols - 1) / np.float32(max(cols - 1, 1))
    y = np.arange(rows, dtype=np.float32) * y_scale
    x = np.arange(cols, dtype=np.float32) * x_scale
    top = np.floor(y).astype(np.intp)
    left = np.floor(x).astype(np.intp)
    bottom = np.minimum(top + 1, src_rows - 1)
    right = np.minimum(left + 1, src_cols - 1)
    one = np.float32(1)
    fx = x - left.astype(np.float32)
    fy = (y - top.astype(np.float32))[None, :, None]
    used = slice(int(top[0]), int(bottom[-1]) + 1)
    across = np.take(src[:, used], left, axis=2)
    across *= one - fx
    part = np.take(src[:, used], right, axis=2)
    part *= fx
    across += part
    top -= used.start
    bottom -= used.start
    out = np.take(across, top, axis=1)
    out *= one - fy
    part = np.take(across, bottom, axis=1)
    part *= fy
    out += part
    return out


def tiled_pyramid(rgb: np.ndarray, net: MmodNetwork) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The network's input for one RGB photo, (1, 3, H, W) float32, and where each level lies."""
    rows, cols = rgb.shape[:2]
    rects, total_rows, total_cols = pyramid_layout(rows, cols, net.padding, net.outer_padding)
    tiled = np.zeros((3, total_rows, total_cols), np.float32)
    left, top, right, bottom = rects[0]
    first = tiled[:, top : bottom + 1, left : right + 1]
    np.subtract(np.moveaxis(np.asarray(rgb), 2, 0), net.means[:, None, None], out=first, casting="unsafe")
    first *= np.float32(1 / 256)  # a power of two: the same as dlib's division
    for (l0, t0, r0, b0), (l1, t1, r1, b1) in zip(rects, rects[1:]):
        tiled[:, t1 : b1 + 1, l1 : r1 + 1] = _resize_bilinear(
            tiled[:, t0 : b0 + 1, l0 : r0 + 1], b1 - t1 + 1, r1 - l1 + 1
        )
    return tiled[None], rects


# -- from scores to boxes ---------------------------------------------------------------------


def decode(scores: np.ndarray, rects: list[tuple[int, int, int, int]], net: MmodNetwork,
           threshold: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
    """Boxes in the photo, ``((left, top, right, bottom), confidence)`` with dlib's inclusive
    corners, best first, after dlib's non-max suppression.

    Each output position scoring above ``threshold`` stands for a face window centred on
    its place in the tiled image; the level it falls in says how much to scale it back up.
    """
    grid = np.asarray(scores, dtype=np.float32).reshape(scores.shape[-2:])
    rows, cols = np.nonzero(grid > threshold)
    if len(rows) == 0:
        return []
    values = grid[rows, cols].astype(np.float64)
    xs, ys = net.to_input(cols), net.to_input(rows)
    half_w, half_h = (net.window[0] - 1) / 2, (net.window[1] - 1) / 2
    boxes = []
    for x, y, value in zip(xs, ys, values):
        level = _nearest_level(rects, x, y)
        origin_x, origin_y = rects[level][0], rects[level][1]
        corners = [x - half_w - origin_x, y - half_h - origin_y, x + half_w - origin_x, y + half_h - origin_y]
        for _ in range(level):  # pyramid_down<6>::point_up, once per level
            corners = [c * 1.2 + 0.3 for c in corners]
        # dlib rounds halves away from zero (level 0 puts every corner on a half).
        boxes.append((tuple(int(math.copysign(math.floor(abs(c) + 0.5), c)) for c in corners), float(value)))
    boxes.sort(key=lambda item: -item[1])
    kept: list[tuple[tuple[int, int, int, int], float]] = []
    for box, value in boxes:
        if not any(_overlaps(box, other, net.nms_iou, net.nms_covered) for other, _ in kept):
            kept.append((box, value))
    return kept


def _nearest_level(rects: list[tuple[int, int, int, int]], x: float, y: float) -> int:
    """The level containing (x, y), else the nearest one (dlib's ``nearest_rect``)."""
    best, best_distance = 0, math.inf
    for i, (left, top, right, bottom) in enumerate(rects):
        if left <= x <= right and top <= y <= bottom:
            return i
        distance = math.hypot(x - min(max(x, left), right), y - min(max(y, top), bottom))
        if distance < best_distance:
            best, best_distance = i, distance
    return best


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float, covered: float) -> bool:
    """dlib's ``test_box_overlap`` on inclusive rectangles."""
    inner_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inner_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inner_w <= 0 or inner_h <= 0:
        return False
    inner = inner_w * inner_h
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / (area_a + area_b - inner) > iou or inner / area_a > covered or inner / area_b > covered


# -- the converted model, built once and cached ------------------------------------------------

#: Bump when the conversion changes, so that cached graphs from older code are rebuilt.
CONVERTER_VERSION = 1


def converted_mmod(dat_path: str | Path, *, use_cache: bool = True) -> tuple[MmodNetwork, bytes | Path]:
    """The detector read from ``dat_path`` and its ONNX graph (a cached file, or bytes).

    The graph is cached in :func:`cache_dir` under the weights' hash and rebuilt when
    ``use_cache`` is False (a damaged file). Reading the weight file itself takes a few
    milliseconds, so only the graph is cached.
    """
    net = read_mmod_network(dat_path)
    digest = hashlib.sha256(Path(dat_path).read_bytes()).hexdigest()[:16]
    target = cache_dir() / f"dlib-mmod-{digest}-c{CONVERTER_VERSION}.onnx"
    if use_cache and target.is_file():
        return net, target
    model = mmod_to_onnx(net).SerializeToString()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        tmp.write_bytes(model)
        os.replace(tmp, target)  # atomic: a concurrent process sees no file or the whole file
    except OSError:
        return net, model
    return net, target
