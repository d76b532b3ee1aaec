"""Ingest, search and the rights requests through the engine, on the fake models.

A coloured square is a person: photos are drawn by vultus.testing, so nothing here needs
dlib, weights or the shared photos (test_no_dlib.py runs this folder with dlib blocked).
"""

from __future__ import annotations

import pytest

from vultus.errors import NoFaceError


def _ingest(engine, write_photo):
    paths = [
        write_photo("red-alone.jpg", ["red"]),
        write_photo("green-and-blue.png", ["green", "blue"]),
        write_photo("red-again.jpg", ["yellow", "red"], size=(800, 600)),
        write_photo("nobody.jpg", []),
    ]
    return engine.ingest(paths, source="test", workers=1)


def test_the_engine_takes_the_fakes_by_their_registered_names(fake_engine, fakes):
    assert fake_engine.analyzer.model_id == fakes.FAKE_SPEC.model_id
    assert fake_engine.analyzer.detector.name == "fake"


def test_ingest_stores_each_square_as_a_face_and_skips_the_empty_photo(fake_engine, write_photo):
    summary = _ingest(fake_engine, write_photo)
    assert (summary.images, summary.faces, summary.no_face) == (3, 5, 1)
    assert summary.detector == "fake" and not summary.refused
    again = fake_engine.ingest([write_photo("red-alone-copy.jpg", ["red"])], source="test", workers=1)
    assert again.duplicates == 1 and again.images == 0  # the same bytes are stored once


def test_search_finds_the_photos_of_the_same_colour_best_first(fake_engine, write_photo, fakes):
    _ingest(fake_engine, write_photo)
    probe = fakes.square_photo([fakes.Square("red", 200, 150, 140)])
    result = fake_engine.search(probe, purpose="unit test", case="U-1")
    assert sorted(c.path.rsplit("/", 1)[-1] for c in result.candidates) == ["red-again.jpg", "red-alone.jpg"]
    assert [c.rank for c in result.candidates] == [1, 2]
    assert result.candidates[0].similarity >= result.candidates[1].similarity > result.threshold
    assert result.model_id == fakes.FAKE_SPEC.model_id and result.gallery_faces == 5


def test_search_for_a_colour_nobody_has_returns_no_candidate(fake_engine, write_photo, fakes):
    _ingest(fake_engine, write_photo)
    result = fake_engine.search(fakes.square_photo(["magenta"]), purpose="unit test", case="U-2")
    assert result.candidates == [] and result.probe_faces == 1


def test_a_probe_without_a_face_is_refused(fake_engine, write_photo, fakes):
    _ingest(fake_engine, write_photo)
    with pytest.raises(NoFaceError):
        fake_engine.search(fakes.blank_photo(), purpose="unit test", case="U-3")


def test_erasure_removes_every_photo_of_the_person_and_search_no_longer_finds_them(fake_engine, write_photo, fakes):
    _ingest(fake_engine, write_photo)
    match = fake_engine.match_person(fakes.square_photo(["red"]))
    assert len(match.image_ids) == 2 and len(match.faces) == 2
    receipt = fake_engine.erase(match)
    assert len(receipt["removed_images"]) == 2
    result = fake_engine.search(fakes.square_photo(["red"]), purpose="unit test", case="U-4")
    assert result.candidates == []
    # People in none of the erased photos are still found.
    kept = fake_engine.search(fakes.square_photo(["green"]), purpose="unit test", case="U-5")
    assert [c.path.rsplit("/", 1)[-1] for c in kept.candidates] == ["green-and-blue.png"]
    # The yellow square was in an erased photo: it went with it.
    assert fake_engine.search(fakes.square_photo(["yellow"]), purpose="unit test", case="U-6").candidates == []


def test_an_objection_keeps_the_person_out_of_later_ingests(fake_engine, write_photo, fakes):
    _ingest(fake_engine, write_photo)
    fake_engine.object(fake_engine.match_person(fakes.square_photo(["blue"])))
    later = fake_engine.ingest([write_photo("blue-later.jpg", ["blue"])], source="test", workers=1)
    assert later.suppressed_faces == 1 and later.images == 0
    assert fake_engine.search(fakes.square_photo(["blue"]), purpose="unit test", case="U-7").candidates == []
