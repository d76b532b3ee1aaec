"""Face models behind small seams: detectors, aligners, embedders and their registry; faces linked across video frames."""

from .base import (
    Aligner,
    Box,
    Detection,
    Detector,
    Embedder,
    Face,
    ModelSpec,
    create_aligner,
    create_detector,
    create_embedder,
    detector_names,
    embedder_names,
    register_aligner,
    register_detector,
    register_embedder,
)
from .pipeline import FaceAnalyzer, QualityGate, embed_detections
from .tracks import Appearance, AppearanceTracker, Sighting, link_appearances

# The built-in backends register themselves, as a third-party one would; importing them
# loads no model (dlib and onnxruntime load on first use).
from . import dlib_models, libfacedetection, onnx_models  # noqa: E402,F401  isort: skip

__all__ = [
    "Aligner",
    "Appearance",
    "AppearanceTracker",
    "Box",
    "Detection",
    "Detector",
    "Embedder",
    "Face",
    "FaceAnalyzer",
    "QualityGate",
    "Sighting",
    "embed_detections",
    "link_appearances",
    "ModelSpec",
    "create_aligner",
    "create_detector",
    "create_embedder",
    "detector_names",
    "embedder_names",
    "register_aligner",
    "register_detector",
    "register_embedder",
]
