"""Ingest of a video: frames sampled, faces found in each, linked into appearances, stored with their stills.

In the worker, :func:`analyze_video` samples the video at the deployment's rate, runs the
face pipeline on each sampled frame (the quality gate applies per frame), and links the
faces into :class:`~vultus.faces.tracks.Appearance` s, so that a person on screen for thirty
seconds is one appearance, not sixty faces. Each appearance keeps one template (the mean of
its sightings', the rule measured best by ``bench/appearances.py``), the box, time and crop of
its best sighting, and a still of that frame with the face outlined and **every other face
in it blacked out**: a still shows only the person it is kept for, so that erasing someone
erases every picture of them, and an objector never appears in another person's still.

In the ingest process, :func:`store_video` leaves out the appearances of people who objected
(any of their sightings within the suppression radius), puts the crops and stills in the
blob store, and stores the video and its appearances in one transaction; the video itself is
never kept (data minimisation).
"""

from __future__ import annotations

import math
import multiprocessing
import queue as queues
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .faces import Aligner, AppearanceTracker, Detection, Embedder, FaceAnalyzer, QualityGate, embed_detections
from .media import face_crop_jpeg, still_jpeg
from .media.video import DEFAULT_MAX_VIDEO_PIXELS, DEFAULT_MAX_VIDEO_SECONDS, DEFAULT_SAMPLE_RATE
from .store import NewAppearance, NewFace, SourceRecord, iso, utcnow

if TYPE_CHECKING:
    from .media import Item, VideoItem

__all__ = ["VideoLimits", "FoundAppearance", "VideoAnalysis", "VideoProgress", "analyze_video", "store_video",
           "progress_queue", "set_worker_queue", "worker_reporter", "relay_progress"]

#: ``progress(name, frames done, frames expected, appearances so far)``, told as a video is analysed.
VideoProgress = Callable[[str, int, int, int], None]
#: How much a video frame may be blown up for detection: not at all (see analyze_video).
VIDEO_MAX_UPSCALE = 1.0
#: Sampled frames between two progress reports.
_REPORT_EVERY = 5
#: In a worker process: where its progress reports go (None: nobody listens).
_WORKER_QUEUE: Any = None


def progress_queue() -> Any:
    """A queue that worker processes (spawned) can report video progress to."""
    return multiprocessing.get_context("spawn").Queue()


def set_worker_queue(queue: Any) -> None:
    """In a worker process: send this process's video progress to ``queue`` (or nowhere)."""
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue


def worker_reporter(name: str) -> Callable[[int, int, int], None] | None:
    """In a worker process: the ``report`` for :func:`analyze_video` of item ``name``, if anyone listens."""
    if _WORKER_QUEUE is None:
        return None
    return lambda done, expected, appearances: _WORKER_QUEUE.put_nowait((name, done, expected, appearances))


def relay_progress(queue: Any, progress: VideoProgress) -> None:
    """In the ingest process: hand every report waiting in ``queue`` to ``progress``."""
    while True:
        try:
            progress(*queue.get_nowait())
        except queues.Empty:
            return


@dataclass(frozen=True)
class VideoLimits:
    """How videos are read: samples a second, the longest and the largest accepted."""

    rate: float = DEFAULT_SAMPLE_RATE
    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS
    max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS


@dataclass(frozen=True)
class FoundAppearance:
    """One appearance as a worker returns it: plain data, cheap to pickle."""

    start: float
    end: float
    times: tuple[float, ...]
    #: The template stored for it (the mean of its sightings'), and every sighting's own,
    #: which are screened against suppression entries and then dropped.
    template: np.ndarray
    sightings: np.ndarray
    #: Its best sighting: where, when, how sure; a crop of the face and the still of that frame.
    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    time: float
    crop: bytes
    still: bytes
    #: Templates of the best sighting under earlier models that have suppression entries.
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoAnalysis:
    """A video's size and length, the frames sampled and faces seen, and its appearances."""

    width: int
    height: int
    duration: float
    format: str
    samples: int
    faces_seen: int
    appearances: tuple[FoundAppearance, ...]
    #: Faces the quality gate left out, by reason, over every sampled frame.
    rejected: dict[str, int] = field(default_factory=dict)


