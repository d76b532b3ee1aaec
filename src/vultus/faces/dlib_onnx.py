"""dlib's ResNet face embedder as an ONNX graph, converted from its own ``.dat`` file.

dlib serialises a network innermost layer first, so the layers' parameter records in
the file appear in the order the network runs them: the input's channel means, then
each convolution, affine (folded batch norm), ReLU, pooling, residual addition and the
final fully connected layer. This module reads those records (dlib's own format: small
integers and portable floats with a length byte, tensors as raw little-endian float32)
and lays them out along the known topology of ``dlib_face_recognition_resnet_model_v1``
(the ``anet_type`` of dlib's face recognition example): a 7x7 stem, then 3+4+3+3+1
residual blocks of 32, 64, 128, 256 and 256 filters, global average pooling and a
128-d projection. Each affine layer is folded into the convolution before it.

:func:`converted_resnet` builds the graph once, checks it against dlib's own output and
caches it in the user cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import model_cache_dir
from ..errors import ModelFormatError
from .runtime import onnx_session

__all__ = ["DlibLayer", "read_dlib_network", "resnet_to_onnx", "converted_resnet", "cache_dir", "INPUT_SIZE"]

INPUT_SIZE = 150

#: The layer records this converter understands, by dlib's version string.
_KNOWN = ("input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2", "avg_pool_2", "add_prev_", "fc_2")


@dataclass
class DlibLayer:
    """One layer's record from a dlib network file."""

    kind: str
    ints: dict[str, int] = field(default_factory=dict)
    floats: dict[str, float] = field(default_factory=dict)
    params: np.ndarray | None = None


class _Reader:
    """dlib's serialisation primitives over a bytes buffer."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def integer(self) -> int:
        # A control byte (low nibble: byte count; high bit: negative), then the magnitude
        # in little-endian bytes.
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def real(self) -> float:
        # dlib's portable float: an integer mantissa and a power-of-two exponent.
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def text(self) -> str:
        length = self.integer()
        value = self.data[self.pos : self.pos + length].decode("ascii")
        self.pos += length
        return value

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ModelFormatError(f"dlib tensor format {version} is not supported (expected 2).")
        shape = [self.integer() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return values.reshape(shape).copy()

    def alias(self) -> tuple[int, ...]:
        if self.integer() != 1:
            raise ModelFormatError("Unexpected alias_tensor format in the dlib network file.")
        return tuple(self.integer() for _ in range(4))


def _name_at(data: bytes, pos: int, known: tuple[str, ...] = _KNOWN) -> str | None:
    """The layer version string among ``known`` that starts at ``pos``, if one does."""
    if data[pos] != 1:
        return None
    length = data[pos + 1]
    if not 4 <= length <= 32:
        return None
    try:
        name = data[pos + 2 : pos + 2 + length].decode("ascii")
    except UnicodeDecodeError:
        return None
    return name if name in known else None


def read_dlib_network(path: str | Path) -> list[DlibLayer]:
    """The parameter records of a dlib ResNet file, in the order the network runs them."""
    data = Path(path).read_bytes()
    layers: list[DlibLayer] = []
    pos = 0
    end = len(data) - 40
    while pos < end:
        name = _name_at(data, pos)
        if name is None:
            pos += 1
            continue
        reader = _Reader(data, pos)
        reader.text()
        layer = DlibLayer(name)
        if name == "input_rgb_image_sized":
            layer.floats = {"red": reader.real(), "green": reader.real(), "blue": reader.real()}
            layer.ints = {"rows": reader.integer(), "cols": reader.integer()}
        elif name == "con_4":
            layer.params = reader.tensor()
            keys = ("filters", "rows", "cols", "stride_y", "stride_x", "pad_y", "pad_x")
            layer.ints = {k: reader.integer() for k in keys}
            reader.alias()
            reader.alias()
        elif name == "affine_":
            layer.params = reader.tensor()
            gamma = reader.alias()
            reader.alias()
            layer.ints = {"channels": int(np.prod(gamma)), "mode": reader.integer()}
        elif name in ("max_pool_2", "avg_pool_2"):
            keys = ("rows", "cols", "stride_y", "stride_x", "pad_y", "pad_x")
            layer.ints = {k: reader.integer() for k in keys}
        elif name == "fc_2":
            layer.ints = {"outputs": reader.integer(), "inputs": reader.integer()}
            layer.params = reader.tensor()
            reader.alias()
            reader.alias()
            layer.ints["bias_mode"] = reader.integer()
        layers.append(layer)
        pos = reader.pos
    _check_layout(layers, path)
    return layers


def _check_layout(layers: list[DlibLayer], path: str | Path) -> None:
    counts = {kind: sum(1 for layer in layers if layer.kind == kind) for kind in _KNOWN}
    expected = {"input_rgb_image_sized": 1, "con_4": 29, "affine_": 29, "relu_": 29, "max_pool_2": 1,
                "avg_pool_2": 5, "add_prev_": 14, "fc_2": 1}
    if counts != expected or layers[0].kind != "input_rgb_image_sized" or layers[-1].kind != "fc_2":
        raise ModelFormatError(
            f"{path} does not have the layers of dlib_face_recognition_resnet_model_v1 "
            f"(found {counts}); only that network can be converted."
        )


# -- the graph ----------------------------------------------------------------------------


class _Graph:
    """Builds the ONNX graph while tracking each tensor's shape (channels, rows, cols)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, array: np.ndarray, base: str) -> str:
        name = self.name(base)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int], **attrs) -> str:  # noqa: ANN003
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x: str, weights: np.ndarray, bias: np.ndarray, stride: tuple[int, int], pad: tuple[int, int]) -> str:
        _, rows, cols = self.shapes[x]
        out_rows = (rows + 2 * pad[0] - weights.shape[2]) // stride[0] + 1
        out_cols = (cols + 2 * pad[1] - weights.shape[3]) // stride[1] + 1
        return self.node(
            "Conv", [x, self.const(weights, "w"), self.const(bias, "b")], (weights.shape[0], out_rows, out_cols),
            kernel_shape=list(weights.shape[2:]), strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]],
        )

    def pool(self, op: str, x: str, layer: DlibLayer) -> str:
        channels, rows, cols = self.shapes[x]
        kernel = (layer.ints["rows"], layer.ints["cols"])
        if kernel == (0, 0):  # dlib's "pool everything"
            return self.node("GlobalAveragePool" if op == "AveragePool" else "GlobalMaxPool", [x], (channels, 1, 1))
        stride = (layer.ints["stride_y"], layer.ints["stride_x"])
        pad = (layer.ints["pad_y"], layer.ints["pad_x"])
        out = ((rows + 2 * pad[0] - kernel[0]) // stride[0] + 1, (cols + 2 * pad[1] - kernel[1]) // stride[1] + 1)
        attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": [pad[0], pad[1], pad[0], pad[1]]}
        if op == "AveragePool":
            # dlib averages over the window's pixels inside the image only.
            attrs["count_include_pad"] = 0
        return self.node(op, [x], (channels, *out), **attrs)

    def add(self, a: str, b: str) -> str:
        """dlib's add_prev: tensors of different sizes are added as if zero-padded to the larger."""
        sa, sb = self.shapes[a], self.shapes[b]
        target = tuple(max(x, y) for x, y in zip(sa, sb))
        a, b = self._pad_to(a, target), self._pad_to(b, target)
        return self.node("Add", [a, b], target)

    def _pad_to(self, x: str, target: tuple[int, int, int]) -> str:
        shape = self.shapes[x]
        if shape == target:
            return x
        extra = [0, 0, 0, 0, 0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]]
        return self.node("Pad", [x, self.const(np.asarray(extra, np.int64), "pads")], target, mode="constant")


