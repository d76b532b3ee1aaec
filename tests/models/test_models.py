"""Face models: registry, detection, alignment, batch embedding, on real photos."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.errors import UnknownModelError
from vultus.faces import FaceAnalyzer, create_detector, create_embedder, detector_names, embedder_names
from vultus.media import decode_image


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer.from_names("hog", "dlib-resnet-v1")


def _rgb(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes(), name=path.name).rgb


def test_registry_lists_builtins_and_refuses_unknown_names():
    assert {"hog", "cnn"} <= set(detector_names())
    assert "dlib-resnet-v1" in embedder_names()
    with pytest.raises(UnknownModelError, match="hog"):
        create_detector("no-such-detector")
    with pytest.raises(UnknownModelError, match="dlib-resnet-v1"):
        create_embedder("no-such-embedder")


def test_one_face_is_found_and_embedded(analyzer: FaceAnalyzer, faces_root: Path):
    rgb = _rgb(faces_root / "facerec_obama" / "1.jpg")
    faces = analyzer.analyze(rgb)
    assert len(faces) == 1
    face = faces[0]
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    assert len(face.landmarks) == 5
    # Box in original coordinates, inside the image, and around the landmarks.
    assert 0 <= face.box.left < face.box.right <= rgb.shape[1]
    assert 0 <= face.box.top < face.box.bottom <= rgb.shape[0]
    xs = [x for x, _ in face.landmarks]
    assert face.box.left - 5 <= min(xs) and max(xs) <= face.box.right + 5


def test_boxes_are_reported_in_original_coordinates_of_large_photos(analyzer: FaceAnalyzer, faces_root: Path):
    # 7360x4912: detection runs on a 1600-px copy, the box must map back to full size.
    rgb = _rgb(faces_root / "compreface_sample_personA" / "1.jpg")
    faces = analyzer.analyze(rgb)
    assert len(faces) == 1
    assert faces[0].box.width > 300  # a face in a 36-megapixel portrait is large
    assert faces[0].box.right <= rgb.shape[1] and faces[0].box.bottom <= rgb.shape[0]


def test_same_person_is_close_and_different_people_are_far(analyzer: FaceAnalyzer, faces_root: Path):
    a1 = analyzer.analyze(_rgb(faces_root / "facerec_obama" / "1.jpg"))[0].embedding
    a2 = analyzer.analyze(_rgb(faces_root / "facerec_obama" / "3.jpg"))[0].embedding
    b = analyzer.analyze(_rgb(faces_root / "facerec_biden" / "1.jpg"))[0].embedding
    assert np.linalg.norm(a1 - a2) < 0.6 < np.linalg.norm(a1 - b)


def test_batch_embedding_equals_one_by_one(analyzer: FaceAnalyzer, faces_root: Path):
    rgb = _rgb(faces_root / "_group" / "014_5.jpg")
    boxes = analyzer.detect(rgb)
    assert len(boxes) >= 3
    _, chips = analyzer.aligner.align(rgb, boxes, size=150)
    batch = analyzer.embedder.embed(chips)
    single = np.stack([analyzer.embedder.embed([chip])[0] for chip in chips])
    assert batch.shape == (len(boxes), 128)
    assert np.allclose(batch, single, atol=1e-4)


def test_all_formats_give_the_same_face(analyzer: FaceAnalyzer, faces_root: Path):
    results = {p.suffix: analyzer.analyze(_rgb(p)) for p in sorted((faces_root / "_formats").iterdir())}
    assert all(len(faces) == 1 for faces in results.values()), {k: len(v) for k, v in results.items()}
    reference = results[".png"][0]
    for suffix, faces in results.items():
        box = faces[0].box
        assert max(abs(a - b) for a, b in zip(box.as_list(), reference.box.as_list())) <= 4, suffix
        assert np.linalg.norm(faces[0].embedding - reference.embedding) < 0.15, suffix


def test_photos_without_faces_yield_none(analyzer: FaceAnalyzer, faces_root: Path):
    for path in sorted((faces_root / "_noface").iterdir()):
        assert analyzer.analyze(_rgb(path)) == [], path.name


def test_group_photo_face_counts_are_close_to_labels(analyzer: FaceAnalyzer, faces_root: Path):
    with open(faces_root / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file"].startswith("_group/") and r["expected_faces"]]
    assert len(rows) == 11
    expected = found = 0
    for row in rows:
        count = len(analyzer.detect(_rgb(faces_root / row["file"])))
        assert count <= int(row["expected_faces"]) + 1, row["file"]
        expected += int(row["expected_faces"])
        found += min(count, int(row["expected_faces"]))
    # HOG misses turned and cut-off faces; it must still find most of them.
    assert found >= 0.8 * expected


@pytest.mark.parametrize("name", detector_names())
def test_every_detector_keeps_the_contract(name: str, faces_root: Path):
    """Each registered detector finds the face, best first, inside the image it was given."""
    detector = create_detector(name)
    assert detector.name == name and detector.default_size >= 160
    # A small image keeps the CNN quick on CPU.
    rgb = np.asarray(Image.fromarray(_rgb(faces_root / "_formats" / "einstein.png")).resize((400, 400)))
    found = detector.detect(rgb)
    assert len(found) == 1
    assert found == sorted(found, key=lambda d: -d.score)
    box = found[0].box
    assert 0 <= box.left < box.right <= 400 and 0 <= box.top < box.bottom <= 400
    analyzer = FaceAnalyzer.from_names(name, "dlib-resnet-v1", detect_size=400)
    faces = analyzer.analyze(_rgb(faces_root / "_formats" / "einstein.png"))
    assert len(faces) == 1 and faces[0].embedding.shape == (128,)
