"""Fixtures for the unit tests: fake models, synthetic photos, no dlib and no real photos.

``vultus.testing`` is imported in fixtures, not at module level, so that collecting these
tests does not add the fakes to the model registry that other suites parametrise over.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fakes():
    """The ``vultus.testing`` package (importing it registers the ``fake`` models)."""
    import vultus.testing

    return vultus.testing


@pytest.fixture
def write_photo(tmp_path: Path, fakes):
    """``write_photo(name, squares, **options)``: a synthetic photo saved under tmp_path/photos."""
    folder = tmp_path / "photos"
    folder.mkdir()

    def write(name: str, squares=("red",), **options) -> Path:
        path = folder / name
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        path.write_bytes(fakes.square_photo(squares, format=fmt, **options))
        return path

    return write


@pytest.fixture
def fake_engine(tmp_path: Path, fakes):
    """A fresh deployment on the fake detector and embedder, with one source, 'test'."""
    import vultus

    with vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="unit-test") as engine:
        engine.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        yield engine


@pytest.fixture
def to_move(fake_engine, write_photo, fakes, tmp_path: Path):
    """A deployment with every kind of row, for `vultus migrate`: two sources (one grouping its faces into
    named people, one with two search categories), photos, a video appearance, a search, an erasure, an
    objection, a restriction, a forgotten group, an account with a password and a calibration."""
    import numpy as np

    from vultus.store import NewAppearance, NewFace, iso, utcnow

    engine = fake_engine
    engine.people.set_clustering("test", enabled=True, note="DPIA 2026-04")
    engine.add_source("news", basis="legitimate-interests", purpose="reporting", retention="90d",
                      purposes=["journalism", "archive"])
    made = iter(range(100))

    def photo(colour: str):
        n = next(made)
        return write_photo(f"{n:02d}-{colour}.jpg", [fakes.Square(colour, 20 + 9 * n, 30)])

    engine.ingest([photo(c) for c in ("red", "red", "red", "blue", "blue", "green", "yellow", "magenta", "magenta")],
                  source="test", workers=1)
    engine.ingest([photo("red"), photo("cyan"), photo("black")], source="news", workers=1)
    # A video: one appearance of red (two templates), its still and crops in the blob folder.
    sha = "f" * 64
    still = engine.blobs.still_key(sha, 0)
    engine.blobs.put(still, fakes.square_photo(["red"]))
    faces = [NewFace((40, 60, 136, 156), (), 0.99, fakes.colour_template(np.asarray(fakes.PALETTE["red"]) + shift),
                     fakes.FAKE_SPEC.model_id, None) for shift in (0, 6)]
    now = utcnow()
    assert engine.store.add_video(
        source_id=engine.store.get_source("test").id, sha256=sha, original_path="/footage/street.mp4",
        size_bytes=9_000_000, width=640, height=480, duration=61.5, format="MP4", ingested_at=iso(now),
        expires_at=iso(now.replace(year=now.year + 1)),
        appearances=[NewAppearance(faces=faces, media_times=[4.0, 7.5], time_start=2.0, time_end=8.5,
                                   seen_at=[2.0, 4.0, 7.5, 8.5], still_key=still)])
    engine.people.cluster("test")
    red = next(p for p in engine.people.list(source="test") if p["count"] >= 3)
    engine.people.name(red["id"], "Rosa Red")
    magenta = next(p for p in engine.people.list(source="test") if p["faces"][0]["path"].endswith("magenta.jpg"))
    engine.people.forget(magenta["id"])
    engine.search(fakes.square_photo(["red"]), purpose="unit test", case="M-1", category="archive")
    engine.erase(engine.match_person(fakes.square_photo(["blue"])))
    engine.object(engine.match_person(fakes.square_photo(["green"])))
    engine.restrict(engine.match_person(fakes.square_photo(["yellow"])))
    _, token = engine.add_user("dora", role="dpo")
    engine.set_password("dora", "a long enough password")
    calibration = tmp_path / "calibration"
    for colour in ("red", "cyan", "orange"):
        (calibration / colour).mkdir(parents=True)
        for n in range(2):
            (calibration / colour / f"{n}.jpg").write_bytes(fakes.square_photo([fakes.Square(colour, 30 + 40 * n, 40)]))
    engine.calibrate(calibration, fmr=0.1, workers=1)
    engine.token = token
    return engine
