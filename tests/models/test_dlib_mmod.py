"""dlib's MMOD CNN detector converted to ONNX finds the same faces as dlib on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.errors import ModelFormatError
from vultus.faces import FaceAnalyzer
from vultus.faces import dlib_mmod
from vultus.faces.dlib_models import CnnDetector, model_file
from vultus.media import decode_image

#: A group photo (several faces, one cut by the edge), single faces, and a photo without one.
PHOTOS = ("_group/deepface_selfie-many-people.jpg", "_group/facerec_obama_and_biden.jpg",
          "facerec_obama/1.jpg", "deepface_sundar", "_noface/NoFace-img1.jpg")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VULTUS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _photo(faces_root: Path, name: str, size: int) -> np.ndarray:
    path = faces_root / name
    if path.is_dir():
        path = sorted(path.iterdir())[0]
    image = Image.fromarray(decode_image(path.read_bytes(), name=str(path), max_pixels=10**9).rgb)
    # Small copies keep dlib's own run (seconds per photo on CPU) short.
    image.thumbnail((size, size))
    return np.asarray(image)


def test_converted_detector_matches_dlib_on_real_photos(faces_root: Path, cache: Path):
    detector = CnnDetector("onnx")
    found_any = 0
    for name in PHOTOS:
        rgb = _photo(faces_root, name, 480)
        ours = [(d.box.left, d.box.top, d.box.right - 1, d.box.bottom - 1, d.score) for d in detector.detect(rgb)]
        theirs = sorted(detector.detect_with_dlib(rgb), key=lambda item: -item[1])
        assert detector.runtime == "onnx"
        assert [o[:4] for o in ours] == [t[0] for t in theirs], name
        assert all(abs(o[4] - t[1]) <= 1e-3 for o, t in zip(ours, theirs)), name
        found_any += len(ours)
        if name.startswith("_noface"):
            assert ours == []
    assert found_any >= 6
    assert (cache / next(p.name for p in cache.iterdir() if p.name.startswith("dlib-mmod-"))).stat().st_size > 100_000


def test_grey_photo_and_damaged_cache(faces_root: Path, cache: Path):
    rgb = _photo(faces_root, "facerec_obama/1.jpg", 400)
    first = CnnDetector("onnx").detect(rgb)
    assert len(first) == 1
    [cached] = [p for p in cache.iterdir() if p.name.startswith("dlib-mmod-")]
    cached.write_bytes(b"not an onnx graph")
    again = CnnDetector("onnx")
    assert again.detect(rgb) == first  # rebuilt, not failed
    assert again.runtime == "onnx"
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    [face] = CnnDetector("onnx").detect(grey)
    assert _iou(face.box.as_list(), first[0].box.as_list()) > 0.5  # the same face, from grey levels


@pytest.mark.parametrize("backend", ["onnx", "dlib"])
def test_images_too_thin_for_the_window_give_no_faces(backend: str, cache: Path):
    # The network's output would be empty (onnxruntime refuses it), and dlib aborts the
    # whole process on some of these shapes: they never reach either.
    detector = CnnDetector(backend)
    for shape in [(1, 1, 3), (2, 1600, 3), (1600, 19, 3), (20, 1600, 3), (1600, 20), (40, 40, 3)]:
        assert detector.detect(np.full(shape, 128, np.uint8)) == []


def test_analyzer_with_cnn_embeds_faces_hog_also_finds(faces_root: Path, cache: Path):
    rgb = _photo(faces_root, "_group/facerec_obama_and_biden.jpg", 1200)
    cnn = FaceAnalyzer.from_names("cnn", "dlib-resnet-v1").analyze(rgb)
    hog = FaceAnalyzer.from_names("hog", "dlib-resnet-v1").analyze(rgb)
    assert len(cnn) >= 2 and len(hog) >= 2  # Obama and Biden, and a face cut by the edge
    for rank, face in enumerate(sorted(cnn, key=lambda f: -f.box.area)):
        best = max(hog, key=lambda f: _iou(f.box.as_list(), face.box.as_list()))
        assert _iou(best.box.as_list(), face.box.as_list()) > 0.4
        # Different boxes, landmarks-aligned chips: the same person's template, and for the
        # two clear faces nearly the same one.
        distance = np.linalg.norm(best.embedding - face.embedding)
        assert distance < (0.3 if rank < 2 else 0.6)


def test_resize_is_dlibs_bilinear():
    rng = np.random.default_rng(7)
    src = rng.random((3, 13, 17), dtype=np.float32)
    out = dlib_mmod._resize_bilinear(src, 10, 14)
    # dlib's formula, pixel by pixel.
    ys, xs = np.float32(12) / np.float32(9), np.float32(16) / np.float32(13)
    for r in range(10):
        for c in range(14):
            y, x = np.float32(r) * ys, np.float32(c) * xs
            t, left = int(np.floor(y)), int(np.floor(x))
            b, right = min(t + 1, 12), min(left + 1, 16)
            fy, fx = y - np.float32(t), x - np.float32(left)
            one = np.float32(1)
            expected = (one - fy) * ((one - fx) * src[:, t, left] + fx * src[:, t, right]) + fy * (
                (one - fx) * src[:, b, left] + fx * src[:, b, right])
            assert np.array_equal(out[:, r, c], expected)


@pytest.mark.parametrize("rows, cols", [(600, 800), (800, 600), (37, 1000), (5, 5)])
def test_pyramid_layout(rows: int, cols: int):
    rects, total_rows, total_cols = dlib_mmod.pyramid_layout(rows, cols)
    assert rects[0] == (11, 11, 11 + cols - 1, 11 + rows - 1)
    assert total_cols == cols + 22
    for i, (left, top, right, bottom) in enumerate(rects):
        assert 0 <= left <= right < total_cols and 0 <= top <= bottom < total_rows
        if i:  # each level is 5/6 of the one before, rounded down
            prev = rects[i - 1]
            assert right - left + 1 == int(5 / 6 * (prev[2] - prev[0] + 1))
            assert bottom - top + 1 == int(5 / 6 * (prev[3] - prev[1] + 1))
        for other in rects[:i]:  # no two levels overlap
            assert right < other[0] or other[2] < left or bottom < other[1] or other[3] < top


def test_other_networks_are_refused():
    with pytest.raises(ModelFormatError, match="not a dlib MMOD detector"):
        dlib_mmod.read_mmod_network(model_file("dlib_face_recognition_resnet_model_v1.dat"))


def _iou(a: list[int], b: list[int]) -> float:
    inner = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inner
    return inner / area


def test_ingest_and_search_with_the_cnn_detector(faces_root: Path, tmp_path: Path, cache: Path):
    import vultus

    with vultus.open(tmp_path / "data", detector="cnn") as engine:
        engine.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        # Worker processes each load the converted detector (from the cache the first builds).
        summary = engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_biden"], source="test", workers=2)
        photos = len(list((faces_root / "facerec_obama").iterdir())) + len(list((faces_root / "facerec_biden").iterdir()))
        assert summary.images == photos and summary.faces >= photos
        assert any(p.name.startswith("dlib-mmod-") for p in cache.iterdir())
        probe = sorted((faces_root / "facerec_obama").iterdir())[0]
        result = engine.search(probe, purpose="test", case="T-1")
        assert result.candidates and result.candidates[0].similarity > 0.99


def test_damaged_weight_file_is_refused_with_a_fix(tmp_path: Path):
    data = Path(model_file("mmod_human_face_detector.dat")).read_bytes()
    cut = tmp_path / "mmod_human_face_detector.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="damaged.*reinstall"):
        dlib_mmod.read_mmod_network(cut)
