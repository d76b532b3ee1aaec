"""The shared Hamilton clip through the real detector, embedder and tracker: who is on screen, and when.

Ground truth, and how it is known (times on the clip's own timeline, the container's start,
as a player shows it; its first picture is at 0.844 s):

* Shot changes, from the mean absolute difference of consecutive decoded pictures (28.5 to
  30.9 grey levels at the three cuts, at most 14.3 anywhere else): cuts between 1.478/1.511 s,
  3.547/3.580 s and 7.851/7.884 s. Four shots: 0.844-1.478, 1.511-3.547, 3.580-7.851, 7.884-9.986 s.
* Each shot was looked at, every fifth picture (about six a second): 0.844-1.478 s is a wide
  shot of the stage, Lin-Manuel Miranda singing at the right (a face of about 45 pixels) and
  the pianist at the left (27 pixels, under the quality gate); 1.511-3.547 s is a handheld
  close-up of a curly-haired man in profile (not Miranda: his hair is short and straight in
  the other shots), blurred audience behind; 3.580-7.851 s is Miranda in a medium shot,
  facing the camera, in every picture; 7.884-9.986 s is the audience (Barack and Michelle Obama).
* With YuNet and dlib-resnet-v1 on every one of the 275 pictures, against
  ``faces/facerec_lin_manuel_miranda/1.png``: the medium shot's main face is at distance 0.31
  to 0.62 (median 0.49; under 0.6 in 127 of 129 pictures); the wide shot's stage face 0.48 to
  0.66 (median 0.58); the profile close-up 0.56 to 0.80 (median 0.68), the audience 0.64 and more.

So Miranda is on screen from 0.844 to 1.478 s and from 3.580 to 7.851 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vultus.faces import FaceAnalyzer, QualityGate
from vultus.faces.tracks import AppearanceTracker
from vultus.media import decode_image
from vultus.media.video import sample_frames

MIRANDA_ON_SCREEN = [(0.844, 1.478), (3.580, 7.851)]
MEDIUM_SHOT = MIRANDA_ON_SCREEN[1]


def on_screen(start: float, end: float) -> bool:
    return any(first <= start and end <= last for first, last in MIRANDA_ON_SCREEN)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")


@pytest.fixture(scope="module")
def appearances(analyzer: FaceAnalyzer, data_root: Path):
    """The clip sampled at the default two frames a second, gated as ingest gates photos, linked."""
    tracker = AppearanceTracker(link_distance=analyzer.embedder.spec.match_distance)
    found, samples = [], 0
    for frame in sample_frames(data_root / "video" / "short_hamilton_clip.mp4"):
        faces, _, _ = analyzer.analyze_gated(frame.rgb, QualityGate())
        found += tracker.add(frame.time, faces, frame.rgb)
        samples += 1
    assert samples == 19
    return found + tracker.finish()


@pytest.fixture(scope="module")
def miranda(analyzer: FaceAnalyzer, faces_root: Path) -> np.ndarray:
    photo = decode_image((faces_root / "facerec_lin_manuel_miranda" / "1.png").read_bytes()).rgb
    (face,) = analyzer.analyze(photo)
    return face.embedding


def test_miranda_is_found_only_where_he_is_on_screen(appearances, miranda, analyzer):
    match = analyzer.embedder.spec.match_distance
    by_distance = sorted(appearances, key=lambda a: float(np.linalg.norm(a.template - miranda)))
    nearest = by_distance[0]
    assert np.linalg.norm(nearest.template - miranda) <= match
    # The nearest is the medium shot, and what a search would show (the best frame) is in it.
    assert MEDIUM_SHOT[0] <= nearest.start and nearest.end <= MEDIUM_SHOT[1]
    assert MEDIUM_SHOT[0] <= nearest.best.time <= MEDIUM_SHOT[1]
    matches = [a for a in appearances if np.linalg.norm(a.template - miranda) <= match]
    assert matches and all(on_screen(a.start, a.end) for a in matches)


def test_his_medium_shot_is_one_appearance_not_one_face_per_sample(appearances, miranda, analyzer):
    match = analyzer.embedder.spec.match_distance
    in_shot = [a for a in appearances if MEDIUM_SHOT[0] <= a.start and a.end <= MEDIUM_SHOT[1]]
    (his,) = [a for a in in_shot if np.linalg.norm(a.template - miranda) <= match]
    # Sampled at 4.0, 4.5, ... 7.5 s (the first sample in the shot is the first at or after 4 s).
    assert len(his.sightings) == 8 and his.start == pytest.approx(4.01, abs=0.01)
    assert his.end == pytest.approx(7.52, abs=0.01)
    assert his.still.shape == (360, 640, 3)
    box = his.best.box
    assert 80 <= box.width <= 110 and box.right <= 640 and box.bottom <= 360


def test_the_audience_is_one_appearance_per_person(appearances):
    audience = [a for a in appearances if a.start >= 7.884 and len(a.sightings) >= 3]
    # Four faces seen in all four samples of the audience shot (8.0 to 9.5 s), each its own.
    assert len(audience) == 4
    centres = [np.mean([(s.box.left + s.box.right) / 2 for s in a.sightings]) for a in audience]
    assert min(np.diff(sorted(centres))) > 50
