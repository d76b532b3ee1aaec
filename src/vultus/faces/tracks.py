"""Faces found in the sampled frames of a video, linked into appearances: one per person per stretch on screen.

Pure logic over :class:`~vultus.faces.base.Face` values (numpy only): no model runs here.
Frames are fed in time order; each face either continues a track that is still open, or
starts one. A track is continued by the face that is near where the track was last seen
(the **motion gate**) and whose template is close to the track's (the **template gate**);
among the pairs that pass both gates, the cheapest are linked first (greedy assignment,
each track and each face at most once per frame). A track that goes unseen for longer than
``max_gap_s`` is closed, so a person who leaves and comes back later is a new appearance.

The gates, as measured on the shared Hamilton clip (dlib-resnet-v1 templates, YuNet boxes,
sampled at 2 and 6 frames a second; ``bench/appearances.py`` reproduces every figure here):

* The same face in consecutive samples of one shot: template distance median 0.28, 95th
  percentile 0.48, at most 0.51 (2 per second); 0.22, 0.47, 0.54 (6 per second). Give
  ``link_distance`` the embedder's own match distance (dlib: 0.6).
* Different people in the same frame: distance median 0.55, but as low as 0.22 between
  blurred, out-of-focus faces in the audience, whose templates collapse together; the
  template gate alone cannot tell those apart, which is why the motion gate is needed
  and why position is part of the cost.
* Motion: a face's centre may move ``max_speed`` face sizes a second (default 4: a face
  crossing a frame ten faces wide in 2.5 s), and at least one face size, times the time
  since the track was last seen; its size may change by at most a factor of two.

What represents an appearance in the index is the **mean of its sightings' templates**
(one vector). Measured against the photos of the people in the clip (Lin-Manuel Miranda's
one photo against his two appearances, Barack Obama's four photos against his), the mean is
nearer the probe than the best-quality frame's template in 11 of the 12 probe-appearance
pairs (2 and 6 samples a second): Miranda's medium shot 0.36 against 0.44, his wide shot
0.50 against 0.54, Obama 0.67 to 0.70 against 0.67 to 0.75. Found at distance 0.6: 2 of 6
pairs for every rule tried (best quality, best score, largest, mean, quality-weighted mean,
medoid, 2 or 3 diverse frames, every frame); Obama is seen in semi-profile and is missed by
all. A few diverse sightings may be kept besides (``representatives``); on this clip they
found nothing the mean did not. The best sighting (:func:`face_quality`) is the still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .base import Box, Face

__all__ = ["Sighting", "Appearance", "AppearanceTracker", "link_appearances", "face_quality"]

#: Cost added per face size of distance between a track's last box and a face (the template
#: distance is the rest of the cost): among collapsed, look-alike templates, the nearer face wins.
_POSITION_WEIGHT = 0.1
#: Largest change of face size accepted between two sightings of one track.
_MAX_SCALE_CHANGE = 2.0


def face_quality(face: Face) -> float:
    """How good a sighting is to represent its appearance: the detector's score times the face's shorter side.

    Sharper, larger, more frontal faces score higher with every detector here (YuNet's and
    SCRFD's confidences fall on profiles and blur); the scale is each detector's own, so
    qualities are compared only within one video.
    """
    return float(face.score) * min(face.box.width, face.box.height)


@dataclass(frozen=True)
class Sighting:
    """One face in one sampled frame: when, where, how good, and its template."""

    time: float
    box: Box
    score: float
    quality: float
    embedding: np.ndarray = field(repr=False)
    landmarks: tuple[tuple[float, float], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Appearance:
    """One person's stretch on screen: its time range, where it was seen, and what represents it."""

    #: Seconds of the first and the last sampled frame it was seen in.
    start: float
    end: float
    #: Every sighting, in time order (one per sampled frame it was seen in).
    sightings: tuple[Sighting, ...] = field(repr=False)
    #: The templates to index for it (at most ``representatives`` x dim, float32): the mean of
    #: every sighting's first, then the diverse sightings' own.
    templates: np.ndarray = field(repr=False)
    #: The sightings the templates after the first come from.
    diverse: tuple[Sighting, ...] = field(repr=False)
    #: The sighting of highest quality, and what the caller passed with its frame (its still).
    best: Sighting = field(repr=False)
    still: Any = field(default=None, repr=False)

    @property
    def template(self) -> np.ndarray:
        """The one template that represents the appearance: the mean of its sightings'."""
        return self.templates[0]

    @property
    def times(self) -> tuple[float, ...]:
        """The sampled frame times it was seen at."""
        return tuple(s.time for s in self.sightings)


class _Track:
    def __init__(self, sighting: Sighting, still: Any):
        self.sightings = [sighting]
        self.best, self.still = sighting, still

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    def add(self, sighting: Sighting, still: Any) -> None:
        self.sightings.append(sighting)
        if sighting.quality > self.best.quality:
            self.best, self.still = sighting, still


class AppearanceTracker:
    """Links the faces of successive sampled frames into :class:`Appearance` values.

    Feed :meth:`add` each frame's faces in time order (those that passed the quality gate),
    and keep what it returns: the appearances that closed because their gap grew too long.
    :meth:`finish` closes the rest. Only the best frame of each open track is held (as
    ``frame``, whatever the caller passes: the pixels, or a crop of them), so memory stays
    bounded however long the video is.
    """

    def __init__(self, *, link_distance: float, max_gap_s: float = 1.5, max_speed: float = 4.0,
                 representatives: int = 1, diverse_distance: float | None = None):
        """``link_distance``: the largest template distance at which a face continues a track (the
        embedder's match distance, ``spec.match_distance``). ``max_gap_s``: seconds a track may go
        unseen and still continue (at 2 samples a second, the default lets two samples be missed).
        ``max_speed``: face sizes a second a face may move. ``representatives``: templates kept per
        appearance at most: the mean, then the sightings farthest from those already chosen,
        while at least ``diverse_distance`` from them (default: half ``link_distance``).
        """
        if link_distance <= 0 or max_gap_s < 0 or max_speed <= 0 or representatives < 1:
            raise ValueError("link_distance and max_speed must be positive, max_gap_s not negative, "
                             "representatives at least 1")
        self.link_distance, self.max_gap_s, self.max_speed = link_distance, max_gap_s, max_speed
        self.representatives = representatives
        self.diverse_distance = link_distance / 2 if diverse_distance is None else diverse_distance
        self._open: list[_Track] = []
        self._time: float | None = None

    def add(self, time: float, faces: Sequence[Face], frame: Any = None) -> list[Appearance]:
        """Take one sampled frame's faces; return the appearances closed by it (unseen past the gap)."""
        if self._time is not None and time < self._time:
            raise ValueError(f"frames must come in time order: {time} after {self._time}")
        self._time = time
        closed = [t for t in self._open if time - t.last.time > self.max_gap_s]
        self._open = [t for t in self._open if time - t.last.time <= self.max_gap_s]
        sightings = [Sighting(time, f.box, float(f.score), face_quality(f), np.asarray(f.embedding, np.float32),
                              tuple(f.landmarks)) for f in faces]
        pairs = sorted(
            (cost, t, s)
            for t, track in enumerate(self._open)
            for s, sighting in enumerate(sightings)
            if (cost := self._cost(track, sighting)) is not None
        )
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, t, s in pairs:
            if t in taken_tracks or s in taken_faces:
                continue
            taken_tracks.add(t)
            taken_faces.add(s)
            self._open[t].add(sightings[s], frame)
        self._open.extend(_Track(sighting, frame) for s, sighting in enumerate(sightings) if s not in taken_faces)
        return [self._appearance(t) for t in closed]

    @property
    def open_count(self) -> int:
        """Appearances still open (seen within the gap), not yet returned."""
        return len(self._open)

    def finish(self) -> list[Appearance]:
        """Close every open track; the tracker is empty afterwards."""
        closed, self._open = self._open, []
        return [self._appearance(t) for t in closed]

    def _cost(self, track: _Track, sighting: Sighting) -> float | None:
        """The cost of continuing ``track`` with ``sighting``, or None when a gate refuses it."""
        last = track.last
        size = math.sqrt(max(1, last.box.area))
        new_size = math.sqrt(max(1, sighting.box.area))
        if not 1 / _MAX_SCALE_CHANGE <= new_size / size <= _MAX_SCALE_CHANGE:
            return None
        shift = math.dist(_centre(last.box), _centre(sighting.box)) / size
        if shift > self.max_speed * max(sighting.time - last.time, 1 / self.max_speed):
            return None
        distance = min(_distance(last.embedding, sighting.embedding),
                       _distance(track.best.embedding, sighting.embedding))
        if distance > self.link_distance:
            return None
        return distance + _POSITION_WEIGHT * shift

    def _appearance(self, track: _Track) -> Appearance:
        sightings = tuple(track.sightings)
        chosen = [np.mean([s.embedding for s in sightings], axis=0, dtype=np.float64).astype(np.float32)]
        diverse: list[Sighting] = []
        while len(chosen) < self.representatives:
            far, pick = max(((min(_distance(s.embedding, c) for c in chosen), s) for s in sightings),
                            key=lambda pair: pair[0])
            if far < self.diverse_distance:
                break
            chosen.append(pick.embedding)
            diverse.append(pick)
        return Appearance(
            start=sightings[0].time, end=sightings[-1].time, sightings=sightings, templates=np.stack(chosen),
            diverse=tuple(diverse), best=track.best, still=track.still,
        )


def link_appearances(frames: Iterable[tuple[float, Sequence[Face]] | tuple[float, Sequence[Face], Any]],
                     **options: Any) -> list[Appearance]:
    """Every appearance in ``frames`` (time, faces[, frame]) in time order, by their start.

    ``options`` are :class:`AppearanceTracker`'s (``link_distance`` is required).
    """
    tracker = AppearanceTracker(**options)
    found: list[Appearance] = []
    for time, faces, *frame in frames:
        found.extend(tracker.add(time, faces, frame[0] if frame else None))
    found.extend(tracker.finish())
    return sorted(found, key=lambda a: (a.start, a.end))


def _centre(box: Box) -> tuple[float, float]:
    return ((box.left + box.right) / 2, (box.top + box.bottom) / 2)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))
