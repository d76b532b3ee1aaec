"""Rights of the people in the photos, exercised by showing their face.

Access (GDPR Art. 15), erasure (Art. 17), objection (Art. 21) and restriction (Art. 18).
The requester's photo is decoded and embedded in memory only: it is never written to the
data directory, never indexed, and logged by its sha256 alone. No name or identity
document is asked for. Matching uses the rights threshold, more inclusive than search's,
and covers restricted faces too. Each request is entered in the requests register with a
due date one month after receipt, and completed there.

A requester may show several photos of themselves (at most :data:`~vultus.probes.MAX_PROBES`),
so that more of their photos are found: each gives its largest face, every face of them must
match the first photo's at the rights threshold (a request is one person's), and a stored face
matches the request when it matches any of them.
"""

from __future__ import annotations

import base64
import calendar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import numpy as np

from .crypto import Keyring
from .erasures import check_receipt, erase_images, receipt_fields, sign_receipt
from .grouping import settle_people
from .report import clock
from .faces import FaceAnalyzer
from .index import VectorIndex
from .media.decode import DEFAULT_MAX_DECODE_MB
from .errors import ProbeChoiceError
from .people import groups_of_faces
from .probes import Probe
from .search import exact_distances, probe_faces
from .store import AuditAction, BlobStore, FaceHit, RemovedImage, RemovedVideo, MetadataStore, iso, utcnow

__all__ = [
    "PersonMatch",
    "match_person",
    "match_templates",
    "requester_templates",
    "access_report",
    "erase_person",
    "object_person",
    "restrict_person",
    "signed_receipt",
    "check_receipt",
    "due_date",
]


@dataclass(frozen=True)
class PersonMatch:
    """The stored faces that match the face in a requester's photo, or any face of several photos of them."""

    #: The sha256 of each probe photo, in the order given.
    probe_sha256s: tuple[str, ...]
    faces: list[tuple[FaceHit, float]]  # (face, best similarity to any probe face), most similar first
    #: One row per probe face.
    templates: np.ndarray = field(repr=False)
    threshold: float = 0.0
    model_id: str = ""
    #: The registered request this match answers (a public request), or None to open one.
    request_id: int | None = None

    @property
    def probe_sha256(self) -> str:
        """The first probe photo's sha256 (what the requests register keeps)."""
        return self.probe_sha256s[0] if self.probe_sha256s else ""

    @property
    def image_ids(self) -> list[int]:
        """The photos with a matched face (erased whole: their copies show every face in them)."""
        return sorted({hit.image_id for hit, _ in self.faces if not hit.is_video})

    @property
    def video_face_ids(self) -> list[int]:
        """The matched faces in videos (their appearances are erased, not the whole video)."""
        return sorted(hit.face_id for hit, _ in self.faces if hit.is_video)

    @property
    def appearances(self) -> list[tuple[int, int]]:
        """The matched video appearances, as (image id of the video, appearance number)."""
        return sorted({(hit.image_id, hit.appearance) for hit, _ in self.faces if hit.is_video})  # type: ignore[misc]

    @property
    def image_sha256s(self) -> list[str]:
        """The sha256s of the photos and videos with a matched face."""
        return sorted({hit.sha256 for hit, _ in self.faces})


def due_date(received: datetime) -> datetime:
    """One calendar month after ``received`` (GDPR Art. 12(3)); the 31st becomes month's end."""
    year, month = (received.year + 1, 1) if received.month == 12 else (received.year, received.month + 1)
    day = min(received.day, calendar.monthrange(year, month)[1])
    return received.replace(year=year, month=month, day=day)


def match_person(
    data: bytes | Sequence[Probe],
    *,
    analyzer: FaceAnalyzer,
    store: MetadataStore,
    index: VectorIndex,
    threshold: float,
    face: int | None = None,
    max_pixels: int = 120_000_000,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
) -> PersonMatch:
    """Every stored face, restricted ones included, within ``threshold`` of the probe's face,
    or of any probe face when ``data`` is several probes of the requester."""
    probes = [Probe(data, "the requester's photo")] if isinstance(data, (bytes, bytearray)) else list(data)
    templates = requester_templates(probes, analyzer=analyzer, face=face, max_pixels=max_pixels,
                                    max_decode_mb=max_decode_mb, threshold=threshold)
    return match_templates(templates, probe_sha256s=[p.sha256 for p in probes], analyzer=analyzer, store=store,
                           index=index, threshold=threshold)


