"""The runtimes the face models run on, loaded on first use: dlib with its weight files, and onnxruntime.

Every model module gets dlib, a weight file of ``face_recognition_models`` and its
onnxruntime sessions from here, so each is set up one way: dlib imported with an error
that says what to install, weight files found without ``pkg_resources``, and every
session quiet, on the CPU, with ``VULTUS_ORT_THREADS`` threads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..config import environment_value
from ..errors import ModelFilesMissingError

__all__ = ["import_dlib", "model_file", "onnx_session", "session_options"]

_INSTALL_HINT = "Install them with: pip install dlib-bin face_recognition_models"


def import_dlib() -> Any:
    """The dlib module (:class:`ModelFilesMissingError` with what to install if it is missing)."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
        raise ModelFilesMissingError(f"dlib is not installed. {_INSTALL_HINT}") from exc
    return dlib


def model_file(filename: str) -> str:
    """Absolute path of one of ``face_recognition_models``' weight files.

    The package's own helpers import ``pkg_resources``; finding its folder through
    importlib avoids that dependency and does not import it at all.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissingError(f"The face model weights are not installed. {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise ModelFilesMissingError(f"Model file {path} is missing. {_INSTALL_HINT}")
    return str(path)


def session_options():  # noqa: ANN201 - an onnxruntime.SessionOptions
    """onnxruntime options for Vultus: quiet, and ``VULTUS_ORT_THREADS`` threads per session.

    Ingest workers set that variable to their share of the cores, so that N processes do
    not each start a thread per core; unset (0) means onnxruntime's own choice, all cores.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are not the operator's business
    threads = environment_value("ort_threads")
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def onnx_session(model: bytes | str | Path) -> Any:
    """An onnxruntime CPU session for a graph (its bytes, or the path of its file), with :func:`session_options`."""
    import onnxruntime

    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                        sess_options=session_options(), providers=["CPUExecutionProvider"])
