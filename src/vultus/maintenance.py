"""Keeping a deployment in shape: its figures, a change of model, and suppression entries withdrawn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Settings
from .errors import ModelError, PolicyError
from .faces import create_embedder
from .gallery import Gallery
from .grouping import settle_people
from .reembed import ModelChange, convert_gallery
from .store import AuditAction, BlobStore, MetadataStore, iso, utcnow

__all__ = ["Stats", "change_model", "stats", "withdraw_suppression"]


@dataclass(frozen=True)
class Stats:
    """Sizes of a deployment, for `vultus stats`."""

    data_dir: str
    sources: int
    images: int
    images_with_faces: int
    faces: int
    #: Videos among the images, and the faces that are their appearances.
    videos: int
    appearances: int
    index_vectors: int
    #: Bytes of the index's own files; None when it keeps none (memory only, or on a server).
    index_bytes: int | None
    #: ``exact``, or ``ivf (nprobe N)`` above the IVF threshold.
    index_kind: str
    disk_bytes: int
    embedder: str
    detector: str
    gallery_models: list[str]
    restricted_faces: int
    audit_entries: int
    open_requests: int
    active_suppressions: int
    purpose_required: bool
    key_file: str


def stats(settings: Settings, store: MetadataStore, gallery: Gallery, data_dir: Path) -> Stats:
    """Counts and sizes of a deployment."""
    counts = store.counts()
    try:
        index = gallery.open_index(writable=False)
        vectors, index_bytes, kind = len(index), index.size_on_disk(), index.capabilities.description
    except ModelError:  # two models (an unfinished `reindex --model`): stats still answer
        vectors, index_bytes, kind = 0, 0, "none (the gallery holds two models)"
    return Stats(
        data_dir=str(data_dir.resolve()),
        sources=counts["sources"],
        images=counts["images"],
        images_with_faces=counts["images_with_faces"],
        faces=counts["faces"],
        videos=counts["videos"],
        appearances=counts["appearances"],
        index_vectors=vectors,
        index_bytes=index_bytes,
        index_kind=kind,
        disk_bytes=sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()),
        embedder=gallery.embedder.model_id,
        detector=settings.detector,
        gallery_models=sorted(store.model_ids()),
        restricted_faces=len(store.restricted_face_ids()),
        audit_entries=store.audit_count(),
        open_requests=sum(1 for r in store.registers.list_requests() if r.completed_at is None),
        active_suppressions=sum(1 for e in store.registers.list_suppressions() if e.withdrawn_at is None),
        purpose_required=settings.purpose_required,
        key_file=str(settings.key_path.resolve()),
    )


def change_model(embedder: str, *, settings: Settings, store: MetadataStore, blobs: BlobStore, gallery: Gallery, actor: str,
                 progress: Callable[[int, int], None] | None = None) -> ModelChange:
    """Re-embed every stored face with ``embedder`` (a name or an ONNX path) and make it the gallery's (writers only).

    Faces are re-aligned from their stored boxes on the stored photo copies. Run again
    after an interruption to finish. Suppression entries keep their old templates and
    are still honoured (see :meth:`Gallery.suppression_checks`); open public requests must
    be carried out first, since their templates cannot be converted.
    """
    new = create_embedder(embedder)
    new_id = new.model_id  # loads and checks the model before anything changes
    waiting = {m: n for m, n in store.registers.open_request_models().items() if m != new_id}
    if waiting:
        raise PolicyError(
            f"{sum(waiting.values())} public request(s) wait with a template of the current model, "
            "which a new model cannot read. Carry them out (`vultus requests`, or the DPO queue) "
            "first, then change the model."
        )
    analyzer = gallery.analyzer_for(new)
    gallery.switch_model(embedder, new, analyzer)
    change = convert_gallery(store, blobs, analyzer, max_pixels=settings.max_pixels,
                             max_decode_mb=settings.max_decode_mb, progress=progress)
    # People's centroids were made by the old model: made again from the new templates.
    with store.transaction():
        store.people.mark_dirty()
        settle_people(store)
    store.log(actor=actor, action=AuditAction.MODEL_CHANGE, details=change.as_dict())
    gallery.rebuild_index()
    return change


def withdraw_suppression(store: MetadataStore, suppression_id: int, *, actor: str) -> bool:
    """Withdraw a suppression entry (its template is erased); whether one was active."""
    with store.transaction():
        done = store.registers.withdraw_suppression(suppression_id, at=iso(utcnow()))
        if done:
            store.log(actor=actor, action=AuditAction.SUPPRESSION_WITHDRAW,
                      details={"suppression_id": suppression_id})
    return done
