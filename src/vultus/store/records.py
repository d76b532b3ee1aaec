"""What the store hands out and takes in, whatever its backend: records of sources, faces and erasures, and its clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

__all__ = ["SourceRecord", "NewFace", "NewAppearance", "FaceHit", "RemovedImage", "RemovedVideo", "utcnow", "iso"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a Z: sortable as text, unambiguous to read."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SourceRecord:
    """A registered source and its provenance, with the search categories it may be searched for (``purposes``)."""

    id: int
    name: str
    controller: str
    legal_basis: str
    purpose: str
    retention_days: int
    consent_ref: str | None
    created_at: str
    image_count: int = 0
    face_count: int = 0
    #: Search categories (vultus.categories.SearchCategory values) it allows, in vocabulary order.
    purposes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewFace:
    """A face to be stored with its image."""

    box: tuple[int, int, int, int]
    landmarks: Sequence[tuple[float, float]]
    det_score: float
    embedding: np.ndarray
    model_id: str
    crop_key: str | None


@dataclass(frozen=True)
class NewAppearance:
    """One person's stretch on screen in a video, to be stored with the video.

    ``faces`` are its templates (one, or a few), each with the box of the frame it was seen
    in and ``media_times[n]``, that frame's time in seconds from the video's start.
    ``time_start`` and ``time_end`` are the first and last sampled frame it was seen in,
    ``seen_at`` every sampled frame time it was seen at, and ``still_key`` the blob key of
    its still (the best frame with the face's box drawn, already put in the blob store).
    """

    faces: Sequence[NewFace]
    media_times: Sequence[float]
    time_start: float
    time_end: float
    seen_at: Sequence[float]
    still_key: str | None

    def __post_init__(self) -> None:
        # A mistake in the caller, not bad input from a user: fail before anything is stored.
        if not self.faces or len(self.media_times) != len(self.faces):
            raise ValueError("An appearance needs at least one face and one media time per face.")
        if not 0 <= self.time_start <= self.time_end:
            raise ValueError(f"An appearance's time range {self.time_start}..{self.time_end} is not a range.")


@dataclass(frozen=True)
class FaceHit:
    """A stored face with the provenance of its image, for candidates and access reports.

    For a face in a video (``media`` "video"), ``original_path`` and ``sha256`` are the
    video's, ``box`` is in the frame at ``media_time`` seconds, and the appearance it is a
    template of is number ``appearance`` of that video, seen from ``time_start`` to
    ``time_end`` (at the times ``seen_at``), with its still at ``still_key``. For a photo's
    face these are None (``seen_at`` empty) and ``media`` is "photo".
    """

    face_id: int
    image_id: int
    sha256: str
    original_path: str
    box: tuple[int, int, int, int]
    source: str
    legal_basis: str
    purpose: str
    controller: str
    ingested_at: str
    expires_at: str
    crop_key: str | None
    blob_key: str | None
    restricted: bool
    media: str = "photo"
    duration: float | None = None
    appearance: int | None = None
    media_time: float | None = None
    time_start: float | None = None
    time_end: float | None = None
    seen_at: tuple[float, ...] = ()
    still_key: str | None = None

    @property
    def is_video(self) -> bool:
        return self.media == "video"


@dataclass(frozen=True)
class RemovedImage:
    """What deleting one image (a photo, or a video with all its appearances) removed from the store.

    Its blobs are the caller's to delete: ``blob_key`` (a photo's copy), ``crop_keys`` and,
    for a video, ``still_keys``; ``ranges`` are a video's removed appearances as
    (start, end) seconds.
    """

    image_id: int
    sha256: str
    source: str
    blob_key: str | None
    crop_keys: list[str]
    face_ids: list[int]
    media: str = "photo"
    still_keys: list[str] = field(default_factory=list)
    ranges: list[tuple[float, float]] = field(default_factory=list)

    @property
    def blob_keys(self) -> list[str]:
        """Every blob this removal leaves to delete."""
        return ([self.blob_key] if self.blob_key else []) + self.crop_keys + self.still_keys


@dataclass(frozen=True)
class RemovedVideo:
    """What deleting some appearances of one video removed (its blobs are the caller's to delete).

    ``ranges`` are the removed appearances as (start, end) seconds; ``image_removed`` says
    whether the video's own row went too (when none of its appearances was left).
    """

    image_id: int
    sha256: str
    source: str
    crop_keys: list[str]
    still_keys: list[str]
    face_ids: list[int]
    ranges: list[tuple[float, float]]
    image_removed: bool

    @property
    def blob_keys(self) -> list[str]:
        """Every blob this removal leaves to delete."""
        return self.crop_keys + self.still_keys
