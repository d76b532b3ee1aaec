"""Analysis of a photo: its frame decoded (a JPEG's draft decode for detection), its faces found,
aligned and embedded, the quality gate applied, and the copy to keep.

The worker side of photo ingest; :mod:`vultus.ingest` runs it in its pool and stores what it
returns, and :mod:`vultus.video_ingest` is its counterpart for items of many frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .faces import Aligner, Detection, Embedder, FaceAnalyzer, QualityGate, embed_detections
from .media import PHOTO_FRAME, Frame, MediaItem, face_crop_jpeg, no_picture, open_media
from .media.decode import DEFAULT_MAX_DECODE_MB

__all__ = ["FoundFace", "PhotoAnalysis", "analyze_item", "analyze_photo"]


@dataclass(frozen=True)
class FoundFace:
    """One face as a worker returns it: plain data, cheap to pickle."""

    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    embedding: np.ndarray
    crop: bytes
    #: False for a face the quality gate leaves out, returned only to be screened against
    #: suppression entries (an objector's face is blacked out of the copy however small).
    indexable: bool = True
    #: The frame of its item the face is in and that frame's time in seconds: PHOTO_FRAME and
    #: None for a photo (a video's faces are stored as appearances, by vultus.video_ingest).
    frame: str = PHOTO_FRAME
    time: float | None = None


@dataclass(frozen=True)
class PhotoAnalysis:
    """A decoded item's size and format, the faces found in it, and the copy to keep.

    ``copy`` is the picture kept of the frame the faces are in (for a photo: the photo
    without location tags when they had to be removed), in ``copy_format``, or None when
    the item's own bytes can be kept as they are. Size and copy are of that frame.
    """

    width: int
    height: int
    format: str
    faces: tuple[FoundFace, ...]
    copy: bytes | None = None
    copy_format: str = ""
    #: Faces the quality gate left out, by reason.
    rejected: dict[str, int] = field(default_factory=dict)
    #: Templates of the same faces under earlier models that have suppression entries.
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def analyze_photo(
    analyzer: FaceAnalyzer,
    data: bytes,
    *,
    name: str,
    max_pixels: int,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
    gate: QualityGate | None = None,
    others: Sequence[tuple[str, Aligner, Embedder]] = (),
    screen: bool = False,
) -> PhotoAnalysis:
    """Decode the photo (or other item) in ``data`` and analyse it: :func:`analyze_item`."""
    return analyze_item(analyzer, open_media(data, name=name), max_pixels=max_pixels, max_decode_mb=max_decode_mb,
                        gate=gate, others=others, screen=screen)


def analyze_item(
    analyzer: FaceAnalyzer,
    item: MediaItem,
    *,
    max_pixels: int,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
    gate: QualityGate | None = None,
    others: Sequence[tuple[str, Aligner, Embedder]] = (),
    screen: bool = False,
) -> PhotoAnalysis:
    """Decode each frame of ``item`` and find, align and embed its faces (raises MediaError).

    With a ``gate``, faces that fail it are counted, not embedded, unless ``screen`` (there
    are suppression entries): then they are embedded and returned as not indexable, to be
    checked against those entries. ``others`` are (model id, aligner, embedder) of earlier
    models whose templates are needed too. This is for photos (one frame); items of many
    frames are linked into appearances by :mod:`vultus.video_ingest`.
    """
    # Detection runs on a JPEG's draft decode where it can; the full resolution is decoded
    # for the chips only, so a photo with no face is never decoded in full.
    rejected: Counter[str] = Counter()
    size: tuple[int, int] | None = None
    chosen: tuple[Frame, tuple[FoundFace, ...], dict[str, np.ndarray]] | None = None
    for frame in item.frames(max_pixels=max_pixels, max_decode_mb=max_decode_mb,
                             detection_scale=lambda w, h: analyzer.plan(w, h).scale):
        found, extra, frame_rejected = _analyze_frame(analyzer, frame, gate=gate, others=others, screen=screen)
        rejected.update(frame_rejected)
        if found and chosen is not None:  # items of many frames go to video_ingest, not here
            raise ValueError(f"{item.name}: a photo with faces in two frames ({chosen[0].key!r}, {frame.key!r})")
        if found or size is None:
            size = frame.size
        if found:
            chosen = (frame, found, extra)
    if size is None:
        raise no_picture(item)
    copy, copy_format = None, item.format
    if chosen is not None:  # only items with faces are kept, so only they need a copy
        copy, copy_format = item.still(chosen[0])
        if copy is None and item.data is None:
            raise TypeError(f"{type(item).__name__}.still gave no picture for an item whose bytes are not held")
    found, extra = (chosen[1], chosen[2]) if chosen is not None else ((), {
        model_id: np.zeros((0, embedder.spec.dim), dtype=np.float32) for model_id, _, embedder in others})
    return PhotoAnalysis(size[0], size[1], item.format, found, copy, copy_format, dict(rejected), extra)


def _analyze_frame(analyzer: FaceAnalyzer, frame: Frame, *, gate: QualityGate | None,
                   others: Sequence[tuple[str, Aligner, Embedder]], screen: bool,
                   ) -> tuple[tuple[FoundFace, ...], dict[str, np.ndarray], dict[str, int]]:
    """The faces of one frame (indexable first, then those screened only), the templates of
    ``others`` for them, and the faces the gate left out by reason."""
    image = frame.pixels
    screened: list = []
    if gate is None:
        faces, rejected = analyzer.analyze(image), {}
    else:
        faces, rejected, failed = analyzer.analyze_gated(image, gate, embed_rejected=screen)
        screened = failed if screen else []
    if not faces and not screened:
        return (), {}, dict(rejected)
    extra = {}
    for model_id, aligner, embedder in others:
        detections = [Detection(f.box, f.score) for f in [*faces, *screened]]
        extra[model_id] = embed_detections(frame.rgb, detections, aligner, embedder)[1]
    found = tuple(
        FoundFace(
            box=tuple(face.box.as_list()),  # type: ignore[arg-type]
            landmarks=face.landmarks,
            score=face.score,
            embedding=np.asarray(face.embedding, dtype=np.float32),
            crop=face_crop_jpeg(frame.rgb, tuple(face.box.as_list())),  # type: ignore[arg-type]
            frame=frame.key,
            time=frame.time,
        )
        for face in faces
    ) + tuple(
        FoundFace(tuple(f.box.as_list()), f.landmarks, f.score, np.asarray(f.embedding, dtype=np.float32), b"",  # type: ignore[arg-type]
                  False, frame.key, frame.time)
        for f in screened
    )
    return found, extra, dict(rejected)
