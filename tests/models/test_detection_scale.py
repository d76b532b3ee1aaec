"""Detection sized by the smallest face to find: plans, tiles, and real faces found at the minimum size."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.faces import FaceAnalyzer, create_aligner, create_detector, create_embedder
from vultus.faces.base import register_detector
from vultus.faces.base import Box, Detection
from vultus.faces.scale import MAX_DETECT_PIXELS, merge_pieces, plan_detection
from vultus.media import PhotoPixels, decode_image, upright_size


def _yunet():
    return create_detector("yunet")


def test_a_small_photo_is_not_blown_up_to_a_fixed_size():
    yunet, hog = _yunet(), create_detector("hog")
    for detector, at_most in ((yunet, 2.0), (hog, 80 / 32)):
        plan = plan_detection(250, 250, detector, min_face=32)
        assert plan.scale <= at_most
        assert max(plan.size) < detector.default_size  # the old fixed size (960, 1600)
        assert plan.smallest_face <= 32


def test_a_large_photo_is_tiled_so_that_minimum_size_faces_are_found():
    plan = plan_detection(6000, 4000, _yunet(), min_face=32)
    assert plan.smallest_face <= 32
    assert len(plan.tiles) > 1 and plan.coarse is not None
    assert all(right - left <= 768 and bottom - top <= 768 for left, top, right, bottom in plan.tiles)
    # The tiles cover the whole copy, and neighbours overlap by more than a minimum face.
    covered = np.zeros(plan.size[::-1], bool)
    for left, top, right, bottom in plan.tiles:
        covered[top:bottom, left:right] = True
    assert covered.all()
    lefts = sorted({t[0] for t in plan.tiles})
    rights = sorted({t[2] for t in plan.tiles})
    assert all(r - next_l > 32 * plan.scale for r, next_l in zip(rights, lefts[1:]))


def test_a_larger_minimum_face_searches_at_a_smaller_scale():
    fine = plan_detection(6000, 4000, _yunet(), min_face=32)
    coarse = plan_detection(6000, 4000, _yunet(), min_face=64)
    assert coarse.scale < fine.scale and coarse.smallest_face <= 64


def test_the_pixel_cap_bounds_the_cost_and_says_what_it_costs():
    plan = plan_detection(12000, 10000, _yunet(), min_face=32)
    assert plan.size[0] * plan.size[1] <= MAX_DETECT_PIXELS * 1.01
    assert plan.smallest_face > 32  # reported, not hidden


def test_a_fixed_detection_size_is_still_honoured():
    plan = plan_detection(6000, 4000, _yunet(), min_face=32, fixed_size=960)
    assert plan.size == (960, 640) and len(plan.tiles) == 1


def _det(left, top, right, bottom, score=0.9):
    return Detection(Box(left, top, right, bottom), score)


def test_merging_keeps_a_face_seen_by_two_pieces_once_and_drops_a_cut_one():
    whole, again = _det(100, 100, 140, 140, 0.95), _det(101, 99, 141, 139, 0.9)
    cut = _det(120, 100, 140, 140, 0.6)  # the right half, seen by a tile whose edge cuts it
    neighbour = _det(141, 100, 181, 140, 0.8)  # a different face right beside it
    merged = merge_pieces([[whole, neighbour], [again, cut]])
    assert merged == [whole, neighbour]


def test_merging_leaves_one_piece_s_own_detections_alone():
    a, b = _det(0, 0, 40, 40), _det(10, 10, 50, 50)  # overlapping, but the detector kept both
    assert merge_pieces([[a, b]]) == [a, b]


@pytest.fixture(scope="module")
def face_patch(faces_root: Path) -> np.ndarray:
    """A real face with its head and shoulders around it, scaled so its box is about 38 px."""
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1", detect_size=960)
    rgb = decode_image((faces_root / "facerec_obama" / "2.jpg").read_bytes()).rgb
    box = analyzer.detect(rgb)[0].box
    cx, cy, side = (box.left + box.right) / 2, (box.top + box.bottom) / 2, box.width
    crop = Image.fromarray(rgb).crop((int(cx - side), int(cy - side), int(cx + side), int(cy + side)))
    return np.asarray(crop.resize((76, 76), Image.BILINEAR))


def _found(faces, left, top, size=76):
    centre = (left + size / 2, top + size / 2)
    return [f for f in faces if abs((f.box.left + f.box.right) / 2 - centre[0]) < 12
            and abs((f.box.top + f.box.bottom) / 2 - centre[1]) < 12]


def test_minimum_size_faces_are_found_in_a_6000_by_4000_photo(face_patch):
    """Faces of about 38 px, one across two tiles' shared edge and one inside a tile, both found."""
    canvas = np.full((4000, 6000, 3), 128, np.uint8)
    canvas += np.random.default_rng(0).integers(0, 24, canvas.shape, dtype=np.uint8)
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    plan = analyzer.plan(6000, 4000)
    # The first tile's right edge, in original pixels: a face centred on it is cut there.
    edge = plan.tiles[0][2] / plan.scale
    places = [(round(edge - 38), 1000), (3000, 2500)]
    for left, top in places:
        canvas[top : top + 76, left : left + 76] = face_patch
    faces = analyzer.detect(canvas)
    for left, top in places:
        hits = _found(faces, left, top)
        assert len(hits) == 1, (left, top, [f.box for f in faces])
        assert 30 <= hits[0].box.width <= 50
    # At the old fixed size, the same faces are 6 px there: not found.
    fixed = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1", detect_size=960).detect(canvas)
    assert not any(_found(fixed, left, top) for left, top in places)