def requester_templates(probes: Sequence[Probe], *, analyzer: FaceAnalyzer, face: int | None = None,
                        max_pixels: int = 120_000_000, max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
                        threshold: float | None = None) -> np.ndarray:
    """The requester's face in each photo (largest unless ``face`` says), in memory only: one row each.

    With ``threshold``, several photos must show one person: a face that does not match the
    first photo's at it is refused, naming its photo (a request cannot reach someone else's
    photos, nor several people's under one request).
    """
    found = probe_faces(probes, analyzer=analyzer, face=face, max_pixels=max_pixels, max_decode_mb=max_decode_mb,
                        draft=False)
    templates = np.stack([p.template for p in found])
    if threshold is not None and len(found) > 1:
        spec = analyzer.embedder.spec
        for probe, distance in zip(found[1:], np.linalg.norm(templates[1:] - templates[0], axis=1)):
            if distance > spec.distance(threshold):
                raise ProbeChoiceError(
                    f"The face in {probe.name} does not match the one in {found[0].name} (similarity "
                    f"{spec.similarity(float(distance)):.3f}, below the rights threshold {threshold:.3f}): the photos of "
                    "one request must all show the requester. Leave that photo out, or send it in a request of its own."
                )
    return templates


def match_templates(
    templates: np.ndarray,
    *,
    probe_sha256s: Sequence[str],
    analyzer: FaceAnalyzer,
    store: MetadataStore,
    index: VectorIndex,
    threshold: float,
    request_id: int | None = None,
) -> PersonMatch:
    """Every stored face, restricted ones included, within ``threshold`` of any row of ``templates``
    (one template or one per probe face), each once, at its best similarity."""
    spec = analyzer.embedder.spec
    radius = spec.distance(threshold)
    templates = np.atleast_2d(np.asarray(templates, dtype=np.float32))
    found: dict[int, float] = {}

    def keep(face_id: int, distance: float) -> None:
        found[face_id] = min(distance, found.get(face_id, distance))

    for template in templates:
        if index.capabilities.exact:
            distances, ids = index.range_search(template, radius)
            for d, i in zip(distances, ids):
                keep(int(i), float(d))
        else:
            # Compressed codes are off by up to about 1%: search a wider radius, keep the exact matches.
            _, ids = index.range_search(template, radius * 1.05)
            for d, i in exact_distances(store, template, [int(i) for i in ids]):
                if d <= radius:
                    keep(i, d)
    # Restricted faces are kept out of the index, but a person's rights reach them too.
    restricted = store.restricted_face_ids()
    if len(restricted):
        for ids_chunk, vectors in store.face_vectors(restricted.tolist()):
            nearest = np.min([np.linalg.norm(vectors - template, axis=1) for template in templates], axis=0)
            for face_id, dist in zip(ids_chunk, nearest):
                if dist <= radius:
                    keep(int(face_id), float(dist))
    hits = store.hydrate(list(found))
    faces = sorted(
        ((hits[i], spec.similarity(d)) for i, d in found.items() if i in hits), key=lambda pair: -pair[1]
    )
    return PersonMatch(tuple(probe_sha256s), faces, templates, threshold, analyzer.model_id, request_id)


def _open_request(store: MetadataStore, kind: str, match: PersonMatch) -> tuple[int, str]:
    """The request this match answers: the registered one, or a new one received now."""
    if match.request_id is not None:
        return match.request_id, store.registers.get_request(match.request_id).received_at
    received = utcnow()
    request_id = store.registers.open_request(
        kind=kind, received_at=iso(received), due_at=iso(due_date(received)), probe_sha256=match.probe_sha256
    )
    return request_id, iso(received)


