"""Requests sent from the public page: checked, counted, sealed until the DPO carries them out.

A person asks for access, erasure or objection by showing their face, in one photo or
several (at most :data:`~vultus.probes.MAX_PROBES`, all of them of the requester); each photo is
used in memory to make a template, and the templates are kept sealed with the request until the
data-protection officer carries it out (one sealed value: the templates' rows one after the
other, so a request of one photo is stored as before). Attempts are limited per address and
per client, counted atomically and before any photo is looked at, so refused ones count too.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Callable, Sequence

import numpy as np

from .errors import PolicyError, RateLimitedError
from .faces import FaceAnalyzer
from .policy import check_gallery_model
from .probes import Probe, read_probes
from .rights import PersonMatch, access_report, due_date, match_templates, requester_templates
from .store import AuditAction, BlobStore, MetadataStore, iso, utcnow
from .index import VectorIndex

__all__ = ["PUBLIC_REQUEST_KINDS", "PUBLIC_REQUESTS_PER_DAY", "fulfil_request", "submit_public_request"]

#: What a person may ask for on the public page, and how often a day per address.
PUBLIC_REQUEST_KINDS = ("access", "erasure", "objection")
PUBLIC_REQUESTS_PER_DAY = 3


def submit_public_request(*, kind: str, photo: bytes | Probe | Sequence[bytes | Probe], contact: str, client: str,
                          store: MetadataStore, analyzer: FaceAnalyzer, max_pixels: int, max_decode_mb: int,
                          sealing: threading.Lock, threshold: float | None = None) -> dict:
    """Register a request sent from the public page, for the DPO to carry out.

    ``photo`` is one photo of the requester or several. Each is used in memory to make its
    face's template; the templates are kept sealed until the request is carried out; no photo
    is kept. With several, each face must match the first photo's at ``threshold`` (the
    rights threshold): one attempt cannot ask for several people. At most
    ``PUBLIC_REQUESTS_PER_DAY`` attempts a day per contact address or client, refused
    ones included. ``sealing`` is held while the templates are sealed and committed (a key
    rotation in this process takes it between two requests).
    """
    if kind not in PUBLIC_REQUEST_KINDS:
        raise PolicyError(f"A request is one of: {', '.join(PUBLIC_REQUEST_KINDS)}; not {kind!r}.")
    contact = (contact or "").strip()
    if not re.fullmatch(r"[^@\s]{1,100}@[^@\s]{1,100}\.[^@\s]{1,20}", contact):
        raise PolicyError("Give an e-mail address at which the data-protection officer can answer you.")
    now = utcnow()
    # Counted before the photo is looked at, so that refused attempts (no face, a bad
    # photo) count too, and atomically, so that concurrent ones cannot all pass.
    attempt = store.registers.reserve_public_attempt(
        contact=contact, client=client, at=iso(now), since=iso(now - timedelta(days=1)),
        limit=PUBLIC_REQUESTS_PER_DAY,
    )
    if attempt is None:
        raise RateLimitedError(
            f"At most {PUBLIC_REQUESTS_PER_DAY} requests a day may be sent from one address; your earlier "
            "requests are registered and will be answered. Try again tomorrow if you need to."
        )
    try:
        probes = read_probes(Probe(photo, "your photo") if isinstance(photo, (bytes, bytearray)) else photo)
        templates = requester_templates(probes, analyzer=analyzer, max_pixels=max_pixels,
                                        max_decode_mb=max_decode_mb, threshold=threshold)
    except BaseException:
        # A refused attempt still counts for the client that sent it, but not for the
        # address it named: anyone could name someone else's address to block them.
        store.registers.refused_public_attempt(attempt)
        raise
    hashes = [p.sha256 for p in probes]
    # Sealed outside the writer lock (the public page must not wait for an ingest): a
    # rotation in this process starts only between two such seal-and-commits, so every
    # request is either committed before it (and re-sealed by it) or sealed under the new key.
    with sealing, store.transaction():
        request_id = store.registers.open_public_request(
            kind=kind, template=templates, model_id=analyzer.model_id, contact=contact,
            received_at=iso(now), due_at=iso(due_date(now)), probe_sha256=hashes[0], attempt_id=attempt
        )
        store.log(
            actor="public", action=AuditAction.PUBLIC_REQUEST,
            details={"request_id": request_id, "kind": kind, "probe_sha256": hashes[0], "probe_sha256s": hashes}
        )
    return {"request_id": request_id, "kind": kind, "due_at": iso(due_date(now)), "photos": len(probes)}


def fulfil_request(request_id: int, *, store: MetadataStore, blobs: BlobStore, analyzer: FaceAnalyzer, index: VectorIndex,
                   threshold: float, actor: str, erase: Callable[[PersonMatch], dict],
                   object_to: Callable[[PersonMatch], dict]) -> dict:
    """Carry out an open public request: access report, or erasure or objection receipt.

    ``erase`` and ``object_to`` carry out a match under the deployment's writer lock.
    """
    request, sealed, model_id = store.registers.public_request_template(request_id)
    check_gallery_model([model_id], analyzer.model_id)
    # The sealed value holds the templates' rows one after the other (one row before several
    # photos were taken); the model check above makes the embedder's dimension theirs.
    templates = np.asarray(sealed, dtype=np.float32).reshape(-1, analyzer.embedder.spec.dim)
    match = match_templates(
        templates, probe_sha256s=_probe_hashes(store, request), analyzer=analyzer, store=store,
        index=index, threshold=threshold, request_id=request_id,
    )
    contact = store.registers.contact_of(request_id)
    if request.kind == "access":
        result = access_report(match, store=store, blobs=blobs, actor=actor, include_crops=True)
    elif request.kind == "erasure":
        result = erase(match)
    else:
        result = object_to(match)
    return {"request_id": request_id, "kind": request.kind, "contact": contact, "result": result}


def _probe_hashes(store: MetadataStore, request) -> list[str]:  # noqa: ANN001 - a registers Request
    """Every probe photo's sha256 of a public request: the register keeps the first, the
    request's audit entry (logged when it was received) all of them."""
    for entry in store.audit_entries(since=request.received_at, action=AuditAction.PUBLIC_REQUEST.value):
        if entry.details.get("request_id") == request.id:
            return list(entry.details.get("probe_sha256s") or [request.probe_sha256 or ""])
    return [request.probe_sha256 or ""]
