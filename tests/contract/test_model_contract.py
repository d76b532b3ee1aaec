"""The detector and embedder contracts, kept by every registered model and by the fakes.

Models are read from the registry when the tests are collected, so a new one is held to
the same promises. Real models see one of the shared photos (faces_root); the fakes see
synthetic squares. ``vultus.testing`` is imported inside fixtures only (see
test_index_contract.py for why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.faces import (
    Aligner,
    Detection,
    Detector,
    Embedder,
    create_aligner,
    create_detector,
    create_embedder,
    detector_names,
    embedder_names,
)
from vultus.media import decode_image

FAKE = "fake"
DETECTORS = sorted({*detector_names(), FAKE})
EMBEDDERS = sorted({*embedder_names(), FAKE})
#: Embedders whose templates are documented as L2-normalised (dlib's ResNet's are not: about 1.39 long).
NORMALISED = {FAKE}
#: The detector that finds the faces real embedders are given (the default one).
REAL_DETECTOR = "yunet"


@pytest.fixture(scope="module", autouse=True)
def _fakes_registered() -> None:
    import vultus.testing  # noqa: F401 - registers the fakes, at run time, not at collection


def _photo(path: Path, side: int | None = None) -> np.ndarray:
    rgb = decode_image(path.read_bytes(), name=path.name).rgb
    return rgb if side is None else np.asarray(Image.fromarray(rgb).resize((side, side)))


def _one_face(name: str, request: pytest.FixtureRequest) -> np.ndarray:
    """An RGB image with one face in it for detector ``name``."""
    if name == FAKE:
        from vultus.testing import square_pixels

        return square_pixels(["green"], size=(400, 400))
    # A small image keeps the CNN quick on CPU.
    return _photo(request.getfixturevalue("faces_root") / "_formats" / "einstein.png", 400)


def _two_people(name: str, request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, str]:
    """Photos of two different people, and the detector to find them with, for embedder ``name``."""
    if name == FAKE:
        from vultus.testing import square_pixels

        return square_pixels(["red"]), square_pixels(["blue"]), FAKE
    root = request.getfixturevalue("faces_root")
    return _photo(root / "facerec_obama" / "1.jpg"), _photo(root / "facerec_biden" / "1.jpg"), REAL_DETECTOR


@pytest.mark.parametrize("name", DETECTORS)
def test_a_detector_keeps_the_protocol(name: str):
    detector = create_detector(name)
    assert isinstance(detector, Detector)
    assert detector.name == name
    assert isinstance(detector.default_size, int) and detector.default_size >= 160


@pytest.mark.parametrize("shade", [0, 128, 255])
@pytest.mark.parametrize("name", DETECTORS)
def test_a_detector_finds_nothing_in_a_blank_image(name: str, shade: int):
    assert create_detector(name).detect(np.full((240, 320, 3), shade, dtype=np.uint8)) == []


@pytest.mark.parametrize("name", DETECTORS)
def test_a_detector_reports_faces_inside_the_image_best_first(name: str, request: pytest.FixtureRequest):
    rgb = _one_face(name, request)
    found = create_detector(name).detect(rgb)
    assert len(found) == 1
    assert all(isinstance(d, Detection) and isinstance(d.score, float) for d in found)
    assert found == sorted(found, key=lambda d: -d.score)
    height, width = rgb.shape[:2]
    for det in found:
        assert 0 <= det.box.left < det.box.right <= width and 0 <= det.box.top < det.box.bottom <= height
        assert det.landmarks is None or len(det.landmarks) == 5


@pytest.mark.parametrize("name", EMBEDDERS)
def test_an_embedder_keeps_the_protocol_and_names_its_aligner(name: str):
    embedder = create_embedder(name)
    assert isinstance(embedder, Embedder)
    spec = embedder.spec
    assert embedder.model_id == spec.model_id and spec.model_id
    assert spec.dim > 0 and spec.input_size > 0 and spec.licence
    assert 0 < spec.match_distance <= spec.rights_distance
    aligner = create_aligner(embedder.aligner)
    assert isinstance(aligner, Aligner) and aligner.name == embedder.aligner


@pytest.mark.parametrize("name", EMBEDDERS)
def test_an_embedder_makes_one_float32_template_per_chip(name: str, request: pytest.FixtureRequest):
    embedder = create_embedder(name)
    aligner = create_aligner(embedder.aligner)
    first, second, detector_name = _two_people(name, request)
    detector = create_detector(detector_name)
    chips = []
    for rgb in (first, second):
        found = detector.detect(rgb)[:1]
        assert found, "the contract's photos each show one face"
        landmarks, cut = aligner.align(rgb, found, size=embedder.spec.input_size)
        assert len(landmarks) == len(cut) == 1
        assert cut[0].shape == (embedder.spec.input_size, embedder.spec.input_size, 3) and cut[0].dtype == np.uint8
        chips += cut
    batch = embedder.embed(chips)
    assert batch.shape == (2, embedder.spec.dim) and batch.dtype == np.float32
    assert np.isfinite(batch).all() and (np.linalg.norm(batch, axis=1) > 0).all()
    # The same chips give the same templates, in a batch or one at a time.
    single = np.stack([embedder.embed([chip])[0] for chip in chips])
    assert np.allclose(batch, single, atol=1e-4)
    assert np.allclose(embedder.embed(chips), batch, atol=1e-5)
    # Two people are further apart than the model's own match distance.
    assert np.linalg.norm(batch[0] - batch[1]) > embedder.spec.match_distance
    empty = embedder.embed([])
    assert empty.shape == (0, embedder.spec.dim)
    if name in NORMALISED:
        assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
