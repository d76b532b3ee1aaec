"""The `/v1` REST API: one thin route per engine operation, each role-checked."""

from __future__ import annotations

import os
import shutil
import unicodedata
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from ..errors import UnknownReceiptError
from ..media import MediaKind, content_types, ends_with_accepted, first_frame, format_names, open_media, suffix_for
from ..probes import MAX_PROBES, Probe
from ..store.accounts import Account, Role
from .access import ApiError, as_dict, engine_of, require
from .clients import client_key
from .jobs import QueueFull
from .people_routes import install as install_people_routes

router = APIRouter(prefix="/v1")

ANY_ROLE = (Role.ADMIN, Role.INVESTIGATOR, Role.DPO, Role.AUDITOR)
#: Largest id SQLite stores (int64); larger ones cannot name anything.
MAX_ID = 2**63 - 1
#: Bytes of an uploaded file's name kept in the stored path (file systems allow 255).
MAX_NAME_BYTES = 120


def photo_bytes(request: Request, upload: UploadFile, *, kind: MediaKind | None = MediaKind.PHOTO) -> bytes:
    """The uploaded file, refused early when it is too big or not sent as a content type that
    a registered decoder (of ``kind``: a probe is a photo; None: any) reads."""
    sent = (upload.content_type or "").split(";")[0].strip().lower()
    accepted = content_types(kind)
    if sent not in accepted:
        raise ApiError(
            415, "unsupported_media_type",
            f"{upload.filename or 'The upload'} is sent as {sent or 'no content type'}; send a {format_names(kind)} "
            f"{kind or 'file'} with its own content type ({', '.join(sorted(accepted))}).",
        )
    limit = request.app.state.max_upload
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"The photo is over the {limit // (1024 * 1024)} MiB upload limit; send a smaller one.")
    return data


def probe_uploads(request: Request, uploads: list[UploadFile]) -> bytes | list[Probe]:
    """The probe photos of a request: one photo's bytes, or several named by their number and
    file name (for messages); more than ``MAX_PROBES`` are refused before any is read."""
    if len(uploads) > MAX_PROBES:
        raise ApiError(413, "too_many_photos", f"{len(uploads)} photos were sent; at most {MAX_PROBES} probe photos of one "
                       "person are taken together. Send the clearest ones.")
    if len(uploads) == 1:
        return photo_bytes(request, uploads[0])
    return [Probe(photo_bytes(request, upload), f"photo {number} ({upload.filename or 'no name'})")
            for number, upload in enumerate(uploads, 1)]


#: A stored id in a path: 1 to SQLite's largest integer (422 otherwise, never a 500).
RequestId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The request's number.")]
SuppressionId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The suppression entry's number.")]


