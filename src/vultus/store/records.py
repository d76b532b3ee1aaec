"""What the store hands out and takes in, whatever its backend: records of sources, faces and erasures, and its clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

__all__ = ["SourceRecord", "NewFace", "FaceHit", "RemovedImage", "utcnow", "iso"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a Z: sortable as text, unambiguous to read."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SourceRecord:
    """A registered source and its provenance."""

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
class FaceHit:
    """A stored face with the provenance of its image, for candidates and access reports."""

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


@dataclass(frozen=True)
class RemovedImage:
    """What deleting one image removed from the store (its blobs are the caller's to delete)."""

    image_id: int
    sha256: str
    source: str
    blob_key: str | None
    crop_keys: list[str]
    face_ids: list[int]
