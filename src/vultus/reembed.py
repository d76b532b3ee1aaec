"""Convert a gallery to another embedder: re-embed every stored face from its stored copy.

Faces keep their ids, boxes, provenance and restrictions; only their templates (and the
landmarks those were aligned on) change. Each batch of images commits in one
transaction, so an interrupted conversion leaves every face under either the old or the
new model, and running the conversion again finishes it. Until it is finished the
gallery holds two models, and searches are refused rather than compare them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .errors import ImageTooLargeError, MediaError, TamperedDataError
from .faces import Box, Detection, FaceAnalyzer
from .media import read_photo
from .media.decode import DEFAULT_MAX_DECODE_MB
from .store import BlobStore, MetadataStore

__all__ = ["ModelChange", "convert_gallery"]


@dataclass(frozen=True)
class ModelChange:
    """What a conversion did."""

    from_models: list[str]
    to_model: str
    images: int
    faces: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "from_models": self.from_models,
            "to_model": self.to_model,
            "images": self.images,
            "faces": self.faces,
            "seconds": round(self.seconds, 2),
        }


def convert_gallery(
    store: MetadataStore,
    blobs: BlobStore,
    analyzer: FaceAnalyzer,
    *,
    max_pixels: int,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
    progress: Callable[[int, int], None] | None = None,
) -> ModelChange:
    """Re-embed every face not yet made by ``analyzer``'s embedder; ``progress(done, total)``."""
    target = analyzer.model_id
    before = store.face_models()
    total = sum(count for model, count in before.items() if model != target)
    started = time.monotonic()
    images = done = 0
    undo = (f"Restore the data directory from a backup, or go back to the gallery's previous model "
            f"with `vultus reindex --model {' / '.join(sorted(set(before) - {target})) or 'NAME'}`.")
    while True:
        batch = store.faces_to_reembed(target)
        if not batch:
            break
        updates = []
        for image_id, blob_key, rows in batch:
            if blob_key is None:
                raise TamperedDataError(
                    f"Stored image {image_id} has faces but no stored copy to re-embed them from. {undo}"
                )
            try:
                image = read_photo(blobs.get(blob_key), name=f"stored image {image_id}", max_pixels=max_pixels,
                                   max_decode_mb=max_decode_mb)
            except ImageTooLargeError as exc:
                # Stored under the limits of its ingest; lowered since, they refuse it now.
                raise ImageTooLargeError(
                    f"The stored copy of image {image_id} is over the current limits ({exc}). Raise "
                    "VULTUS_MAX_PIXELS or VULTUS_MAX_DECODE_MB back to what it was ingested with, and run "
                    "this again to finish."
                ) from None
            except MediaError as exc:
                raise TamperedDataError(f"The stored copy of image {image_id} cannot be read ({exc}). {undo}") from None
            detections = [Detection(Box(*box), score) for _, box, score in rows]
            for (face_id, _, _), face in zip(rows, analyzer.reembed(image.rgb, detections)):
                updates.append((face_id, face.embedding, face.landmarks))
            images += 1
        store.replace_templates(updates, target)
        done += len(updates)
        if progress is not None:
            progress(done, total)
    return ModelChange(
        from_models=sorted(m for m in before if m != target),
        to_model=target,
        images=images,
        faces=done,
        seconds=time.monotonic() - started,
    )