def access_report(match: PersonMatch, *, store: MetadataStore, blobs: BlobStore, actor: str, include_crops: bool) -> dict[str, Any]:
    """Everything held about the person: photos, faces, video appearances, provenance, expiry,
    the people groups their faces are in (with the names given to them), and the logged
    searches that returned them, over the whole history, with no cap."""
    images: dict[int, dict[str, Any]] = {}
    for hit, similarity in match.faces:
        if hit.is_video:
            continue
        entry = images.setdefault(hit.image_id, {"image_sha256": hit.sha256, **_provenance(hit), "faces": []})
        face: dict[str, Any] = {
            "face_id": hit.face_id,
            "box": list(hit.box),
            "similarity": round(similarity, 4),
            "restricted": hit.restricted,
        }
        if include_crops and hit.crop_key and blobs.exists(hit.crop_key):
            face["crop_jpeg_base64"] = base64.b64encode(blobs.get(hit.crop_key)).decode()
        entry["faces"].append(face)
    videos = _video_entries(match, store=store, blobs=blobs, include_stills=include_crops)
    appearances = sum(len(v["appearances"]) for v in videos)
    searches = [
        {
            "audit_id": e.id,
            "at": e.at,
            "actor": e.actor,
            "purpose": e.details.get("purpose"),
            "case": e.details.get("case"),
            "returned": sorted({c["image_sha256"] for c in e.details.get("candidates", [])} & set(match.image_sha256s)),
        }
        for e in store.searches_hitting(match.image_sha256s)
    ]
    # The people groups their faces are in, with the names users gave them (personal data too).
    groups = groups_of_faces(store, [hit.face_id for hit, _ in match.faces])
    with store.transaction():
        request_id, received = _open_request(store, "access", match)
        photo_faces = sum(len(i["faces"]) for i in images.values())
        outcome = f"{len(images)} photos, {photo_faces} faces, {len(searches)} searches reported"
        if videos:
            outcome = f"{len(images)} photos, {photo_faces} faces, {appearances} appearances in {len(videos)} videos, " \
                      f"{len(searches)} searches reported"
        store.registers.complete_request(request_id, at=iso(utcnow()), outcome=outcome)
        details = {
            "request_id": request_id,
            "probe_sha256": match.probe_sha256,
            "probe_sha256s": list(match.probe_sha256s),
            "threshold": round(match.threshold, 4),
            "images": len(images),
            "faces": len(match.faces),
            "searches": len(searches),
        }
        if videos:
            details |= {"videos": len(videos), "appearances": appearances}
        if groups:
            details["people_groups"] = len(groups)
        store.log(actor=actor, action=AuditAction.ACCESS, details=details)
    return {
        "report": "vultus-access",
        "request_id": request_id,
        "received_at": received,
        "generated_at": iso(utcnow()),
        "threshold": round(match.threshold, 4),
        "probe_faces": len(match.templates),
        "images": list(images.values()),
        "videos": videos,
        "people": groups,
        "searches": searches,
    }


def _provenance(hit: FaceHit) -> dict[str, Any]:
    """Where a photo or video came from and on what basis it is held, as an access report lists it."""
    return {"original_path": hit.original_path, "source": hit.source, "controller": hit.controller,
            "legal_basis": hit.legal_basis, "purpose": hit.purpose, "ingested_at": hit.ingested_at,
            "expires_at": hit.expires_at}


def _video_entries(match: PersonMatch, *, store: MetadataStore, blobs: BlobStore, include_stills: bool) -> list[dict[str, Any]]:
    """The matched video appearances, by video: time range, sampled times, still, and every template's face id."""
    best: dict[tuple[int, int], tuple[FaceHit, float]] = {}
    for hit, similarity in match.faces:  # most similar first: the first of an appearance is its best
        if hit.is_video:
            best.setdefault((hit.image_id, hit.appearance), (hit, similarity))  # type: ignore[arg-type]
    # The appearance's other templates are the same person's, matched or not.
    everyone = store.hydrate(store.appearance_faces(match.video_face_ids)) if best else {}
    videos: dict[int, dict[str, Any]] = {}
    for (image_id, number), (hit, similarity) in sorted(best.items()):
        entry = videos.setdefault(image_id, {"video_sha256": hit.sha256, **_provenance(hit), "duration": hit.duration,
                                             "appearances": []})
        rows = sorted((f for f in everyone.values() if (f.image_id, f.appearance) == (image_id, number)),
                      key=lambda f: f.face_id)
        appearance: dict[str, Any] = {
            "appearance": number,
            "time_start": hit.time_start,
            "time_end": hit.time_end,
            "time_range": f"{clock(hit.time_start)}-{clock(hit.time_end)}",
            "seen_at": list(hit.seen_at),
            "face_ids": [f.face_id for f in rows] or [hit.face_id],
            "box": list(hit.box),
            "similarity": round(similarity, 4),
            "restricted": any(f.restricted for f in rows) or hit.restricted,
        }
        if include_stills and hit.still_key and blobs.exists(hit.still_key):
            appearance["still_jpeg_base64"] = base64.b64encode(blobs.get(hit.still_key)).decode()
        entry["appearances"].append(appearance)
    return list(videos.values())