# -- several images at once (the server's searches) --------------------------------------------


class _MeetingDetector:
    """Finds no face, but only once two threads are inside it at the same time."""

    name = "test-meeting"
    default_size = 640
    meeting = threading.Barrier(2)

    def detect(self, rgb):
        self.meeting.wait(timeout=30)  # broken (an error) if the calls were made one by one
        return []


def test_an_analyzer_with_two_lanes_detects_two_images_at_once():
    register_detector(_MeetingDetector.name, _MeetingDetector)
    analyzer = FaceAnalyzer(_MeetingDetector(), create_aligner("dlib-5pt"), create_embedder("dlib-resnet-v1"),
                            lanes=2)
    image = np.zeros((64, 64, 3), np.uint8)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(analyzer.detect, [image, image]))
    assert results == [[], []]


def test_lanes_give_the_same_faces_and_templates_as_one_at_a_time(faces_root: Path):
    photo = decode_image((faces_root / "_group" / "000_5.jpg").read_bytes()).rgb
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1", lanes=2)
    alone = analyzer.analyze(photo)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(analyzer.analyze, [photo] * 4))
    for faces in together:
        assert [f.box for f in faces] == [f.box for f in alone]
        assert np.allclose(np.stack([f.embedding for f in faces]), np.stack([f.embedding for f in alone]), atol=1e-5)


# -- decoding for detection cheaply ------------------------------------------------------------


def _jpeg(rgb: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=92, **options)
    return out.getvalue()


def test_a_draft_decode_is_a_dct_scaled_upright_copy():
    wide = np.zeros((1000, 3000, 3), np.uint8)
    wide[:, :1500] = 255  # left half white, so the orientation shows
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: upright it is 1000 wide, 3000 tall
    data = _jpeg(wide, exif=exif.tobytes())
    small = decode_image(data, draft_scale=0.3)
    assert small.full_size == (1000, 3000) == upright_size(data)
    assert (small.width, small.height) == (500, 1500)  # libjpeg's 1/2: the smallest >= 0.3
    full = decode_image(data)
    assert small.rgb[:10].mean() > 200 and full.rgb[:10].mean() > 200  # the same way up


def test_a_photo_with_no_face_is_never_decoded_in_full(faces_root: Path):
    data = (faces_root / "_noface" / "NoFace-img1.jpg").read_bytes()  # 4608 px: searched at half size
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    pixels = PhotoPixels(data, detection_scale=lambda w, h: analyzer.plan(w, h).scale)
    assert pixels.reduced is not None and pixels.reduced.shape[1] < pixels.width
    assert analyzer.analyze(pixels) == []
    assert pixels._full is None  # noqa: SLF001 - what is being tested is that no full decode was made


def test_faces_found_on_the_draft_decode_are_the_faces_found_on_the_full_one(faces_root: Path):
    """The group and large identity photos: same faces, boxes within a few pixels, same templates."""
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    photos = sorted(faces_root.glob("*/*.jpg"))
    shifts = []
    for path in photos:
        data = path.read_bytes()
        width, height = upright_size(data)
        if analyzer.plan(width, height).scale > 0.5:
            continue  # no draft decode for these
        pixels = PhotoPixels(data, detection_scale=lambda w, h: analyzer.plan(w, h).scale)
        drafted = analyzer.analyze(pixels)
        full = analyzer.analyze(decode_image(data).rgb)
        sure = [f for f in full if f.score >= 0.8]
        for face in sure:
            match = [d for d in drafted if abs(d.box.left - face.box.left) <= 0.05 * face.box.width
                     and abs(d.box.top - face.box.top) <= 0.05 * face.box.width]
            assert match, (path, face.box, [d.box for d in drafted])
            shifts.append(float(np.linalg.norm(match[0].embedding - face.embedding)))
    # A box a pixel or two off moves dlib's landmarks, and so the template, a little (0 to
    # 0.16 here); the same person's photos are up to 0.6 apart.
    assert len(shifts) >= 10
    assert max(shifts) < 0.25 and float(np.mean(shifts)) < 0.05
