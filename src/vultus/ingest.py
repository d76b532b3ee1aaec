"""Ingest: index the photos of a registered source, in parallel, idempotently and crash-safely.

What is ingested is a media item (``vultus.media``): its identity is its sha256, and it is
what a worker receives, bytes and all for a photo (a decoder that reads from where an item
is sends only its location). A worker analyses a photo with :mod:`vultus.photo_ingest` and a
video (an item of many frames) with :mod:`vultus.video_ingest`; this module runs the pool and
stores what comes back.

The order of writes is what makes a crash harmless. For each photo: its blob copy and
crops are written first (content-addressed, atomically), then its image and face rows
commit in one transaction, then its templates go into the index, which is flushed
every few hundred photos and at the end. A kill at any point leaves either a stored photo
(whose templates the next open re-adds to the index from the store) or no row at all
(whose blob the re-run overwrites in place). A re-run skips every sha256 already stored.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from .errors import MediaError, WorkerCrashedError
from .faces import Aligner, Embedder, FaceAnalyzer, QualityGate, create_aligner, create_embedder
from .index import VectorIndex
from .media import Item, MediaItem, MediaKind, collect, read_media, redact_regions
from .media.decode import DEFAULT_MAX_DECODE_MB
from .people import Placer
from .photo_ingest import FoundFace, PhotoAnalysis, analyze_item, analyze_photo
from .policy import SuppressionCheck, check_gallery_model, refuse_remote
from .store import AuditAction, BlobStore, NewFace, SourceRecord, MetadataStore, iso, utcnow
from .video_ingest import (VideoAnalysis, VideoLimits, VideoProgress, analyze_video, progress_queue, relay_progress,
                           set_worker_queue, store_video, worker_reporter)
from .executors import open_executor
from .workers import main_is_importable

if TYPE_CHECKING:  # the parts an ingest runs on; they import this module's types
    from .config import Settings
    from .deployment import Deployment
    from .gallery import Gallery

__all__ = ["IngestSummary", "Ingestor", "analyze_item", "analyze_photo", "FoundFace", "PhotoAnalysis", "SuppressionCheck"]

#: Flush the index after this many stored photos (and at the end), bounding re-adds after a crash.
FLUSH_EVERY = 200
#: Frames of one video analysed at once in a worker (its threads; see _make_job).
VIDEO_LANES = 2


@dataclass
class IngestSummary:
    """What one ingest did, for the summary printed at its end."""

    source: str
    #: The detector that found the faces (a gallery may hold faces of several).
    detector: str = ""
    images: int = 0
    faces: int = 0
    no_face: int = 0
    duplicates: int = 0
    #: Faces skipped because their owner objected (GDPR Art. 21), and photos left out
    #: entirely because every face in them was such a face.
    suppressed_faces: int = 0
    suppressed_photos: int = 0
    #: Videos stored, and the appearances of people in them (each one stored face).
    videos: int = 0
    appearances: int = 0
    #: Faces left out by the quality gate, by reason (``too_small``, ``low_score``).
    low_quality: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The index was rebuilt after the ingest, as this kind (``ivf`` once the gallery has
    #: crossed VULTUS_IVF_THRESHOLD or grown past the IVF's training size), and how long
    #: that took (not counted in ``seconds``).
    index_rebuilt: str | None = None
    index_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = self.images + self.no_face
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "detector": self.detector,
            "images": self.images,
            "faces": self.faces,
            "no_face": self.no_face,
            "duplicates": self.duplicates,
            "suppressed_faces": self.suppressed_faces,
            "suppressed_photos": self.suppressed_photos,
            "videos": self.videos,
            "appearances": self.appearances,
            "low_quality": dict(sorted(self.low_quality.items())),
            "refused": [{"path": p, "reason": r} for p, r in self.refused],
            "ignored": self.ignored,
            "seconds": round(self.seconds, 2),
            "index_rebuilt": self.index_rebuilt,
            "index_seconds": round(self.index_seconds, 2),
        }


# -- worker process side ------------------------------------------------------------------

@dataclass
class _Job:
    """What a worker needs to analyze photos, built once per process."""

    analyzer: FaceAnalyzer
    max_pixels: int
    max_decode_mb: int
    gate: QualityGate
    others: list[tuple[str, Aligner, Embedder]]
    screen: bool
    video: VideoLimits = VideoLimits()


_WORKER_JOB: _Job | None = None


def _make_job(detector: str, embedder: str, detect_size: int | None, max_pixels: int, max_decode_mb: int,
              gate: QualityGate, other_embedders: Sequence[tuple[str, str]], screen: bool,
              video: VideoLimits = VideoLimits()) -> _Job:
    others = []
    for model_id, name in other_embedders:
        other = create_embedder(name)
        others.append((model_id, create_aligner(other.aligner), other))
    # Lanes are made as they are used: photos use one, a video's frames VIDEO_LANES at once
    # (a worker's onnxruntime runs one thread, so one video alone still uses two cores).
    analyzer = FaceAnalyzer.from_names(detector, embedder, detect_size=detect_size, min_face=gate.min_face_size,
                                       lanes=VIDEO_LANES)
    return _Job(analyzer, max_pixels, max_decode_mb, gate, others, screen, video)


def _init_worker(queue: object, *args: object) -> None:
    global _WORKER_JOB
    set_worker_queue(queue)
    _WORKER_JOB = _make_job(*args)  # type: ignore[arg-type]


def _work(item: MediaItem) -> PhotoAnalysis | VideoAnalysis | str:
    assert _WORKER_JOB is not None
    return _analyze_or_reason(_WORKER_JOB, item, worker_reporter(item.name))


def _analyze_or_reason(job: _Job, item: MediaItem, report: Callable | None = None) -> PhotoAnalysis | VideoAnalysis | str:
    """Analyze one item; a problem with it comes back as its message, not an exception."""
    try:
        if item.kind == MediaKind.VIDEO:
            return analyze_video(job.analyzer, item, gate=job.gate, limits=job.video, others=job.others,  # type: ignore[arg-type]
                                 report=report)
        return analyze_item(job.analyzer, item, max_pixels=job.max_pixels, max_decode_mb=job.max_decode_mb,
                            gate=job.gate, others=job.others, screen=job.screen)
    except MediaError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd photo must not stop a batch
        return f"{item.name}: could not be processed ({type(exc).__name__}: {exc})"


# -- main process side --------------------------------------------------------------------


class Ingestor:
    """Runs one ingest into a store, a blob folder and an index."""

    def __init__(
        self,
        *,
        store: MetadataStore,
        blobs: BlobStore,
        index: VectorIndex,
        analyzer: Callable[[], FaceAnalyzer],
        detector: str,
        embedder: str,
        model_id: str,
        detect_size: int | None,
        max_pixels: int,
        actor: str,
        max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
        suppression: Sequence[SuppressionCheck] = (),
        gate: QualityGate | None = None,
        video: VideoLimits | None = None,
        group_distance: float | None = None,
        executor: str = "pool",
        ray_address: str | None = None,
    ):
        self.store = store
        #: Where photos are analysed (vultus.executors): ``pool`` or ``ray``, at ``ray_address``.
        self.executor, self.ray_address = executor, ray_address
        self.blobs = blobs
        self.index = index
        self._analyzer = analyzer
        self.gate = gate or QualityGate()
        self.suppression = list(suppression)
        others = [(c.model_id, c.embedder) for c in self.suppression if c.embedder is not None]
        self._names: tuple = (detector, embedder, detect_size, max_pixels, max_decode_mb, self.gate, others, False,
                              video or VideoLimits())
        self.model_id = model_id
        self.max_pixels = max_pixels
        self.max_decode_mb = max_decode_mb
        self.actor = actor
        self._suppressed: list[tuple[SuppressionCheck, np.ndarray]] = []
        # Distance at which a new face joins a person of a source that groups its faces
        # (default: the embedder's match distance).
        self.group_distance = group_distance
        self._placer: Placer | None = None

    def run(
        self,
        paths: Iterable[str],
        *,
        source: str,
        workers: int,
        progress: Callable[[int, int, int], None] | None = None,
        rename: tuple[str, str] | None = None,
        root: str | None = None,
        video_progress: VideoProgress | None = None,
    ) -> IngestSummary:
        """Ingest every photo and video under ``paths`` into ``source``.

        ``progress(done, total, faces)`` is called after each item, ``video_progress(name,
        frames done, frames expected, appearances)`` every few frames of a video. ``rename=(old, new)``
        records paths starting with ``old`` as starting with ``new`` instead (uploads are
        recorded as ``upload:NAME``, not by their temporary location). With ``root``, files
        whose real path is outside it are refused (see :func:`~vultus.media.collect`).
        Every check that can refuse the whole request runs before anything is stored.
        """
        paths = [str(p) for p in paths]
        self._rename, self._video_progress, self._queue = rename, video_progress, None
        refuse_remote(paths)
        src = self.store.get_source(source)
        check_gallery_model(self.store.model_ids(), self.model_id)
        found = collect(paths, root=root)
        summary = IngestSummary(source=src.name, detector=self._names[0], refused=list(found.refused),
                                ignored=list(found.ignored))
        # Decrypted in memory for this run only: faces of people who objected are skipped.
        self._suppressed = [(c, self.store.registers.active_templates(c.model_id)) for c in self.suppression]
        # With suppression entries, faces too small to index are still screened against them.
        self._names = (*self._names[:7], any(len(t) for _, t in self._suppressed), *self._names[8:])
        distance = self.group_distance
        if distance is None and self.store.people.clustering(src.id):
            distance = self._analyzer().embedder.spec.match_distance
        self._placer = Placer.for_source(self.store, src, model_id=self.model_id, distance=distance or 0.0,
                                         actor=self.actor)
        started = time.monotonic()
        state = _RunState(total=len(found.items), progress=progress)
        try:
            if self.executor == "pool" and (workers <= 1 or not main_is_importable()):
                self._run_inline(found.items, src, summary, state)
            else:
                self._run_pool(found.items, src, summary, state, workers)
        finally:
            self.index.flush()
            if self._placer is not None:
                self._placer.finish()
            summary.seconds = time.monotonic() - started
            details = summary.as_dict()
            details["refused"] = len(summary.refused)
            details["ignored"] = len(summary.ignored)
            details["paths"] = paths
            self.store.log(actor=self.actor, action=AuditAction.INGEST, details=details)
        return summary

    def label(self, display: str) -> str:
        """The path recorded for ``display`` (an upload is recorded as ``upload:NAME``)."""
        rename = getattr(self, "_rename", None)
        if rename and display.startswith(rename[0]):
            return rename[1] + display[len(rename[0]) :]
        return display

    def place(self, face_ids: Sequence[int], vectors: Sequence[np.ndarray]) -> None:
        """Place newly stored faces into the people of their source, when it groups its faces.

        After their rows are committed: a crash in between leaves them unassigned, which the
        next full clustering run sees to.
        """
        if self._placer is not None and len(face_ids):
            self._placer.place(face_ids, vectors)

    @property
    def suppressed(self) -> list[tuple[SuppressionCheck, np.ndarray]]:
        """This run's suppression checks, each with its active templates (decrypted for the run)."""
        return self._suppressed

    def _is_suppressed(self, result: PhotoAnalysis, number: int) -> bool:
        """Whether face ``number`` of ``result`` is of someone with a suppression entry."""
        for check, templates in self._suppressed:
            if not len(templates):
                continue
            if check.embedder is None:
                vector = result.faces[number].embedding
            else:
                vector = result.extra[check.model_id][number]
            if np.min(np.linalg.norm(templates - vector, axis=1)) <= check.radius:
                return True
        return False

    def _candidates(self, items: list[Item], summary: IngestSummary, state: "_RunState"):
        """Yield (item, media item) for items not stored yet; count the rest."""
        seen: set[str] = set()
        for item, media in read_media(items):
            if isinstance(media, Exception):
                summary.refused.append((item.display, f"cannot be read ({media})"))
                state.tick(summary)
                continue
            digest = media.sha256
            if digest in seen or self.store.known_sha256([digest]):
                summary.duplicates += 1
                state.tick(summary)
                continue
            seen.add(digest)
            yield item, media

    def _run_inline(self, items: list[Item], src: SourceRecord, summary: IngestSummary, state: "_RunState") -> None:
        job = _make_job(*self._names)
        job.analyzer = self._analyzer()  # the engine's, loaded once for ingest and search alike
        tell = self._video_progress
        for item, media in self._candidates(items, summary, state):
            report = (lambda d, e, a, name=media.name: tell(name, d, e, a)) if tell is not None else None
            self._store_one(item, media, _analyze_or_reason(job, media, report), src, summary, state)

    def _run_pool(
        self, items: list[Item], src: SourceRecord, summary: IngestSummary, state: "_RunState", workers: int
    ) -> None:
        pending: dict[Future, tuple[Item, MediaItem]] = {}
        try:
            # Spawned workers with their share of the cores, which exit when this process dies;
            # the pool lives inside this call, on one thread (see worker_pool).
            # (a video's progress is relayed from local workers only: a Ray task cannot reach this queue)
            local = self.executor == "pool"
            self._queue = progress_queue() if self._video_progress is not None and local else None
            with open_executor(self.executor, workers=workers, initializer=_init_worker,
                               args=(self._queue, *self._names), ray_address=self.ray_address) as pool:
                for item, media in self._candidates(items, summary, state):
                    # The media item is what the worker gets: a photo's bytes, or a location.
                    pending[pool.submit(_work, media)] = (item, media)
                    # A bounded window keeps memory flat however many photos there are.
                    if len(pending) >= workers * 3:
                        self._drain(pending, src, summary, state, block_until=workers * 2)
                self._drain(pending, src, summary, state, block_until=0)
        except BrokenProcessPool as exc:
            # A worker can die between two results, and then the next submit finds the pool broken.
            raise _worker_died("the next photo") from exc

    def _drain(self, pending: dict, src: SourceRecord, summary: IngestSummary, state: "_RunState", *, block_until: int) -> None:
        while len(pending) > block_until:
            # With someone watching a video's progress, its reports are relayed twice a second.
            done, _ = wait(list(pending), timeout=0.5 if self._queue is not None else None, return_when=FIRST_COMPLETED)
            if self._queue is not None:
                relay_progress(self._queue, self._video_progress)  # type: ignore[arg-type]
            for future in done:
                item, media = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    raise _worker_died(item.display) from exc
                self._store_one(item, media, result, src, summary, state)

    def _store_one(
        self,
        item: Item,
        media: MediaItem,
        result: PhotoAnalysis | VideoAnalysis | str,
        src: SourceRecord,
        summary: IngestSummary,
        state: "_RunState",
    ) -> None:
        if isinstance(result, str):
            summary.refused.append((self.label(item.display), result.replace(item.display, self.label(item.display))))
            state.tick(summary)
            return
        if isinstance(result, VideoAnalysis):
            if store_video(self, item, media, result, src, summary) is None:
                summary.duplicates += 1  # another process stored the same video meanwhile
            state.tick(summary)
            return
        now = utcnow()
        blob_key = None
        new_faces = []
        for reason, count in result.rejected.items():
            summary.low_quality[reason] = summary.low_quality.get(reason, 0) + count
        blocked = [self._is_suppressed(result, n) for n in range(len(result.faces))]
        kept = [(n, f) for n, f in enumerate(result.faces) if f.indexable and not blocked[n]]
        objected = [f.box for n, f in enumerate(result.faces) if blocked[n]]
        if objected:
            summary.suppressed_faces += len(objected)
            if not kept:  # only people who objected are in it: nothing of it is stored
                summary.suppressed_photos += 1
                state.tick(summary)
                return
        if kept:
            # Keep a copy only of photos with faces: a photo with none is not needed to search.
            copy = result.copy if result.copy is not None else media.data
            copy_format = result.copy_format or result.format
            if objected:
                try:
                    copy = redact_regions(copy, objected, max_pixels=self.max_pixels, max_decode_mb=self.max_decode_mb)
                except MediaError as exc:  # nothing of it is stored rather than an objector's face
                    summary.refused.append((self.label(item.display), str(exc)))
                    state.tick(summary)
                    return
                copy_format = "JPEG"
            digest = media.sha256
            blob_key = self.blobs.image_key(digest, _extension(copy_format))
            self.blobs.put(blob_key, copy)
            for number, face in kept:
                crop_key = self.blobs.crop_key(digest, number)
                self.blobs.put(crop_key, face.crop)
                new_faces.append(
                    NewFace(face.box, face.landmarks, face.score, face.embedding, self.model_id, crop_key)
                )
        face_ids = self.store.add_image(
            source_id=src.id,
            sha256=media.sha256,
            original_path=self.label(item.display),
            size_bytes=media.size,
            width=result.width,
            height=result.height,
            format=result.format,
            ingested_at=iso(now),
            expires_at=iso(now + timedelta(days=src.retention_days)),
            blob_key=blob_key,
            new_faces=new_faces,
        )
        if face_ids is None:  # another process stored the same photo meanwhile
            summary.duplicates += 1
        elif face_ids:
            self.index.add(np.asarray(face_ids, dtype=np.int64), np.stack([f.embedding for f in new_faces]))
            self.place(face_ids, [f.embedding for f in new_faces])
            summary.images += 1
            summary.faces += len(face_ids)
            state.stored += 1
            if state.stored % FLUSH_EVERY == 0:
                self.index.flush()
        else:
            summary.no_face += 1
        state.tick(summary)