def signed_receipt(
    keys: Keyring, *, kind: str, request_id: int | None, removed: list[RemovedImage], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A receipt listing what was removed, signed with the deployment's Ed25519 key."""
    return sign_receipt(keys, receipt_fields(kind=kind, request_id=request_id, removed=removed, extra=extra))


def erase_person(
    match: PersonMatch, *, store: MetadataStore, blobs: BlobStore, index: VectorIndex, keys: Keyring, actor: str, kind: str = "erasure"
) -> dict[str, Any]:
    """Erase every photo in which the person's face matched, and every video appearance of
    theirs (not the rest of the video); return the signed receipt."""

    def in_transaction(removed: list[RemovedImage], videos: list[RemovedVideo]) -> tuple[int, dict[str, Any]]:
        request_id, _ = _open_request(store, kind, match)
        extra: dict[str, Any] = {"probe_sha256s": list(match.probe_sha256s)}
        if kind == "objection":
            # One entry per probe face: ingest then skips a face that matches any of them.
            ids = [store.registers.add_suppression(t, model_id=match.model_id, at=iso(utcnow())) for t in match.templates]
            extra |= {"suppression_id": ids[0], "suppression_ids": ids}
        outcome = f"{len(removed)} photos erased"
        if videos:
            outcome += f", {sum(len(v.ranges) for v in videos)} appearances in {len(videos)} videos"
        if kind == "objection":
            entries = extra["suppression_ids"]
            outcome += f", suppression entr{'y' if len(entries) == 1 else 'ies'} {', '.join(map(str, entries))}"
        store.registers.complete_request(request_id, at=iso(utcnow()), outcome=outcome)
        return request_id, extra

    action = AuditAction.OBJECTION if kind == "objection" else AuditAction.ERASURE
    return erase_images(
        match.image_ids,
        kind=kind,
        store=store,
        blobs=blobs,
        index=index,
        keys=keys,
        audit=(actor, action, {"probe_sha256": match.probe_sha256, "probe_sha256s": list(match.probe_sha256s),
                               "threshold": round(match.threshold, 4)}),
        in_transaction=in_transaction,
        video_faces=match.video_face_ids,
    )


def object_person(match: PersonMatch, **kwargs: Any) -> dict[str, Any]:
    """Erase the person's photos and enter a suppression entry so they are not ingested again."""
    return erase_person(match, kind="objection", **kwargs)


def restrict_person(
    match: PersonMatch, *, store: MetadataStore, index: VectorIndex, actor: str, lift: bool = False
) -> tuple[int, int]:
    """Restrict (or release) every matched face; return (request id, faces changed).

    A restricted face is removed from the index, so search never returns it, but it stays
    in the store and in access reports. A matched video appearance is restricted (or
    released) with every one of its templates.
    """
    face_ids = [hit.face_id for hit, _ in match.faces if hit.restricted == lift]
    if match.video_face_ids:
        whole = store.hydrate(store.appearance_faces(match.video_face_ids))
        face_ids += sorted(i for i, hit in whole.items() if hit.restricted == lift and i not in face_ids)
    with store.transaction():
        request_id, _ = _open_request(store, "restriction", match)
        changed = store.set_restricted(face_ids, not lift)
        # A restricted face is kept in its people group but counts in neither its centroid nor its size.
        store.people.mark_dirty(face_ids=face_ids)
        settle_people(store)
        store.registers.complete_request(
            request_id, at=iso(utcnow()), outcome=f"{changed} faces {'released' if lift else 'restricted'}"
        )
        store.log(
            actor=actor,
            action=AuditAction.RESTRICTION_LIFT if lift else AuditAction.RESTRICTION,
            details={"request_id": request_id, "probe_sha256": match.probe_sha256,
                     "probe_sha256s": list(match.probe_sha256s), "face_ids": face_ids}
        )
    if lift:
        for ids, vectors in store.face_vectors(face_ids) if face_ids else ():
            index.add(ids, vectors)
    else:
        index.remove(np.asarray(face_ids, dtype=np.int64))
    index.flush()
    return request_id, changed