def analyze_video(analyzer: FaceAnalyzer, item: "VideoItem", *, gate: QualityGate, limits: VideoLimits,
                  others: Sequence[tuple[str, Aligner, Embedder]] = (), threads: int = 1,
                  report: Callable[[int, int, int], None] | None = None) -> VideoAnalysis:
    """Sample ``item``, find the faces of each frame and link them into appearances (raises VideoError).

    Frames are analysed by up to ``analyzer.lanes`` threads at once while the next ones are
    decoded, and handed to the tracker in time order. ``others`` are (model id, aligner,
    embedder) of earlier models with suppression entries: the best sighting of each
    appearance is embedded with them too. ``report(frames done, frames expected, appearances
    so far)`` is told every few frames and at the end.
    """
    # A real video is checked against the limits before any frame is analysed; any item of
    # many frames (a test's fake type) is linked into appearances the same way.
    probe = getattr(item, "probe", None)
    info = probe(max_seconds=limits.max_seconds, max_video_pixels=limits.max_pixels) if probe else None
    tracker = AppearanceTracker(link_distance=analyzer.embedder.spec.match_distance)
    expected = math.ceil(info.duration * limits.rate) if info is not None else 0
    rejected: Counter[str] = Counter()
    found: list[FoundAppearance] = []
    samples = seen = 0

    def analyse(rgb: np.ndarray) -> tuple[list, Counter, list]:
        # Frames are never blown up for detection (photos are, to YuNet's 960 px): a person is
        # seen in many frames, and on the shared clip native size found more faces (55 against
        # 42), the same matches for Miranda, at 1.3-1.7x the speed (bench/video.py).
        return analyzer.analyze_gated(rgb, gate, max_upscale=VIDEO_MAX_UPSCALE)

    def take(time: float, rgb: np.ndarray, future: Future) -> None:
        nonlocal samples, seen
        faces, frame_rejected, failed = future.result()
        samples += 1
        seen += len(faces)
        rejected.update(frame_rejected)
        # The frame travels with each track only as its best sighting's still-to-be.
        boxes = [tuple(f.box.as_list()) for f in [*faces, *failed]]
        found.extend(_found(a, others) for a in tracker.add(time, faces, (rgb, boxes)))
        if report is not None and samples % _REPORT_EVERY == 0:
            report(samples, max(expected, samples), len(found) + tracker.open_count)

    window: deque[tuple[float, np.ndarray, Future]] = deque()
    size, last = (0, 0), 0.0
    with ThreadPoolExecutor(max_workers=analyzer.lanes, thread_name_prefix="vultus-video") as pool:
        for frame in item.frames(max_pixels=limits.max_pixels, max_decode_mb=0, rate=limits.rate,
                                 max_seconds=limits.max_seconds, max_video_pixels=limits.max_pixels, threads=threads):
            size, last = frame.size, frame.time or 0.0
            window.append((frame.time, frame.rgb, pool.submit(analyse, frame.rgb)))
            # A few frames ahead keep every lane busy; more would only hold memory.
            while len(window) > analyzer.lanes * 2:
                take(*window.popleft())
        while window:
            take(*window.popleft())
    found.extend(_found(a, others) for a in tracker.finish())
    if report is not None:
        report(samples, samples, len(found))
    found.sort(key=lambda a: (a.start, a.end))
    width, height = (info.width, info.height) if info is not None else size
    duration = max(info.duration, last) if info is not None else last  # a header can understate it
    return VideoAnalysis(width, height, duration, item.format, samples, seen, tuple(found), dict(rejected))


def _found(appearance: Any, others: Sequence[tuple[str, Aligner, Embedder]]) -> FoundAppearance:
    rgb, boxes = appearance.still
    best = appearance.best
    box = tuple(best.box.as_list())
    extra = {}
    for model_id, aligner, embedder in others:
        extra[model_id] = embed_detections(rgb, [Detection(best.box, best.score)], aligner, embedder)[1]
    return FoundAppearance(
        start=appearance.start, end=appearance.end, times=appearance.times,
        template=np.asarray(appearance.template, dtype=np.float32),
        sightings=np.stack([s.embedding for s in appearance.sightings]).astype(np.float32),
        box=box, landmarks=tuple(best.landmarks), score=best.score, time=best.time,  # type: ignore[arg-type]
        crop=face_crop_jpeg(rgb, box),  # type: ignore[arg-type]
        still=still_jpeg(rgb, box, redact=[b for b in boxes if b != box]),  # type: ignore[arg-type]
        extra=extra,
    )


def store_video(ingestor: Any, item: "Item", media: "VideoItem", result: VideoAnalysis, src: SourceRecord,
                summary: Any) -> list[int] | None:
    """Store the appearances of ``result`` whose people did not object; return the new face ids
    (None when another process stored the same video meanwhile).

    ``ingestor`` is the :class:`~vultus.ingest.Ingestor` running (its store, blobs, index,
    model id and suppression entries), ``summary`` its :class:`~vultus.ingest.IngestSummary`.
    """
    for reason, count in result.rejected.items():
        summary.low_quality[reason] = summary.low_quality.get(reason, 0) + count
    kept = [a for a in result.appearances if not _objected(ingestor, a)]
    summary.suppressed_faces += len(result.appearances) - len(kept)
    digest = media.sha256
    appearances = []
    for number, appearance in enumerate(kept):
        crop_key = ingestor.blobs.crop_key(digest, number)
        still_key = ingestor.blobs.still_key(digest, number)
        # The blobs first: a crash before the rows leaves only files the next writer sweeps.
        ingestor.blobs.put(crop_key, appearance.crop)
        ingestor.blobs.put(still_key, appearance.still)
        appearances.append(NewAppearance(
            faces=[NewFace(appearance.box, appearance.landmarks, appearance.score, appearance.template,
                           ingestor.model_id, crop_key)],
            media_times=[appearance.time], time_start=appearance.start, time_end=appearance.end,
            seen_at=appearance.times, still_key=still_key,
        ))
    now = utcnow()
    face_ids = ingestor.store.add_video(
        source_id=src.id, sha256=digest, original_path=ingestor.label(item.display), size_bytes=media.size,
        width=result.width, height=result.height, duration=result.duration, format=result.format,
        ingested_at=iso(now), expires_at=iso(now + timedelta(days=src.retention_days)), appearances=appearances,
    )
    if face_ids:
        ingestor.index.add(np.asarray(face_ids, dtype=np.int64), np.stack([a.template for a in kept]))
        ingestor.place(face_ids, [a.template for a in kept])
    if face_ids is not None:
        summary.videos += 1
        summary.appearances += len(face_ids)
    return face_ids


def _objected(ingestor: Any, appearance: FoundAppearance) -> bool:
    """Whether ``appearance`` is of someone with a suppression entry: any of its sightings, or the
    mean template that would be stored (a mean can come nearer than each sighting), matches."""
    for check, templates in ingestor.suppressed:
        if not len(templates):
            continue
        if check.embedder is None:
            vectors = np.vstack([appearance.sightings, appearance.template[None, :]])
        else:
            vectors = appearance.extra[check.model_id]
        distances = np.linalg.norm(templates[None, :, :] - vectors[:, None, :], axis=2)
        if float(distances.min()) <= check.radius:
            return True
    return False
