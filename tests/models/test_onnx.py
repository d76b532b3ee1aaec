"""Operators' ONNX models: SCRFD decoding, ArcFace alignment, ingest and search, `reindex --model`.

The ONNX files are built by the tests (tests/onnx_graphs.py) with the inputs and outputs
of the real model families, since real weights cannot be downloaded here.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

import vultus
from vultus.cli import cli
from vultus.errors import ModelFilesMissingError, ModelFormatError, ModelMismatchError, PolicyError
from vultus.faces import Box, Detection, FaceAnalyzer, create_detector, create_embedder
from vultus.faces.onnx_models import ARCFACE_REFERENCE, ArcFaceAligner, decode_scrfd, similarity_transform
from vultus.media import decode_image

from onnx_graphs import build_detector, build_embedder, scrfd_maps


def _rgb(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes(), name=str(path), max_pixels=200_000_000).rgb


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def embedder_file(onnx_dir: Path) -> Path:
    return build_embedder(onnx_dir / "test_arcface_r18.onnx")


@pytest.fixture(scope="module")
def portrait(faces_root: Path) -> tuple[Path, np.ndarray, Detection]:
    """A non-square photo, its HOG face box and that face's five ArcFace points (from dlib's 68)."""
    path = faces_root / "facerec_obama" / "1.jpg"
    rgb = _rgb(path)
    assert rgb.shape[0] != rgb.shape[1]
    box = FaceAnalyzer.from_names("hog", "dlib-resnet-v1").detect(rgb)[0].box
    points = ArcFaceAligner()._five_points(rgb, box)
    return path, rgb, Detection(box, 1.0, points)


@pytest.fixture(scope="module")
def detector_file(onnx_dir: Path, portrait) -> Path:
    """A detector that reports the portrait's face where HOG and dlib's landmarks put it."""
    _, rgb, truth = portrait
    scale = 640 / max(rgb.shape[:2])  # the detector letterboxes the photo into 640 x 640
    box = [v * scale for v in truth.box.as_list()]
    points = [(x * scale, y * scale) for x, y in truth.landmarks]
    maps = scrfd_maps([(0.92, tuple(box), points)])
    return build_detector(onnx_dir / "test_scrfd_500m.onnx", maps)


# -- decoding -----------------------------------------------------------------------------


def _maps_as_outputs(maps: dict, *, landmarks: bool = True) -> list[np.ndarray]:
    kinds = ("score", "bbox", "kps") if landmarks else ("score", "bbox")
    # Deliberately shuffled and of mixed rank: outputs are matched by shape, not position.
    outs = [maps[s][k][None] if k == "score" else maps[s][k] for k in kinds for s in (32, 8, 16)]
    return outs[::-1]


def test_scrfd_decoding_thresholds_suppresses_overlaps_and_keeps_landmarks():
    five = [(10.0, 10.0), (20.0, 10.0), (15.0, 15.0), (11.0, 20.0), (19.0, 20.0)]
    faces = [
        (0.95, (300.0, 200.0, 420.0, 350.0), [(x + 300, y + 200) for x, y in five]),
        (0.80, (305.0, 205.0, 425.0, 352.0), [(x + 305, y + 205) for x, y in five]),  # same face, weaker
        (0.70, (40.0, 40.0, 70.0, 76.0), [(x + 40, y + 40) for x, y in five]),  # a small face, stride 8
        (0.30, (500.0, 500.0, 600.0, 600.0), [(x + 500, y + 500) for x, y in five]),  # below 0.5
    ]
    boxes, scores, points = decode_scrfd(_maps_as_outputs(scrfd_maps(faces)), 640, 640, score_threshold=0.5, iou=0.4)
    assert np.allclose(scores, [0.95, 0.70])
    assert np.allclose(boxes, [[300, 200, 420, 350], [40, 40, 70, 76]], atol=1e-3)
    assert points.shape == (2, 5, 2)
    assert np.allclose(points[0], np.asarray(five) + [300, 200], atol=1e-3)
    assert np.allclose(points[1], np.asarray(five) + [40, 40], atol=1e-3)
    # A lower overlap limit keeps both views of the first face apart only when they overlap less.
    _, scores, _ = decode_scrfd(_maps_as_outputs(scrfd_maps(faces)), 640, 640, score_threshold=0.5, iou=0.99)
    assert np.allclose(scores, [0.95, 0.80, 0.70])
    # Detectors without landmark outputs are read too; their faces have no points.
    boxes, scores, points = decode_scrfd(
        _maps_as_outputs(scrfd_maps(faces), landmarks=False), 640, 640, score_threshold=0.5, iou=0.4
    )
    assert len(scores) == 2 and points is None


def test_scrfd_decoding_refuses_outputs_of_the_wrong_shape():
    maps = scrfd_maps([])
    outs = _maps_as_outputs(maps)
    with pytest.raises(ModelFormatError, match="strides 8, 16 and 32"):
        decode_scrfd(outs[:-1], 640, 640, score_threshold=0.5, iou=0.4)
    with pytest.raises(ModelFormatError, match="not an SCRFD"):
        decode_scrfd([*outs[:-1], np.zeros((10, 7), np.float32)], 640, 640, score_threshold=0.5, iou=0.4)
    with pytest.raises(ModelFormatError, match="do not fit stride"):
        decode_scrfd(outs, 512, 512, score_threshold=0.5, iou=0.4)  # maps made for 640 x 640


def test_onnx_detector_reports_faces_in_the_photo_s_own_coordinates(detector_file: Path, portrait):
    _, rgb, truth = portrait
    # Through the analyzer, which first scales the photo to the detector's 640 px.
    analyzer = FaceAnalyzer.from_names(str(detector_file), "dlib-resnet-v1")
    found = analyzer.detect(rgb)
    assert len(found) == 1
    got, want = np.asarray(found[0].box.as_list()), np.asarray(truth.box.as_list())
    assert np.abs(got - want).max() <= 2, (got, want)
    assert np.abs(np.asarray(found[0].landmarks) - np.asarray(truth.landmarks)).max() < 1.0
    assert found[0].score == pytest.approx(0.92, abs=1e-6)


# -- alignment ----------------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(23.0), 2.7, np.array([140.0, 65.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_REFERENCE @ rotation.T + shift
    matrix = similarity_transform(points, ARCFACE_REFERENCE)
    back = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(back, ARCFACE_REFERENCE, atol=1e-9)


def test_arcface_alignment_puts_the_five_points_on_the_reference():
    # Five coloured dots on a turned, scaled, shifted "face": after alignment each dot
    # must sit where ArcFace expects that point in its 112 x 112 crop.
    angle, scale, shift = np.deg2rad(-17.0), 3.1, np.array([90.0, 120.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_REFERENCE @ rotation.T + shift
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    image = Image.new("RGB", (640, 560))
    draw = ImageDraw.Draw(image)
    for (x, y), colour in zip(points, colours):
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], fill=colour)
    rgb = np.asarray(image)
    box = Box(int(points[:, 0].min()) - 40, int(points[:, 1].min()) - 60,
                           int(points[:, 0].max()) + 40, int(points[:, 1].max()) + 40)
    marks, chips = ArcFaceAligner().align(rgb, [Detection(box, 1.0, tuple(map(tuple, points)))], size=112)
    chip = chips[0].astype(int)
    assert chip.shape == (112, 112, 3)
    assert np.allclose(marks[0], points)
    for reference, colour in zip(ARCFACE_REFERENCE, colours):
        mask = np.all(np.abs(chip - colour) < 60, axis=2)
        assert mask.sum() > 5, colour
        ys, xs = np.nonzero(mask)
        # PIL samples at pixel centres: a dot drawn at x lands at x - 0.5 in array terms.
        assert np.hypot(xs.mean() - reference[0] + 0.5, ys.mean() - reference[1] + 0.5) < 1.0, colour


# -- the embedder -------------------------------------------------------------------------


def test_onnx_embedder_reads_its_shape_and_makes_unit_templates(embedder_file: Path, onnx_dir: Path, portrait):
    embedder = create_embedder(str(embedder_file))
    assert embedder.spec.dim == 512 and embedder.spec.input_size == 112
    assert embedder.model_id.startswith("onnx-test-arcface-r18-")
    other = create_embedder(str(build_embedder(onnx_dir / "other.onnx", seed=8)))
    twin = create_embedder(str(build_embedder(onnx_dir / "test_arcface_r18_copy.onnx")))
    assert other.model_id.split("-")[-1] != embedder.model_id.split("-")[-1]  # the id follows the weights
    assert twin.model_id.split("-")[-1] == embedder.model_id.split("-")[-1]
    _, rgb, truth = portrait
    _, chips = ArcFaceAligner().align(rgb, [truth] * 40, size=112)
    vectors = embedder.embed(chips)  # more than one onnxruntime batch
    assert vectors.shape == (40, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, embedder.embed(chips[:1])[0], atol=1e-5)
    assert embedder.embed([]).shape == (0, 512)


def test_unusable_onnx_files_get_clear_errors(tmp_path: Path, embedder_file: Path):
    with pytest.raises(ModelFilesMissingError, match="does not exist"):
        create_embedder(str(tmp_path / "nowhere.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all" * 50)
    with pytest.raises(ModelFormatError, match="cannot be loaded as an ONNX embedder"):
        create_embedder(str(junk)).spec
    rgb = np.zeros((200, 300, 3), np.uint8)
    with pytest.raises(ModelFormatError, match="not a detector's"):
        create_detector(str(embedder_file)).detect(rgb)  # an embedder named as the detector
    result = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "--embedder", str(junk), "stats"])
    assert result.exit_code == 1 and "cannot be loaded as an ONNX embedder" in result.output


# -- ingest, search, refusal and conversion -------------------------------------------------


def _source(engine) -> None:
    engine.add_source("news", basis="legitimate-interests", purpose="archive research", retention="30d")


def test_onnx_pair_ingests_and_searches_and_is_refused_by_a_dlib_gallery(
    tmp_path: Path, faces_root: Path, detector_file: Path, embedder_file: Path, portrait
):
    photos = [portrait[0], faces_root / "facerec_biden" / "1.jpg", faces_root / "deepface_jeff" / "1.jpg"]
    pair = {"detector": str(detector_file), "embedder": str(embedder_file)}
    with vultus.open(tmp_path / "onnx", **pair) as engine:
        _source(engine)
        summary = engine.ingest(photos, source="news", workers=2)  # in worker processes too
        assert summary.images == 3 and summary.faces == 3
        result = engine.search(portrait[0], purpose="p", case="c")
        assert result.model_id == engine.stats().embedder and result.model_id.startswith("onnx-")
        top = result.candidates[0]
        assert top.path.endswith("facerec_obama/1.jpg") and top.similarity > 0.999
        assert top.box == pytest.approx(portrait[2].box.as_list(), abs=2)
    with vultus.open(tmp_path / "dlib") as engine:
        _source(engine)
        engine.ingest(photos[:1], source="news", workers=1)
    with vultus.open(tmp_path / "dlib", **pair) as engine:
        with pytest.raises(ModelMismatchError, match="dlib-resnet-v1"):
            engine.search(portrait[0], purpose="p", case="c")
        with pytest.raises(ModelMismatchError, match="reindex --model"):
            engine.ingest(photos[1:], source="news", workers=1)
        assert engine.stats().images == 1


def test_reindex_model_converts_a_dlib_gallery_and_objections_still_hold(
    tmp_path: Path, faces_root: Path, embedder_file: Path
):
    data = tmp_path / "data"
    obama = faces_root / "facerec_obama"
    with vultus.open(data) as engine:
        _source(engine)
        engine.ingest([obama / "1.jpg", faces_root / "facerec_biden", faces_root / "deepface_jeff"],
                      source="news", workers=1)
        # Objection under dlib: that entry's template cannot be converted (no photo is kept).
        engine.object(engine.match_person(obama / "2.jpg"))
        before = {row[0]: row[1] for row in _faces(data)}
        pending = engine.submit_public_request(kind="access", photo=(faces_root / "facerec_biden" / "2.jpg").read_bytes(),
                                               contact="someone@example.org", client="test")
        with pytest.raises(PolicyError, match="public request"):
            engine.change_model(str(embedder_file))
        engine.fulfil_request(pending["request_id"])

    runner = CliRunner()
    out = runner.invoke(cli, ["--data", str(data), "reindex", "--model", str(embedder_file), "--json"])
    assert out.exit_code == 0, out.output
    change = json.loads(out.output)
    assert change["from_models"] == ["dlib-resnet-v1"] and change["faces"] == len(before)

    after = {row[0]: row for row in _faces(data)}
    assert set(after) == set(before)  # same faces, same ids
    assert {row[2] for row in after.values()} == {change["to_model"]}
    # Without --embedder, the gallery's own (now the ONNX one) is used; dlib is refused.
    with vultus.open(data) as engine:
        result = engine.search(faces_root / "facerec_biden" / "1.jpg", purpose="p", case="c")
        assert result.model_id == change["to_model"]
        assert result.candidates[0].path.endswith("facerec_biden/1.jpg")
        assert result.candidates[0].similarity > 0.999  # re-embedded from the stored copy, same box
        assert engine.stats().index_vectors == len(before)
        assert any(e.action == "model.change" for e in engine.audit_entries())
        # The objection made under dlib still keeps that person out: ingest embeds with dlib too.
        summary = engine.ingest([obama / "3.jpg"], source="news", workers=1)
        assert summary.suppressed_faces == 1 and summary.faces == 0
        summary = engine.ingest([faces_root / "deepface_elon"], source="news", workers=2)
        assert summary.faces >= 1 and summary.suppressed_faces == 0
    with vultus.open(data, embedder="dlib-resnet-v1") as engine:
        with pytest.raises(ModelMismatchError, match="onnx-"):
            engine.search(faces_root / "facerec_biden" / "1.jpg", purpose="p", case="c")
    # Converting back needs no file at all, and the objection holds under dlib as before.
    out = runner.invoke(cli, ["--data", str(data), "reindex", "--model", "dlib-resnet-v1"])
    assert out.exit_code == 0 and "Re-embedded" in out.output, out.output
    with vultus.open(data) as engine:
        assert engine.stats().gallery_models == ["dlib-resnet-v1"]
        assert engine.ingest([obama / "3.jpg"], source="news", workers=1).suppressed_faces == 1


def test_an_interrupted_conversion_refuses_searches_and_finishes_when_run_again(
    tmp_path: Path, faces_root: Path, embedder_file: Path, monkeypatch: pytest.MonkeyPatch
):
    from vultus.store import Store

    data = tmp_path / "data"
    with vultus.open(data) as engine:
        _source(engine)
        engine.ingest([faces_root / "facerec_biden", faces_root / "deepface_jeff"], source="news", workers=1)
    real = Store.replace_templates
    calls = []

    def crash_on_second_batch(self, updates, model_id):
        calls.append(len(updates))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, updates, model_id)

    batches = Store.faces_to_reembed
    monkeypatch.setattr(Store, "faces_to_reembed", lambda self, model_id, limit=0: batches(self, model_id, limit=4))
    monkeypatch.setattr(Store, "replace_templates", crash_on_second_batch)
    with vultus.open(data) as engine, pytest.raises(KeyboardInterrupt):
        engine.change_model(str(embedder_file))
    monkeypatch.undo()
    assert len({row[2] for row in _faces(data)}) == 2  # half converted
    with vultus.open(data) as engine:
        with pytest.raises(ModelMismatchError, match="run it again"):
            engine.search(faces_root / "facerec_biden" / "1.jpg", purpose="p", case="c")
        assert engine.stats().index_vectors == 0
        change = engine.change_model(str(embedder_file))
        assert change.faces == len(_faces(data)) - calls[0]
        assert engine.search(faces_root / "facerec_biden" / "1.jpg", purpose="p", case="c").candidates


def _faces(data: Path) -> list[tuple]:
    conn = sqlite3.connect(data / "vultus.db")
    try:
        return conn.execute("SELECT id, embedding, model_id FROM faces ORDER BY id").fetchall()
    finally:
        conn.close()



def test_reindex_model_re_embeds_video_appearances_from_their_stills(tmp_path: Path, data_root: Path,
                                                                    faces_root: Path, embedder_file: Path):
    data = tmp_path / "data"
    clip = data_root / "video" / "short_hamilton_clip.mp4"
    with vultus.open(data) as engine:
        _source(engine)
        engine.ingest([clip, faces_root / "facerec_biden"], source="news", workers=1)
        videos = [h for h in engine.store.hydrate(engine.store.searchable_face_ids().tolist()).values()
                  if h.media == "video"]
        assert videos
    out = CliRunner().invoke(cli, ["--data", str(data), "reindex", "--model", str(embedder_file), "--json"])
    assert out.exit_code == 0, out.output
    change = json.loads(out.output)
    after = _faces(data)
    assert change["faces"] == len(after) and {row[2] for row in after} == {change["to_model"]}
    with vultus.open(data) as engine:
        # Each appearance's new template is its still's face: searching with the still finds it first.
        hit = videos[0]
        still = engine.blobs.get(hit.still_key)
        result = engine.search(still, purpose="p", case="c")
        assert result.candidates and result.candidates[0].face_id in {h.face_id for h in videos}