def resnet_to_onnx(layers: list[DlibLayer]):  # noqa: ANN201 - an onnx.ModelProto
    """The ONNX model for dlib's face ResNet: input ``chips`` (N, 150, 150, 3) uint8 RGB, output (N, 128)."""
    from onnx import TensorProto, helper

    g = _Graph()
    stack = list(layers)
    source = stack.pop(0)
    means = np.asarray([source.floats["red"], source.floats["green"], source.floats["blue"]], np.float32)
    # dlib's input layer: (pixel - channel mean) / 256, channels first.
    g.shapes["chips"] = (INPUT_SIZE, INPUT_SIZE, 3)
    x = g.node("Cast", ["chips"], (INPUT_SIZE, INPUT_SIZE, 3), to=TensorProto.FLOAT)
    x = g.node("Transpose", [x], (3, INPUT_SIZE, INPUT_SIZE), perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.const(means.reshape(1, 3, 1, 1), "mean")], (3, INPUT_SIZE, INPUT_SIZE))
    x = g.node("Mul", [x, g.const(np.full((1, 1, 1, 1), 1 / 256, np.float32), "scale")], (3, INPUT_SIZE, INPUT_SIZE))

    def conv_affine(x: str) -> str:
        conv, affine = stack.pop(0), stack.pop(0)
        if conv.kind != "con_4" or affine.kind != "affine_":
            raise ModelFormatError(f"Expected a convolution and an affine layer, found {conv.kind}, {affine.kind}.")
        n = conv.ints["filters"]
        in_channels = g.shapes[x][0]
        flat = conv.params.reshape(-1)
        weights = flat[: n * in_channels * conv.ints["rows"] * conv.ints["cols"]].reshape(
            n, in_channels, conv.ints["rows"], conv.ints["cols"]
        )
        bias = flat[weights.size :]
        if len(bias) != n:
            raise ModelFormatError("A convolution's parameters do not match its shape.")
        scale_shift = affine.params.reshape(-1)
        gamma, beta = scale_shift[:n], scale_shift[n:]
        # Fold the affine layer into the convolution: gamma * (W x + b) + beta.
        return g.conv(x, (weights * gamma[:, None, None, None]).astype(np.float32),
                      (bias * gamma + beta).astype(np.float32),
                      (conv.ints["stride_y"], conv.ints["stride_x"]), (conv.ints["pad_y"], conv.ints["pad_x"]))

    def take(kind: str) -> DlibLayer:
        layer = stack.pop(0)
        if layer.kind != kind:
            raise ModelFormatError(f"Expected a {kind} layer in the dlib network, found {layer.kind}.")
        return layer

    def relu(x: str) -> str:
        take("relu_")
        return g.node("Relu", [x], g.shapes[x])

    x = relu(conv_affine(x))
    x = g.pool("MaxPool", x, take("max_pool_2"))
    # Residual blocks, in running order: (filters, downsampling) per block.
    plan = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
    plan += [(256, True)] + [(256, False)] * 2 + [(256, True)]
    for _, down in plan:
        shortcut = x
        y = relu(conv_affine(x))
        y = conv_affine(y)
        if down:
            shortcut = g.pool("AveragePool", shortcut, take("avg_pool_2"))
        take("add_prev_")
        x = relu(g.add(y, shortcut))
    x = g.pool("AveragePool", x, take("avg_pool_2"))
    fc = take("fc_2")
    if stack:
        raise ModelFormatError(f"{len(stack)} layers of the dlib network were not placed.")
    channels = g.shapes[x][0]
    x = g.node("Flatten", [x], (channels, 1, 1), axis=1)
    weights = fc.params.reshape(-1)[: fc.ints["inputs"] * fc.ints["outputs"]].reshape(fc.ints["inputs"], fc.ints["outputs"])
    out = g.node("MatMul", [x, g.const(weights.astype(np.float32), "fc")], (fc.ints["outputs"], 1, 1))
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", fc.ints["outputs"]])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vultus")
    model.ir_version = 8
    return model


