"""Retention and key upkeep: purge what has expired, rotate the encryption key.

GDPR Art. 5(1)(e) and BIPA 15(a): nothing is kept past its time. Every image's (and
video's) expiry comes from its source's retention; a purge removes expired images, and
videos with all their appearances and stills, through the same erasure path as a person's
request, with a signed receipt and an audit entry.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from .crypto import Keyring
from .index import VectorIndex
from .erasures import erase_images
from .store import AuditAction, BlobStore, MetadataStore, iso

__all__ = ["purge_expired", "rotate_keys"]


def purge_expired(
    *, now: datetime, store: MetadataStore, blobs: BlobStore, index: VectorIndex, keys: Keyring, actor: str
) -> dict[str, Any]:
    """Remove every image (photo or video, with its stills) whose expiry is at or before ``now``; return the signed receipt."""
    expired = store.expired_images(iso(now))
    return erase_images(
        expired, kind="purge", store=store, blobs=blobs, index=index, keys=keys,
        audit=(actor, AuditAction.PURGE, {"now": iso(now)}),
        in_transaction=lambda removed, videos: (None, {"expired_by": iso(now)}),
    )


def rotate_keys(*, keys: Keyring, store: MetadataStore, blobs: BlobStore, index: VectorIndex, actor: str,
                sealing: AbstractContextManager[Any] = nullcontext()) -> dict[str, Any]:
    """Re-encrypt everything sealed under a new key, then drop the old keys.

    Sealed are: photo copies and crops, templates, suppression entries, the templates and
    contact addresses of open public requests, people's names and centroids, and the index (flushed under the new key). Every ciphertext names
    its key, so a rotation cut short leaves readable data; the old keys are dropped only
    after everything is re-sealed and the audit entry is committed. A rotation found
    unfinished (the key file still holds an old key) is resumed, not started again: only
    what is not yet under the newest key is redone. ``sealing`` is held while the new key
    becomes current: the lock of writers that seal outside the writer lock (public requests).
    """
    resumed = keys.rotation_pending
    with sealing:
        new = keys.current if resumed else keys.start_rotation()[1]

    def is_current(sealed: bytes) -> bool:
        return Keyring.key_id_of(sealed) == keys.current

    resealed_blobs = 0
    for key in blobs.keys():
        if not is_current(blobs.raw(key)):
            blobs.put(key, blobs.get(key))
            resealed_blobs += 1
    templates = store.reseal_embeddings(is_current)
    suppressions = store.registers.reseal_suppressions(is_current)
    requests = store.registers.reseal_requests(is_current)
    people = store.people.reseal(is_current)
    index.flush()
    store.purge_deleted()
    dropped = [key_id for key_id in keys.keys if key_id != keys.current]
    counts = {"blobs": resealed_blobs, "templates": templates, "suppression_entries": suppressions,
              "public_requests": requests, "people": people}
    store.log(actor=actor, action=AuditAction.KEYS_ROTATE,
              details={"new_key": new, "dropped_keys": dropped, "resumed": resumed, **counts})
    # Only now: a kill before this line leaves both keys, and the next rotation resumes.
    keys.finish_rotation()
    return {"new_key": new, "dropped_keys": dropped, "resumed": resumed, **counts}
