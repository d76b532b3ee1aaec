"""Faces of sampled frames linked into appearances (vultus.faces.tracks), on synthetic sightings.

Templates are 128 numbers like dlib's: two people's are about 0.9 apart, two sightings of one
person about 0.25 (the clip's consecutive samples: median 0.28), so the tracker's
``link_distance`` of 0.6 is what it gets with the real embedder.
"""

from __future__ import annotations

import numpy as np
import pytest

from vultus.faces import Box, Face
from vultus.faces.tracks import AppearanceTracker, face_quality, link_appearances

DIM = 128
RATE = 2.0  # samples a second


class People:
    """Synthetic identities: a template per person, and noisy sightings of it."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.bases: dict[str, np.ndarray] = {}

    def template(self, who: str, noise: float = 0.25) -> np.ndarray:
        if who not in self.bases:
            self.bases[who] = self.rng.normal(size=DIM) * (0.9 / np.sqrt(2 * DIM))
        return (self.bases[who] + self.rng.normal(size=DIM) * (noise / np.sqrt(2 * DIM))).astype(np.float32)

    def face(self, who: str, x: float, y: float = 200, size: int = 80, score: float = 0.9, **kw) -> Face:
        left, top = round(x - size / 2), round(y - size / 2)
        return Face(Box(left, top, left + size, top + size), score, (), self.template(who, **kw))

    def nearest(self, vector: np.ndarray) -> str:
        return min(self.bases, key=lambda who: np.linalg.norm(self.bases[who] - vector))


def times(seconds: float) -> list[float]:
    return [i / RATE for i in range(int(seconds * RATE))]


def link(frames, **options):
    return link_appearances(frames, link_distance=options.pop("link_distance", 0.6), **options)


def test_one_person_walking_through_a_30_second_shot_is_one_appearance():
    people = People()
    # 80-pixel face, walking 60 px a second (0.75 face sizes), left to right across 1800 px.
    frames = [(t, [people.face("walker", 100 + 60 * t)]) for t in times(30)]
    (appearance,) = link(frames)
    assert (appearance.start, appearance.end) == (0.0, 29.5)
    assert appearance.times == tuple(times(30))
    # The mean of 60 noisy sightings is nearer the person than any one sighting is.
    assert np.linalg.norm(appearance.template - people.bases["walker"]) < 0.1
    assert appearance.templates.shape == (1, DIM) and appearance.templates.dtype == np.float32


def test_two_people_crossing_are_two_appearances_each_of_its_own_person():
    people = People(1)
    frames = []
    for t in times(10):
        # They meet in the middle at t = 5 s, boxes on top of each other, then carry on.
        frames.append((t, [people.face("ann", 200 + 80 * t), people.face("bob", 1000 - 80 * t)]))
    appearances = link(frames)
    assert len(appearances) == 2
    for appearance in appearances:
        owners = {people.nearest(s.embedding) for s in appearance.sightings}
        assert len(owners) == 1 and len(appearance.sightings) == 20
    assert {people.nearest(a.template) for a in appearances} == {"ann", "bob"}
    ann = next(a for a in appearances if people.nearest(a.template) == "ann")
    xs = [(s.box.left + s.box.right) / 2 for s in ann.sightings]
    assert xs == sorted(xs)  # ann keeps walking right: she was not swapped with bob at the crossing


def test_a_few_missed_samples_are_tolerated_and_a_longer_gap_closes_the_appearance():
    people = People(2)
    seen = lambda missing: [(t, [] if t in missing else [people.face("pat", 300 + 20 * t)]) for t in times(10)]  # noqa: E731
    (once,) = link(seen({3.0, 3.5}))  # 1.5 s between sightings: within max_gap_s
    assert len(once.sightings) == 18 and (once.start, once.end) == (0.0, 9.5)
    twice = link(seen({3.0, 3.5, 4.0, 4.5}))  # 2.5 s unseen
    assert [(a.start, a.end) for a in twice] == [(0.0, 2.5), (5.0, 9.5)]
    assert len(link(seen({3.0, 3.5, 4.0, 4.5}), max_gap_s=3.0)) == 1


def test_a_different_person_in_the_same_box_is_a_new_appearance():
    people = People(3)
    frames = [(t, [people.face("first" if t < 5 else "second", 400)]) for t in times(10)]
    first, second = link(frames)
    assert (first.start, first.end, second.start, second.end) == (0.0, 4.5, 5.0, 9.5)
    assert people.nearest(first.template) == "first" and people.nearest(second.template) == "second"


def test_look_alike_blurred_faces_side_by_side_keep_their_places():
    """Out-of-focus faces whose templates collapse together are told apart by where they are."""
    people = People(4)
    blur = people.template("blur", noise=0.0)
    frames = []
    for t in times(5):
        faces = [Face(Box(x, 100, x + 60, 160), 0.6, (), blur + people.rng.normal(size=DIM).astype(np.float32) * 0.01)
                 for x in (200, 290)]  # 1.5 face sizes apart, templates 0.1 apart
        frames.append((t, faces[::-1] if int(t * 2) % 2 else faces))
    appearances = link(frames)
    assert len(appearances) == 2
    for appearance in appearances:
        assert len({s.box.left for s in appearance.sightings}) == 1


def test_a_jump_across_the_frame_is_not_the_same_track():
    """A cut to the same person elsewhere in the picture: the motion gate starts a new appearance."""
    people = People(5)
    frames = [(t, [people.face("kim", 200 if t < 2 else 1500)]) for t in times(4)]
    assert len(link(frames)) == 2


def test_appearances_close_as_the_video_goes_and_keep_their_best_frame_only():
    people = People(6)
    tracker = AppearanceTracker(link_distance=0.6)
    closed = []
    for t in times(6):
        faces = [people.face("lee", 300, score=0.95 if t == 1.0 else 0.8)] if t < 3 else []
        closed += tracker.add(t, faces, frame=f"pixels at {t}")
        if t == 4.0:
            assert not closed  # 1.5 s unseen: still open
    (appearance,) = closed  # closed at 4.5 s, before the video ends
    assert tracker.finish() == []
    assert appearance.best.time == 1.0 and appearance.still == "pixels at 1.0"
    assert appearance.best.quality == pytest.approx(0.95 * 80) == face_quality(people.face("lee", 300, score=0.95))


def test_diverse_sightings_are_kept_only_when_they_differ():
    people = People(7)
    steady = [(t, [people.face("ray", 300, noise=0.05)]) for t in times(5)]
    (one,) = link(steady, representatives=3, diverse_distance=0.4)
    assert one.templates.shape == (1, DIM) and one.diverse == ()
    turning = [(t, [people.face("ray", 300, noise=0.05 if t < 2.5 else 1.0)]) for t in times(5)]
    (varied,) = link(turning, representatives=3, link_distance=1.5, diverse_distance=0.4)
    assert varied.templates.shape[0] > 1
    for extra, sighting in zip(varied.templates[1:], varied.diverse):
        assert np.array_equal(extra, sighting.embedding)


def test_frames_out_of_time_order_are_refused():
    people = People(8)
    tracker = AppearanceTracker(link_distance=0.6)
    tracker.add(1.0, [people.face("a", 100)])
    with pytest.raises(ValueError, match="time order"):
        tracker.add(0.5, [people.face("a", 100)])
    with pytest.raises(ValueError):
        AppearanceTracker(link_distance=0)
