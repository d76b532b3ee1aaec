"""dlib's ResNet converted to ONNX by Vultus's own code agrees with dlib on real faces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vultus.errors import ModelFormatError, UnknownModelError
from vultus.faces import FaceAnalyzer
from vultus.faces import dlib_onnx
from vultus.faces.dlib_models import DlibResNetEmbedder, model_file
from vultus.media import decode_image

IDENTITIES = ("facerec_obama", "facerec_biden", "deepface_jeff", "deepface_scarlett", "compreface_e2e_personA",
              "facerec_rose_leslie", "deepface_sundar", "facerec_kit_harington")


@pytest.fixture(scope="module")
def real_chips(faces_root: Path) -> tuple[np.ndarray, list[str]]:
    """Aligned 150 x 150 chips of real faces (every photo of eight people) and their identities."""
    analyzer = FaceAnalyzer.from_names("hog", "dlib-resnet-v1")
    chips, labels = [], []
    for name in IDENTITIES:
        for path in sorted((faces_root / name).iterdir()):
            rgb = decode_image(path.read_bytes(), name=str(path), max_pixels=10**9).rgb
            found = analyzer.detect(rgb)[:1]
            if found:
                chips += analyzer.aligner.align(rgb, found, size=150)[1]
                labels.append(name)
    return np.stack(chips), labels


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VULTUS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_converted_network_matches_dlib_on_real_faces(real_chips, cache: Path):
    chips, labels = real_chips
    assert len(chips) >= 20 and len(set(labels)) == len(IDENTITIES)
    fast = DlibResNetEmbedder("onnx")
    ours = fast.embed(list(chips))
    assert fast.runtime == "onnx"
    reference = fast.embed_with_dlib(list(chips))
    assert ours.shape == reference.shape == (len(chips), 128)
    assert np.abs(ours - reference).max() <= 1e-4
    # Same nearest neighbour for every face, under both.
    def neighbours(vectors: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
        np.fill_diagonal(d, np.inf)
        return d.argmin(axis=1)

    assert (neighbours(ours) == neighbours(reference)).all()
    # Batches larger than one onnxruntime call, and a single face, agree too.
    assert np.allclose(fast.embed(list(chips[:1])), reference[:1], atol=1e-4)


def test_conversion_is_cached_and_a_damaged_cache_is_rebuilt(cache: Path, real_chips):
    chips = list(real_chips[0][:3])
    first = DlibResNetEmbedder("onnx")
    expected = first.embed(chips)
    files = sorted(cache.iterdir())
    assert [f.suffix for f in files] == [".json", ".onnx"]
    record = json.loads(files[0].read_text())
    assert record["max_abs_diff"] <= 1e-4 and first.conversion_error == record["max_abs_diff"]
    stamp = files[1].stat().st_mtime_ns
    assert np.allclose(DlibResNetEmbedder("onnx").embed(chips), expected)
    assert files[1].stat().st_mtime_ns == stamp  # loaded, not converted again
    files[1].write_bytes(b"damaged")
    again = DlibResNetEmbedder("onnx")
    assert np.allclose(again.embed(chips), expected, atol=1e-6) and again.runtime == "onnx"
    files[0].write_text(json.dumps({"max_abs_diff": 0.5}))  # a record that fails the tolerance
    assert np.allclose(DlibResNetEmbedder("onnx").embed(chips), expected, atol=1e-6)
    assert json.loads(files[0].read_text())["max_abs_diff"] <= 1e-4


def test_dlib_stays_the_fallback_and_the_reference(cache: Path, real_chips, monkeypatch: pytest.MonkeyPatch):
    chips = list(real_chips[0][:2])
    reference = DlibResNetEmbedder("dlib")
    assert np.allclose(reference.embed(chips), reference.embed_with_dlib(chips)) and reference.runtime == "dlib"

    def broken(*_args, **_kwargs):
        raise ModelFormatError("differs from dlib by 0.3")

    monkeypatch.setattr(dlib_onnx, "converted_resnet", broken)
    fallback = DlibResNetEmbedder("onnx")
    with pytest.warns(RuntimeWarning, match="Using dlib"):
        vectors = fallback.embed(chips)
    assert fallback.runtime == "dlib" and np.allclose(vectors, reference.embed(chips))
    monkeypatch.setenv("VULTUS_DLIB_BACKEND", "tensorflow")
    with pytest.raises(UnknownModelError, match="VULTUS_DLIB_BACKEND"):
        DlibResNetEmbedder()


def test_only_dlibs_face_resnet_is_converted():
    with pytest.raises(ModelFormatError, match="does not have the layers"):
        dlib_onnx.read_dlib_network(model_file("mmod_human_face_detector.dat"))
    layers = dlib_onnx.read_dlib_network(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    assert layers[0].floats["red"] == pytest.approx(122.782, abs=1e-3)
    assert layers[-1].ints["outputs"] == 128 and layers[-1].ints["inputs"] == 256


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("VULTUS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dlib_onnx.cache_dir() == tmp_path / "xdg" / "vultus"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dlib_onnx.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "vultus"


def test_hog_detector_is_cached_and_finds_the_same_faces(cache: Path, faces_root: Path):
    from vultus.faces.dlib_models import HogDetector

    rgb = decode_image((faces_root / "_group" / "014_5.jpg").read_bytes(), name="g", max_pixels=10**9).rgb
    first = HogDetector().detect(rgb)  # builds dlib's detector and saves a copy
    saved = list(cache.glob("dlib-frontal-hog-*.svm"))
    assert len(saved) == 1 and saved[0].stat().st_size > 10_000
    assert HogDetector().detect(rgb) == first and len(first) >= 2  # loaded from the copy
    saved[0].write_bytes(b"damaged")
    assert HogDetector().detect(rgb) == first  # rebuilt
    assert saved[0].stat().st_size > 10_000
