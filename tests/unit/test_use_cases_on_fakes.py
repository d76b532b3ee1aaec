"""The use-case functions (analyze_photo, Ingestor, search_photo, rights) on the fakes,
with the in-memory store and index and a real BlobStore: no engine, no dlib, no real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.ingest import Ingestor, analyze_photo
from vultus.rights import erase_person, match_person, restrict_person
from vultus.search import search_photo
from vultus.store import BlobStore, open_store


@pytest.fixture
def parts(tmp_path: Path, fakes):
    """(store, blobs, index, analyzer, keys) of a deployment with one source, 's'."""
    keys = Keyring.open(tmp_path / "keys.json")
    store = open_store(fakes.memory_store_url(f"unit_{abs(hash(tmp_path))}"), keys)
    store.add_source(name="s", controller="c", legal_basis="consent", purpose="p", retention_days=10, consent_ref=None)
    yield store, BlobStore(tmp_path / "blobs", keys), fakes.MemoryIndex(fakes.FAKE_SPEC.dim), fakes.fake_analyzer(), keys
    store.close()


def _ingest(parts, paths):
    store, blobs, index, analyzer, _ = parts
    ingestor = Ingestor(store=store, blobs=blobs, index=index, analyzer=lambda: analyzer, detector="fake",
                        embedder="fake", model_id=analyzer.model_id, detect_size=None, max_pixels=10_000_000,
                        actor="unit-test")
    return ingestor.run([str(p) for p in paths], source="s", workers=1)


def _search(parts, data: bytes):
    store, _, index, analyzer, _ = parts
    return search_photo(data, analyzer=analyzer, store=store, index=index, purpose="unit test", case="U",
                        top=10, threshold=None, actor="unit-test")


def test_analyze_photo_finds_each_square_with_its_box_and_a_template_of_its_colour(fakes):
    squares = [fakes.Square("cyan", 30, 40, 100), fakes.Square("orange", 300, 200, 60)]
    result = analyze_photo(fakes.fake_analyzer(), fakes.square_photo(squares), name="two.jpg", max_pixels=10_000_000)
    assert (result.width, result.height, result.format) == (640, 480, "JPEG")
    assert [f.box for f in result.faces] == [s.box for s in squares]  # largest first
    for face, square in zip(result.faces, squares):
        assert np.linalg.norm(face.embedding - fakes.colour_template(square.rgb)) < 0.2
        assert face.crop[:2] == b"\xff\xd8"  # a JPEG crop of the face


def test_the_quality_gate_counts_squares_too_small_to_index(fakes):
    from vultus.faces import QualityGate

    data = fakes.square_photo([fakes.Square("red", 30, 40, 100), fakes.Square("blue", 300, 200, 40)])
    result = analyze_photo(fakes.fake_analyzer(), data, name="x.jpg", max_pixels=10_000_000, gate=QualityGate(64))
    assert len(result.faces) == 1 and result.rejected == {"too_small": 1}


def test_ingest_then_search_returns_the_stored_face_of_the_probes_colour(parts, write_photo, fakes):
    summary = _ingest(parts, [write_photo("a.jpg", ["red", "green"]), write_photo("b.png", ["blue"])])
    assert (summary.images, summary.faces) == (2, 3) and len(parts[2]) == 3
    result = _search(parts, fakes.square_photo([fakes.Square("blue", 100, 100, 200)]))
    assert [c.path.rsplit("/", 1)[-1] for c in result.candidates] == ["b.png"]
    assert result.candidates[0].distance < fakes.FAKE_SPEC.match_distance


def test_restriction_hides_a_face_from_search_and_lifting_it_brings_it_back(parts, write_photo, fakes):
    _ingest(parts, [write_photo("a.jpg", ["red", "green"])])
    store, _, index, analyzer, _ = parts
    probe = fakes.square_photo(["green"])
    match = match_person(probe, analyzer=analyzer, store=store, index=index, threshold=0.6)
    assert restrict_person(match, store=store, index=index, actor="unit-test")[1] == 1
    assert _search(parts, probe).candidates == [] and len(index) == 1
    match = match_person(probe, analyzer=analyzer, store=store, index=index, threshold=0.6)
    assert len(match.faces) == 1  # rights reach restricted faces
    restrict_person(match, store=store, index=index, actor="unit-test", lift=True)
    assert len(_search(parts, probe).candidates) == 1


def test_erasure_removes_rows_copies_and_index_entries(parts, write_photo, fakes):
    _ingest(parts, [write_photo("a.jpg", ["red", "green"]), write_photo("b.jpg", ["blue"])])
    store, blobs, index, analyzer, keys = parts
    assert len(list((blobs.root / "images").rglob("*.jpg"))) == 2
    blue = match_person(fakes.square_photo(["blue"]), analyzer=analyzer, store=store, index=index, threshold=0.6)
    match = match_person(fakes.square_photo(["red"]), analyzer=analyzer, store=store, index=index, threshold=0.6)
    receipt = erase_person(match, store=store, blobs=blobs, index=index, keys=keys, actor="unit-test")
    assert len(receipt["removed_images"]) == 1
    # The green square shared the erased photo: only the blue one's face and copy are left.
    assert index.ids().tolist() == [hit.face_id for hit, _ in blue.faces]
    assert len(list((blobs.root / "images").rglob("*.jpg"))) == 1
    assert _search(parts, fakes.square_photo(["green"])).candidates == []
    assert len(_search(parts, fakes.square_photo(["blue"])).candidates) == 1
