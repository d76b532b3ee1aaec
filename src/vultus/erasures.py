"""The one erasure path, for a person's request, an objection and a purge alike; crash-safe.

An erasure is done in two steps. First, in one transaction: the image and face rows go
(whole photos; a video's appearances one by one, or the whole video when it expires),
the people groups the faces were in are settled (:func:`~vultus.grouping.settle_people`:
centroids made again from the faces left, emptied groups deleted with their names), the
caller's own changes are made (the request completed, a suppression entry), the audit
entry is appended, and an intent is entered in the erasure log with what is left to do
(the blob keys, the face ids) and what the receipt will say. Then the files are deleted,
the faces removed from the index and the index flushed (removed physically), the write-ahead log
truncated, and the receipt signed and kept in place of the intent.

A kill -9 before the commit changes nothing; after it, the intent survives, and
:func:`finish_pending` (run by the next command of any kind that can take the writer lock)
does the rest and makes the receipt then. Every step can be redone: a file already
deleted, a face already gone from the index, are no error.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Sequence

import numpy as np

from .crypto import Keyring, verify_signature
from .errors import ReceiptError, VultusError
from .grouping import settle_people
from .index import VectorIndex
from .store import AuditAction, BlobStore, RemovedImage, RemovedVideo, MetadataStore, iso, utcnow
from .store.erasures import PendingErasure

__all__ = ["erase_images", "finish_pending", "receipt_fields", "sign_receipt", "check_receipt"]

#: ``in_transaction(removed, videos)``: the caller's changes in the erasure's transaction, told
#: the images removed whole and the videos whose appearances were removed; returns the
#: request id and extra fields for the receipt (a suppression id, ...).
InTransaction = Callable[[list[RemovedImage], list[RemovedVideo]], tuple[int | None, dict[str, Any]]]


def erase_images(
    image_ids: Sequence[int],
    *,
    kind: str,
    store: MetadataStore,
    blobs: BlobStore,
    index: VectorIndex,
    keys: Keyring,
    audit: tuple[str, AuditAction, dict[str, Any]],
    in_transaction: InTransaction | None = None,
    video_faces: Sequence[int] = (),
) -> dict[str, Any]:
    """Erase ``image_ids`` whole (rows, photo copies, crops, a video's stills, index entries, freed
    pages) and the video appearances of ``video_faces`` (each with every template, crop and its
    still); return the signed receipt.

    Call with the writer lock held. ``audit`` is (actor, action, details) of the entry
    logged with the deletion.
    """
    actor, action, details = audit
    with store.transaction():
        removed = store.delete_images(image_ids)
        videos = store.delete_faces(video_faces) if video_faces else []
        # The faces left their groups with their rows (the foreign keys' cascade); the groups'
        # centroids, covers and names follow here, in the same transaction.
        groups = settle_people(store, erasure=kind != "purge")
        request_id, extra = in_transaction(removed, videos) if in_transaction is not None else (None, {})
        logged = {**details, "removed_images": [{"sha256": r.sha256, "source": r.source} for r in removed]}
        if any(groups.values()):
            logged["people_groups"] = groups
            extra = {**extra, "people_groups": groups}
        if videos:
            logged["removed_videos"] = [{"sha256": v.sha256, "source": v.source, "time_ranges": _ranges(v.ranges)}
                                        for v in videos]
        store.log(actor=actor, action=action, details=logged)
        erasure_id = store.erasures.begin(
            kind=kind,
            request_id=request_id,
            blob_keys=[key for r in [*removed, *videos] for key in r.blob_keys],
            face_ids=[f for r in [*removed, *videos] for f in r.face_ids],
            fields=receipt_fields(kind=kind, request_id=request_id, removed=removed, extra=extra, videos=videos),
            at=iso(utcnow())
        )
    return _finish(store.erasures.get_pending(erasure_id), store=store, blobs=blobs, index=index, keys=keys)


def finish_pending(*, store: MetadataStore, blobs: BlobStore, index: Callable[[], VectorIndex], keys: Keyring) -> list[int]:
    """Finish every erasure a crash cut short, oldest first; return the ids of those finished.

    Call with the writer lock held, so that no erasure still under way in another process
    is taken for an interrupted one. ``index()`` opens the index, only when there is work.
    One that cannot finish now (its index cannot be opened under this command's settings,
    say) stays pending for the next command; the others are still finished.
    """
    finished = []
    for pending in store.erasures.pending():
        try:
            _finish(pending, store=store, blobs=blobs, index=index(), keys=keys)
        except VultusError:
            # Its rows are already gone, so nothing can find the person meanwhile; a later
            # command with a working index finishes it and makes its receipt.
            continue
        finished.append(pending.id)
    return finished


def _finish(pending: PendingErasure, *, store: MetadataStore, blobs: BlobStore, index: VectorIndex, keys: Keyring) -> dict[str, Any]:
    """Delete the files, remove the index entries, truncate the WAL, sign and keep the receipt."""
    # Keys derive from the photo's content: if the same photo was stored again meanwhile
    # (only possible after a finish that failed), its new files are not this erasure's.
    keep = store.erasures.still_referenced(pending.blob_keys)
    for key in pending.blob_keys:
        if key not in keep:
            blobs.delete(key)
    index.remove(np.asarray(pending.face_ids, dtype=np.int64))
    index.flush()
    # Before the receipt says it is done: the freed pages (zeroed by secure_delete) must be
    # the only copy left, not old frames in the write-ahead log.
    store.purge_deleted()
    receipt = sign_receipt(keys, pending.fields)
    store.erasures.complete(pending.id, receipt=receipt, at=receipt["completed_at"])
    return receipt


def receipt_fields(*, kind: str, request_id: int | None, removed: list[RemovedImage],
                   extra: dict[str, Any] | None = None, videos: Sequence[RemovedVideo] = ()) -> dict[str, Any]:
    """What a removal receipt lists: sha256s of the removed photos and counts, no biometric data.

    When video appearances were removed (or whole videos, by a purge), ``removed_videos``
    lists each video's sha256 and the time ranges (seconds) of the appearances removed.
    """
    fields: dict[str, Any] = {
        "receipt": "vultus-removal",
        "version": 1,
        "kind": kind,
        "request_id": request_id,
        "removed_images": sorted(r.sha256 for r in removed if r.media != "video"),
        "faces_removed": sum(len(r.face_ids) for r in [*removed, *videos]),
    }
    ranges: dict[str, list[tuple[float, float]]] = {}
    for item in [*(r for r in removed if r.media == "video"), *videos]:
        ranges.setdefault(item.sha256, []).extend(item.ranges)
    if ranges:
        fields["removed_videos"] = [{"sha256": sha, "time_ranges": _ranges(spans)} for sha, spans in sorted(ranges.items())]
    return {**fields, **(extra or {})}


def _ranges(spans: Sequence[tuple[float, float]]) -> list[list[float]]:
    return [[start, end] for start, end in sorted(set(spans))]


def sign_receipt(keys: Keyring, fields: dict[str, Any]) -> dict[str, Any]:
    """The receipt of ``fields``, completed now and signed with the deployment's Ed25519 key."""
    head = {k: fields[k] for k in ("receipt", "version", "kind", "request_id") if k in fields}
    body: dict[str, Any] = {
        **head,
        "completed_at": iso(utcnow()),
        **{k: v for k, v in fields.items() if k not in head},
        "public_key": base64.b64encode(keys.public_key).decode(),
    }
    body["signature"] = base64.b64encode(keys.sign(_receipt_bytes(body))).decode()
    return body


def check_receipt(receipt: dict[str, Any], *, keys: Keyring | None = None) -> str:
    """Verify a receipt's signature; return who signed it, or raise :class:`ReceiptError`."""
    try:
        signature = base64.b64decode(receipt["signature"], validate=True)
        public_key = base64.b64decode(receipt["public_key"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise ReceiptError("This is not a Vultus receipt: its signature or public key is missing.") from None
    if not verify_signature(public_key, signature, _receipt_bytes(receipt)):
        raise ReceiptError("The receipt's signature does not match its content: it was altered or forged.")
    if keys is not None and public_key != keys.public_key:
        return "a valid signature, but by another deployment's key"
    return "a valid signature by this deployment's key"


def _receipt_bytes(receipt: dict[str, Any]) -> bytes:
    body = {k: v for k, v in receipt.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
