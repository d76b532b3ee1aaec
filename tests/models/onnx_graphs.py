"""Small ONNX files with the inputs and outputs of real face models, built for the tests.

Real SCRFD and ArcFace weights cannot be downloaded here, so the tests build stand-ins
with the same interfaces: a detector whose outputs are fixed maps (so the tests know
exactly which faces it reports and where), and an embedder that is a fixed random
projection of the pooled, aligned face (deterministic, 512-d, like ArcFace's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by any onnxruntime of the last few years
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_embedder(path: Path, *, dim: int = 512, size: int = 112, seed: int = 7) -> Path:
    """An ArcFace-shaped embedder: (N, 3, size, size) -> (N, dim), a random projection of 8x8-pooled pixels."""
    pooled = 3 * (size // 8) * (size // 8)
    weights = np.random.default_rng(seed).standard_normal((pooled, dim)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        # Centre each face's pooled pixels, so that overall brightness does not dominate.
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "weights"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "test-arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    return _save(graph, path)


def scrfd_maps(
    faces: Sequence[tuple[float, tuple[float, float, float, float], Sequence[tuple[float, float]]]],
    *,
    size: int = 640,
) -> dict[int, dict[str, np.ndarray]]:
    """SCRFD output maps (per stride: scores, boxes, landmarks) that encode ``faces``.

    Each face is (score, (left, top, right, bottom), five (x, y) points) in input pixels.
    It is put at the first free anchor of the stride-32 cell (or, for faces under 48 px,
    stride-8 cell) holding its box centre, as a trained SCRFD would report it.
    """
    maps = {}
    for stride in STRIDES:
        rows = (size // stride) ** 2 * ANCHORS
        maps[stride] = {
            "score": np.zeros((rows, 1), np.float32),
            "bbox": np.zeros((rows, 4), np.float32),
            "kps": np.zeros((rows, 10), np.float32),
        }
    for score, (left, top, right, bottom), points in faces:
        stride = 8 if min(right - left, bottom - top) < 48 else 32
        cx, cy = int((left + right) / 2 // stride), int((top + bottom) / 2 // stride)
        base = (cy * (size // stride) + cx) * ANCHORS
        m = maps[stride]
        row = next(base + a for a in range(ANCHORS) if m["score"][base + a, 0] == 0)
        ax, ay = cx * stride, cy * stride
        m["score"][row, 0] = score
        m["bbox"][row] = [(ax - left) / stride, (ay - top) / stride, (right - ax) / stride, (bottom - ay) / stride]
        m["kps"][row] = np.asarray([((x - ax) / stride, (y - ay) / stride) for x, y in points]).reshape(-1)
    return maps


def build_detector(path: Path, maps: dict[int, dict[str, np.ndarray]], *, size: int = 640, landmarks: bool = True) -> Path:
    """An SCRFD-shaped detector, (1, 3, size, size) in, that always reports ``maps``.

    Outputs are in insightface's export order (scores, then boxes, then landmarks, each
    for strides 8, 16, 32) with a leading batch axis on the score maps only, to check that
    Vultus matches outputs by shape rather than by position or rank.
    """
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["level"], keepdims=0),
        helper.make_node("Mul", ["level", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    kinds = ("score", "bbox", "kps") if landmarks else ("score", "bbox")
    for kind in kinds:
        for stride in STRIDES:
            array = maps[stride][kind]
            if kind == "score":
                array = array[None]
            name = f"{kind}_{stride}"
            initializers.append(numpy_helper.from_array(array, f"{name}_map"))
            # Tie each output to the input so that the graph really reads the image.
            nodes.append(helper.make_node("Add", [f"{name}_map", "nothing"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))
    graph = helper.make_graph(
        nodes,
        "test-scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        outputs,
        initializer=initializers,
    )
    return _save(graph, path)