@dataclass
class _RunState:
    total: int
    progress: Callable[[int, int, int], None] | None
    done: int = 0
    stored: int = 0

    def tick(self, summary: IngestSummary) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, summary.faces)


def _worker_died(what: str) -> WorkerCrashedError:
    return WorkerCrashedError(
        f"A worker process died while processing {what} (out of memory, or killed). Everything "
        "stored so far is kept: run the same command again to finish, with --workers 1 if it "
        "happens again. From your own script, put the call under `if __name__ == \"__main__\":`, "
        "since each worker process imports the script again, or pass workers=1."
    )


def _extension(fmt: str) -> str:
    return {"JPEG": "jpg", "TIFF": "tif"}.get(fmt, fmt.lower())


def ingest_paths(paths: Iterable[str], *, source: str, settings: "Settings", deployment: "Deployment",
                 gallery: "Gallery", actor: str, workers: int, progress: Callable[[int, int, int], None] | None = None,
                 rename: tuple[str, str] | None = None, notice: Callable[[str], None] | None = None,
                 root: str | None = None, video_progress: VideoProgress | None = None) -> IngestSummary:
    """Ingest ``paths`` into ``source`` under the deployment's writer lock, then fit the index to the gallery's size.

    ``notice(message)`` is told before the index is rebuilt (a long step with no progress).
    """
    with deployment.writing():
        store = deployment.store
        check_gallery_model(store.model_ids(), gallery.embedder.model_id)
        ingestor = Ingestor(
            store=store, blobs=deployment.blobs, index=gallery.open_index(writable=True),
            analyzer=lambda: gallery.analyzer, detector=settings.detector, embedder=gallery.embedder_name,
            model_id=gallery.embedder.model_id, detect_size=settings.detect_size, max_pixels=settings.max_pixels,
            max_decode_mb=settings.max_decode_mb, actor=actor, suppression=gallery.suppression_checks(),
            gate=QualityGate(settings.min_face_size, settings.min_detector_score),
            video=VideoLimits(settings.video_sample_rate, settings.max_video_seconds, settings.max_video_pixels),
            group_distance=gallery.embedder.spec.match_distance,
            executor=settings.ingest_executor, ray_address=settings.ray_address,
        )
        try:
            summary = ingestor.run(list(paths), source=source, workers=workers, progress=progress, rename=rename,
                                   root=root, video_progress=video_progress)
        finally:
            # Once the gallery holds this model's templates (even from an interrupted run),
            # later commands must use the same model without being told.
            if gallery.embedder.model_id in store.model_ids():
                gallery.remember_model()
        started = time.monotonic()
        summary.index_rebuilt = gallery.fit_index(notice)
        if summary.index_rebuilt:
            summary.index_seconds = time.monotonic() - started
        return summary