def stored_name(filename: str | None, number: int) -> str:
    """The name an uploaded file is kept under: its last path part, printable, at most
    ``MAX_NAME_BYTES`` bytes (the stem is cut, the extension kept)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    if not name:
        return f"photo-{number}"
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 10:
        stem, dot, ext = name, "", ""
    room = MAX_NAME_BYTES - len((dot + ext).encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore") or f"photo-{number}"
    return stem + dot + ext


# -- meta and sources --------------------------------------------------------------------------


@router.get("/stats", tags=["meta"])
def stats(request: Request, account: Account = Depends(require(*ANY_ROLE))) -> dict[str, Any]:
    """Counts and sizes of this deployment."""
    return as_dict(engine_of(request).stats())


class NewSource(BaseModel):
    name: str
    basis: str = Field(description="consent, contract, legal-obligation, vital-interests, public-task or legitimate-interests")
    purpose: str
    retention: str = Field(description="e.g. 365d, 12w, 6m, 2y (at most 3y)")
    controller: str | None = None
    consent_ref: str | None = None
    purposes: list[str] | None = Field(
        None, description="Search categories it may be searched for: journalism, archive, investigation, "
        "missing-persons, event-delivery; default: the one closest to the purpose text (in the answer's purposes)")


class SourceChange(BaseModel):
    purposes: list[str] | None = Field(None, description="The search categories it may be searched for from now on")


@router.get("/sources", tags=["sources"])
def list_sources(request: Request, account: Account = Depends(require(*ANY_ROLE))) -> list[dict[str, Any]]:
    """Registered sources with their provenance and counts, and whether their faces are grouped into people."""
    engine = engine_of(request)
    grouped = {c.source for c in engine.people.clustering_sources()}
    return [{**as_dict(s), "clustering": s.name in grouped} for s in engine.sources()]


@router.post("/sources", status_code=201, tags=["sources"])
def add_source(body: NewSource, request: Request, account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Register a source (admin)."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return as_dict(engine.add_source(body.name, basis=body.basis, purpose=body.purpose, retention=body.retention,
                                         controller=body.controller, consent_ref=body.consent_ref,
                                         purposes=body.purposes))


@router.patch("/sources/{name}", tags=["sources"])
def change_source(name: str, body: SourceChange, request: Request,
                  account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Change what a source allows (admin): the search categories it may be searched for; audited with before and after."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return as_dict(engine.set_source(name, purposes=body.purposes))


# -- people (vultus.server.people_routes) --------------------------------------------------------

install_people_routes(router)


# -- ingest ------------------------------------------------------------------------------------


def _start_job(request: Request, account: Account, paths: list[str], source: str, cleanup: Path | None,
               rename: tuple[str, str] | None = None, root: str | None = None) -> dict[str, Any]:
    engine_of(request).store.get_source(source)  # an unknown source is a 404 now, not a failed job later
    try:
        return request.app.state.jobs.submit(actor=account.name, paths=paths, source=source, cleanup=cleanup,
                                             rename=rename, root=root)
    except QueueFull as exc:
        raise ApiError(503, "ingest_queue_full", f"{exc.limit} ingest jobs are already waiting on this server; "
                       "try again later, when some have finished (poll them at /v1/ingest/JOB).") from None


@router.post("/ingest/uploads", status_code=202, tags=["ingest"])
def ingest_uploads(
    request: Request,
    source: str = Form(...),
    photos: list[UploadFile] = File(...),
    account: Account = Depends(require(Role.INVESTIGATOR)),
) -> dict[str, Any]:
    """Ingest uploaded photos into SOURCE in the background; poll the returned job."""
    engine = engine_of(request)
    engine.store.get_source(source)
    most = request.app.state.max_batch_photos
    if len(photos) > most:
        raise ApiError(413, "too_many_photos", f"{len(photos)} photos in one upload; send at most {most} at a time "
                       "(VULTUS_MAX_BATCH_PHOTOS), in several uploads.")
    batch = engine.data_dir / "uploads" / uuid.uuid4().hex
    batch.mkdir(parents=True, mode=0o700)
    try:
        for number, upload in enumerate(photos):
            name = stored_name(upload.filename, number)
            data = photo_bytes(request, upload, kind=None)
            item = open_media(data, name=name)
            # A bad file is refused now, as a 4xx, rather than inside the background job: its
            # first frame is decoded (all of a photo).
            first_frame(item, max_pixels=engine.settings.max_pixels, max_decode_mb=engine.settings.max_decode_mb).rgb
            if not ends_with_accepted(name):
                # Ingest takes the files of a folder by their suffix: one without one would be skipped.
                name += suffix_for(item.content_type) or ".jpg"
            (batch / f"{number:05d}-{name}").write_bytes(data)
        # Inside the try: until the job is queued, the folder is this request's to remove.
        return _start_job(request, account, [str(batch)], source, cleanup=batch,
                          rename=(f"{os.path.abspath(batch)}/", "upload:"))
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise


class PathIngest(BaseModel):
    source: str
    paths: list[str]


@router.post("/ingest/paths", status_code=202, tags=["ingest"])
def ingest_paths(body: PathIngest, request: Request, account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Ingest files or folders on the server, inside VULTUS_INGEST_ROOT only."""
    root = engine_of(request).settings.ingest_root
    if root is None:
        raise ApiError(403, "server_paths_disabled",
                       "Ingest of server-side paths is off; the administrator enables it by setting VULTUS_INGEST_ROOT.")
    base = Path(root).resolve()
    resolved = []
    for raw in body.paths:
        path = (base / raw).resolve()
        if path != base and base not in path.parents:
            raise ApiError(403, "outside_ingest_root", f"{raw} is outside the ingest root {base}.")
        resolved.append(str(path))
    # The paths named are checked above; every file found under them is checked again, on
    # its real path, as it is collected (a symbolic link inside the root may point out of it).
    return _start_job(request, account, resolved, body.source, cleanup=None, root=str(base))