# -- the converted model, built once and cached ------------------------------------------

#: Bump when the conversion changes, so that cached graphs from older code are rebuilt.
CONVERTER_VERSION = 1
#: The largest difference from dlib's own output that the converted graph may show.
TOLERANCE = 1e-4


def cache_dir() -> Path:
    """Where converted models are kept: ``VULTUS_CACHE_DIR``, else the user cache directory.

    Only graphs derived from the public dlib weights are stored there, never anything
    from a gallery.
    """
    return model_cache_dir()


def _check_chips() -> np.ndarray:
    """Deterministic test chips for checking a conversion: noise, a gradient, a checkerboard."""
    rng = np.random.default_rng(20261122)
    noise = rng.integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, INPUT_SIZE, dtype=np.float32)
    gradient = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, -ramp) / 2 + 128,
                         np.tile(ramp, (INPUT_SIZE, 1))], axis=-1).astype(np.uint8)
    board = ((np.add.outer(np.arange(INPUT_SIZE) // 15, np.arange(INPUT_SIZE) // 15) % 2) * 200 + 30).astype(np.uint8)
    return np.stack([noise, gradient, np.repeat(board[:, :, None], 3, axis=2)])


def converted_resnet(dat_path: str | Path, reference, *, use_cache: bool = True) -> tuple[bytes | Path, float]:  # noqa: ANN001
    """The ONNX graph of dlib's ResNet at ``dat_path``, and its largest difference from dlib.

    ``reference(chips)`` runs dlib itself. The graph is built on first use, checked
    against ``reference`` and cached (as a file named by the weights' hash, written
    atomically); later calls load the cached file. Returns the file, or the graph's
    bytes when the cache directory cannot be written (or ``use_cache`` is False: the
    cached file is then replaced). Raises :class:`ModelFormatError` when the graph and
    dlib differ by more than ``TOLERANCE``.
    """
    digest = hashlib.sha256(Path(dat_path).read_bytes()).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"dlib-resnet-v1-{digest}-c{CONVERTER_VERSION}.onnx"
    record = target.with_suffix(".json")
    if use_cache and target.is_file() and record.is_file():
        try:
            checked = json.loads(record.read_text())
            if checked.get("max_abs_diff", 1.0) <= TOLERANCE:
                return target, float(checked["max_abs_diff"])
        except (OSError, ValueError, KeyError):
            pass  # rebuilt below
    model = resnet_to_onnx(read_dlib_network(dat_path)).SerializeToString()
    session = onnx_session(model)
    chips = _check_chips()
    diff = float(np.abs(session.run(None, {"chips": chips})[0] - np.asarray(reference(list(chips)))).max())
    if diff > TOLERANCE:
        raise ModelFormatError(
            f"The ONNX conversion of dlib's ResNet differs from dlib by {diff:.2g} (more than {TOLERANCE}); "
            "dlib itself will be used."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, content in ((target, model), (record, json.dumps({"max_abs_diff": diff, "source_sha256": digest}).encode())):
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            tmp.write_bytes(content)
            os.replace(tmp, path)  # atomic: a concurrent process sees the old file or the whole new one
    except OSError:
        return model, diff
    return (target if use_cache else model), diff