@router.get("/ingest/{job_id}", tags=["ingest"])
def ingest_job(job_id: str, request: Request, account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Progress of an ingest job (queued, running, done or failed), and its summary when done."""
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"No ingest job {job_id!r} (jobs are kept until the server restarts).")
    return job


# -- search ------------------------------------------------------------------------------------


@router.post("/search", tags=["search"])
def search(
    request: Request,
    photo: list[UploadFile] = File(..., description="the probe photo, or up to 5 photos of the same person"),
    purpose: str | None = Form(None),
    case: str | None = Form(None),
    top: int | None = Form(None, ge=1, le=1000),
    threshold: float | None = Form(None, ge=0.0, le=1.0),
    face: int | None = Form(None, ge=1),
    category: str | None = Form(None, description="journalism, archive, investigation, missing-persons or "
                                "event-delivery; default: the deployment's VULTUS_DEFAULT_CATEGORY"),
    account: Account = Depends(require(Role.INVESTIGATOR)),
) -> dict[str, Any]:
    """Candidate faces for the face in PHOTO, best first, from the sources whose purposes allow
    ``category``; the search is logged. ``left_out`` names the other sources and what they allow.

    Several ``photo`` parts (at most 5) are photos of one person, searched as that person:
    each gives its largest face (``face`` then refused), a stored face scores its best
    similarity to any of them, and ``probe_faces_used`` says how many were used; ``probes``
    lists each photo's sha256, faces found and face used, and each candidate's
    ``probe_similarities`` its similarity to each probe face. ``probe_faces``, ``face_used``
    and ``face_box`` are the first photo's.

    Each candidate has ``media``: "photo", or "video" for an appearance in a video, which then
    has ``video_time`` (seconds from the start, where the best match was seen) and
    ``video_time_end``; ``path`` and ``image_sha256`` are then the video's.
    """
    engine = engine_of(request)
    probes = probe_uploads(request, photo)
    with engine.acting_as(account.name):
        result = engine.search(probes, purpose=purpose, case=case, top=top, threshold=threshold, face=face,
                               category=category)
    return {
        "note": "Candidates for a person to check, never identifications.",
        "probe_faces_used": result.probe_faces_used,
        "probes": [p.as_dict() for p in result.probes],
        "fusion": result.fusion,
        "unlike_probes": result.unlike_probes,
        "probe_faces": result.probe_faces,
        "face_used": result.face_used,
        "face_box": result.face_box,
        "threshold": result.threshold,
        "gallery_faces": result.gallery_faces,
        "expected_false_candidates": result.expected_false_candidates,
        "category": result.category,
        "sources_searched": result.sources_searched,
        "left_out": [{**entry.as_dict(), "reason": entry.reason(result.category)} for entry in result.left_out],
        "candidates": [c.as_dict() for c in result.candidates],
    }


# -- rights ------------------------------------------------------------------------------------


def _match(request: Request, photo: list[UploadFile], face: int | None):  # noqa: ANN202
    return engine_of(request).match_person(probe_uploads(request, photo), face=face)


def _rights_photos() -> Any:
    """A rights request's ``photo`` parts: the requester's, one or several."""
    return File(..., description="a photo of the requester, or up to 5 (every face must match the first's)")


@router.post("/access", tags=["rights"])
def access(request: Request, photo: list[UploadFile] = _rights_photos(), face: int | None = Form(None, ge=1),
           account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Access report for the person in PHOTO (GDPR Art. 15): photos, and appearances in videos with
    their time ranges and stills; the photo is not kept. Several ``photo`` parts of the requester
    find more: a stored face matches if it matches any of their faces."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.access(probe_uploads(request, photo), face=face, include_crops=True)


@router.post("/erasure", tags=["rights"])
def erasure(request: Request, photo: list[UploadFile] = _rights_photos(), face: int | None = Form(None, ge=1),
            account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Erase every photo and video appearance of the person in PHOTO (or several photos of them,
    GDPR Art. 17); returns the signed receipt (videos under ``removed_videos``, with the removed
    time ranges; ``probe_sha256s``, the photos' sha256s)."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.erase(_match(request, photo, face))


@router.post("/objection", tags=["rights"])
def objection(request: Request, photo: list[UploadFile] = _rights_photos(), face: int | None = Form(None, ge=1),
              account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Erase the person in PHOTO (or several photos of them) and block their face from future
    ingest (GDPR Art. 21): one suppression entry per probe face, ``suppression_ids``."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.object(_match(request, photo, face))


@router.post("/restriction", tags=["rights"])
def restriction(request: Request, photo: list[UploadFile] = _rights_photos(), face: int | None = Form(None, ge=1),
                lift: bool = Form(False), account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Restrict (or, with lift, release) the faces of the person in PHOTO, or in several photos of them (GDPR Art. 18)."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        request_id, changed = engine.restrict(_match(request, photo, face), lift=lift)
    return {"request_id": request_id, "faces_changed": changed, "lifted": lift}


@router.get("/requests", tags=["rights"])
def list_requests(request: Request, overdue: bool = False,
                  account: Account = Depends(require(Role.DPO, Role.AUDITOR))) -> list[dict[str, Any]]:
    """The requests register, or only requests open past their due date."""
    return [r.as_dict() for r in engine_of(request).requests(overdue=overdue)]


@router.get("/requests/{request_id}", tags=["rights"])
def request_details(request_id: RequestId, request: Request, account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """One request, with the contact address a public requester gave."""
    return engine_of(request).request_details(request_id)


@router.post("/requests/{request_id}/fulfil", tags=["rights"])
def fulfil_request(request_id: RequestId, request: Request, account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Carry out an open public request: the access report to send, or the erasure receipt."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.fulfil_request(request_id)


@router.get("/suppressions", tags=["rights"])
def list_suppressions(request: Request, account: Account = Depends(require(Role.DPO))) -> list[dict[str, Any]]:
    """Suppression entries by id and dates; templates are never returned."""
    return [as_dict(e) for e in engine_of(request).suppressions()]


@router.delete("/suppressions/{suppression_id}", tags=["rights"])
def withdraw_suppression(suppression_id: SuppressionId, request: Request, account: Account = Depends(require(Role.DPO))) -> dict[str, Any]:
    """Withdraw a suppression entry; its template is erased."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        if not engine.withdraw_suppression(suppression_id):
            raise ApiError(404, "unknown_suppression", f"There is no active suppression entry {suppression_id}.")
    return {"withdrawn": suppression_id}


@router.get("/receipts", tags=["rights"])
def list_receipts(request: Request, account: Account = Depends(require(Role.DPO, Role.AUDITOR))) -> list[dict[str, Any]]:
    """Every erasure, objection and purge with its receipt id; pending ones have no completed_at yet."""
    return [r.as_dict() for r in engine_of(request).receipts()]


@router.get("/receipts/{receipt_id}", tags=["rights"])
def show_receipt(request: Request, receipt_id: int = PathParam(..., ge=1, le=2**63 - 1),
                 account: Account = Depends(require(Role.DPO, Role.AUDITOR))) -> dict[str, Any]:
    """The signed receipt of one finished erasure, objection or purge (404 while it is pending)."""
    try:
        return engine_of(request).receipt(receipt_id)
    except UnknownReceiptError as exc:
        raise ApiError(404, "unknown_receipt", str(exc)) from None


@router.post("/receipts/verify", tags=["rights"])
def verify_receipt(receipt: dict[str, Any], request: Request,
                   account: Account = Depends(require(Role.AUDITOR, Role.DPO))) -> dict[str, Any]:
    """Check a receipt's signature (422 when altered or forged)."""
    return {"valid": True, "verdict": engine_of(request).check_receipt(receipt)}


# -- retention, audit, accounts ----------------------------------------------------------------


class PurgeBody(BaseModel):
    now: datetime | None = Field(None, description="Purge as if it were this time (ISO 8601); default now.")


@router.post("/purge", tags=["retention"])
def purge(request: Request, body: PurgeBody | None = None, account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Remove every image past its expiry; returns the signed receipt."""
    engine = engine_of(request)
    now = body.now if body and body.now else None
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    with engine.acting_as(account.name):
        return engine.purge(now=now)


@router.post("/keys/rotate", tags=["retention"])
def rotate_keys(request: Request, account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Re-encrypt everything under a new key, then drop the old one (admin).

    The way to rotate while the server runs: it is the process holding the keys, so nothing
    is left writing under a dropped key. Refused (409) while another process has the data
    directory open too.
    """
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.rotate_keys()


def _entries(request: Request, since: datetime | None, until: datetime | None, action: str | None) -> list:
    from ..store import iso

    def text(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return iso(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))

    return engine_of(request).audit_entries(since=text(since), until=text(until), action=action)


@router.get("/audit", tags=["audit"])
def audit_list(request: Request, since: datetime | None = None, until: datetime | None = None,
               action: str | None = None, account: Account = Depends(require(Role.AUDITOR))) -> list[dict[str, Any]]:
    """Audit entries in order, optionally in [since, until) and of one action."""
    return [e.as_dict() for e in _entries(request, since, until, action)]


@router.get("/audit/verify", tags=["audit"])
def audit_verify(request: Request, account: Account = Depends(require(Role.AUDITOR))) -> dict[str, Any]:
    """Check the chain; ok is false with the first bad entry when it was tampered with."""
    return as_dict(engine_of(request).verify_audit())


@router.get("/audit/export", response_class=PlainTextResponse, tags=["audit"])
def audit_export(request: Request, since: datetime | None = None, until: datetime | None = None,
                 account: Account = Depends(require(Role.AUDITOR))) -> PlainTextResponse:
    """Audit entries as JSON lines."""
    import json

    lines = "".join(json.dumps(e.as_dict(), sort_keys=True) + "\n" for e in _entries(request, since, until, None))
    return PlainTextResponse(lines, media_type="application/x-ndjson")


class NewUser(BaseModel):
    name: str
    role: Role


@router.get("/users", tags=["accounts"])
def list_users(request: Request, account: Account = Depends(require(Role.ADMIN))) -> list[dict[str, Any]]:
    """Accounts and roles (tokens are never shown again)."""
    return [as_dict(u) for u in engine_of(request).users()]


@router.post("/users", status_code=201, tags=["accounts"])
def add_user(body: NewUser, request: Request, account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Create an account; the token is in this response only."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        created, token = engine.add_user(body.name, role=body.role.value)
    return {**as_dict(created), "token": token}


@router.delete("/users/{name}", tags=["accounts"])
def disable_user(name: str, request: Request, account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Disable an account; its token stops working."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        engine.disable_user(name)
    return {"disabled": name}


# -- the public page's endpoint: no account, never any search result ----------------------------

public = APIRouter(prefix="/public")


@public.post("/requests", status_code=202, tags=["public"])
def public_request(
    request: Request,
    kind: str = Form(..., description="access, erasure or objection"),
    contact: str = Form(..., description="an e-mail address for the answer"),
    photo: list[UploadFile] = File(..., description="a photo of your face, or up to 5 (all of your face, "
                                   "together at most the upload limit)"),
) -> dict[str, Any]:
    """A person asks what is held about them, or for erasure or objection, with a photo of
    their face (or several). Creates a request for the data-protection officer; shows no result."""
    client = client_key(request)
    probes = probe_uploads(request, photo)
    return {
        **engine_of(request).submit_public_request(kind=kind, photo=probes, contact=contact, client=client),
        "message": "Your request is registered. The data-protection officer will answer at the address you "
        "gave within one month. Your photo was used only to find your face and was not kept.",
    }
