"""The engine: one facade that wires store, blobs, index and face models for the use cases."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .calibration import calibrate, calibration_figures, calibration_of, evaluate_folder, evaluate_pairs
from .config import Settings
from .crypto import Keyring
from .datadir import Presence, secure_permissions
from .erasures import finish_pending
from .errors import (
    DataDirError,
    DataDirLockedError,
    IndexCorruptError,
    InputPathError,
    KeyFileError,
    ModelError,
    PolicyError,
    RateLimitedError,
    TamperedDataError,
    storage_error,
)
from .faces import Embedder, FaceAnalyzer, QualityGate, create_aligner, create_detector, create_embedder
from .index import LockedIndex, VectorIndex, create_index
from .ingest import IngestSummary, Ingestor, SuppressionCheck
from .policy import refuse_remote, source_fields
from .reembed import ModelChange, convert_gallery
from .retention import purge_expired, rotate_keys
from .policy import check_gallery_model
from .rights import (
    PersonMatch,
    access_report,
    check_receipt,
    due_date,
    erase_person,
    match_person,
    match_template,
    object_person,
    requester_template,
    restrict_person,
)
from .search import SearchResult, search_photo
from .store import AuditAction, BlobStore, SourceRecord, Store, Verification, iso, utcnow
from .store.accounts import Account

__all__ = ["Engine", "Stats", "open"]

DB_NAME = "vultus.db"
INDEX_PATH = Path("index") / "faces.faiss"
#: What a person may ask for on the public page, and how often a day per address.
PUBLIC_REQUEST_KINDS = ("access", "erasure", "objection")
PUBLIC_REQUESTS_PER_DAY = 3
#: Present while a writer works; found at the next writer's start, it means a crash.
DIRTY_MARKER = ".writing"
#: Meta keys: the gallery's embedder name, and the name each model id was made with
#: (needed to honour suppression entries recorded under an earlier model).
GALLERY_EMBEDDER = "embedder"
MODEL_NAME = "model_name:"
DEFAULT_EMBEDDER = "dlib-resnet-v1"


@dataclass(frozen=True)
class Stats:
    """Sizes of a deployment, for `vultus stats`."""

    data_dir: str
    sources: int
    images: int
    images_with_faces: int
    faces: int
    index_vectors: int
    index_bytes: int
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


class Engine:
    """Everything Vultus does, on one data directory. Use :func:`vultus.open` to get one.

    The store is the source of truth; the vector index is a cache of it that is reconciled
    on first use (templates missing from it are added, stray entries removed) and that
    :meth:`reindex` rebuilds. Models load on first use, so opening is cheap.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        try:
            # Owner-only: the directory holds biometric data, even if encrypted.
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, self.data_dir) or DataDirError(
                f"Cannot create the data directory {self.data_dir}: {exc.strerror}."
            ) from exc
        if not os.access(self.data_dir, os.W_OK):
            read_only = bool(os.statvfs(self.data_dir).f_flag & os.ST_RDONLY)
            raise storage_error(OSError(errno.EROFS if read_only else errno.EACCES, "not writable"), self.data_dir)
        # A key file is made only with a new deployment: a missing one for existing data is
        # an error, never a silent new key that would leave the data unreadable.
        is_new = not (self.data_dir / DB_NAME).exists()
        try:
            self.keys = Keyring.open(settings.key_path, create=is_new)
        except KeyFileError as exc:
            raise KeyFileError(
                f"{exc} The data directory {self.data_dir} was created with a key file: point "
                "--key-file (or VULTUS_KEY_FILE) at it, or restore it from your backup."
            ) from None
        #: Things the operator should know about this deployment (printed by the CLI).
        self.notices: list[str] = secure_permissions(self.data_dir, settings.key_path)
        if is_new:
            # Made owner-only before SQLite opens it: SQLite gives its WAL files the
            # database's mode, and would otherwise create all three under the umask.
            os.close(os.open(self.data_dir / DB_NAME, os.O_CREAT | os.O_WRONLY, 0o600))
        self._presence = Presence(self.data_dir)
        try:
            self.store = Store(self.data_dir / DB_NAME, self.keys)
            self._check_key_belongs()
        except BaseException:
            self._presence.close()
            raise
        # The public page's counts live a day; without new attempts nothing else would delete them.
        self.store.registers.forget_public_attempts(before=iso(utcnow() - timedelta(days=1)))
        if self.keys.rotation_pending:
            self.notices.append(
                "A key rotation was interrupted: an old key is still in the key file. Run `vultus keys rotate` "
                "to finish it (nothing is lost meanwhile; both keys still open the data)."
            )
        self.blobs = BlobStore(self.data_dir / "blobs", self.keys)
        # The gallery remembers its embedder, so commands after `reindex --model` need no flag.
        self._embedder_name = settings.embedder or self.store.get_meta(GALLERY_EMBEDDER) or DEFAULT_EMBEDDER
        self._embedder = create_embedder(self._embedder_name)
        self._analyzer: FaceAnalyzer | None = None
        self._index: VectorIndex | None = None
        self._index_signature: tuple[int, int, int] | None = None
        self._lock_fd: int | None = None
        # The server shares one engine between threads: one writer at a time, and every
        # use of the in-memory index under one lock (FAISS must not search while it changes).
        self._write_mutex = threading.Lock()
        self._index_lock = threading.RLock()
        self._seal_lock = threading.Lock()
        # An erasure a crash cut short is finished by the next command of any kind, reads
        # included; when another process holds the writer lock, that one has done it at its start.
        if self.store.erasures.has_pending():
            try:
                with self._writing():
                    pass
            except DataDirLockedError:
                pass
            except BaseException:
                self.close()
                raise

    # -- lifecycle -------------------------------------------------------------------------

    def _check_key_belongs(self) -> None:
        """Refuse a key file from another deployment before anything is written with it.

        The signing key's fingerprint names the deployment; one sealed template, opened
        here, proves the encryption keys are the right ones too. Without that check a key
        file with the right signing key but another AES key would surface later as a
        "corrupt index", and a rebuild would be tried that cannot succeed.
        """
        fingerprint = hashlib.sha256(self.keys.public_key).hexdigest()[:32]
        recorded = self.store.get_meta("key_fingerprint")
        if recorded is None:
            self.store.set_meta("key_fingerprint", fingerprint)
        elif recorded != fingerprint:
            self.store.close()
            raise KeyFileError(
                f"The key file {self.keys.path} belongs to another deployment (fingerprint "
                f"{fingerprint}, this data directory expects {recorded}). Use the key file it was "
                "created with."
            )
        try:
            self.store.open_one_template()
        except (KeyFileError, TamperedDataError):
            self.store.close()
            raise KeyFileError(
                f"The encryption keys in {self.keys.path} do not open the templates in {self.data_dir}: "
                "this is the wrong key file (or a damaged copy of the right one). Nothing was changed. "
                "Use the key file this data directory was created with, or restore it from your backup."
            ) from None

    def close(self) -> None:
        """Release the database, the writer lock and this process's hold on the directory."""
        self._release_lock()
        self.store.close()
        self._presence.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sources ---------------------------------------------------------------------------

    def add_source(
        self,
        name: str,
        *,
        basis: str,
        purpose: str,
        retention: str,
        controller: str | None = None,
        consent_ref: str | None = None,
    ) -> SourceRecord:
        """Register a source of photos with its controller, legal basis, purpose and retention."""
        fields = source_fields(
            name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref
        )
        record = self.store.add_source(**fields)
        self.store.log(actor=self.actor, action=AuditAction.SOURCE_ADD, details=fields)
        return record

    def sources(self) -> list[SourceRecord]:
        """Every registered source, with its image and face counts."""
        return self.store.list_sources()

    # -- ingest and search -----------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        source: str,
        workers: int | None = None,
        progress: Callable[[int, int, int], None] | None = None,
        rename: tuple[str, str] | None = None,
        notice: Callable[[str], None] | None = None,
        root: str | os.PathLike[str] | None = None,
    ) -> IngestSummary:
        """Index the photos in ``paths`` (files, folders, zip and tar archives) into ``source``.

        ``notice(message)`` is told before a long step that shows no progress: rebuilding
        the index when the gallery crosses ``ivf_threshold``. With ``root``, only files whose
        real path (links resolved) is under it are read; the others are refused.
        """
        with self._writing():
            check_gallery_model(self.store.model_ids(), self._embedder.model_id)
            ingestor = Ingestor(
                store=self.store,
                blobs=self.blobs,
                index=self._open_index(writable=True),
                analyzer=lambda: self.analyzer,
                detector=self.settings.detector,
                embedder=self._embedder_name,
                model_id=self._embedder.model_id,
                detect_size=self.settings.detect_size,
                max_pixels=self.settings.max_pixels,
                max_decode_mb=self.settings.max_decode_mb,
                actor=self.actor,
                suppression=self._suppression_checks(),
                gate=QualityGate(self.settings.min_face_size, self.settings.min_detector_score),
            )
            count = self.settings.worker_count if workers is None else max(1, workers)
            try:
                summary = ingestor.run([str(p) for p in paths], source=source, workers=count, progress=progress,
                                       rename=rename, root=None if root is None else str(root))
            finally:
                # Once the gallery holds this model's templates (even from an interrupted run),
                # later commands must use the same model without being told.
                if self._embedder.model_id in self.store.model_ids():
                    self._remember_model()
            started = time.monotonic()
            summary.index_rebuilt = self._fit_index(notice)
            if summary.index_rebuilt:
                summary.index_seconds = time.monotonic() - started
            return summary

    def _fit_index(self, notice: Callable[[str], None] | None = None) -> str | None:
        """Switch the index between exact and IVF for the gallery's size (writers only).

        Returns the new kind of index (``exact`` or ``ivf``), or None when it was kept.
        """
        with self._index_lock:
            index = self._open_index_locked(writable=True)
            plan = index.plan_size(self.settings.ivf_threshold)
            if plan is None:
                return None
            if notice is not None:
                if plan == "ivf":
                    # Measured by bench/speed.py on 2 cores: 9 s at 100k faces, 80 s at 1M.
                    notice(f"Building the large-gallery (IVF) index for {len(index):,} faces; "
                           "this takes about a minute per million faces.")
                else:
                    threshold = self.settings.ivf_threshold
                    why = ("VULTUS_IVF_THRESHOLD is 0: always exact" if threshold <= 0
                           else "the gallery is now within VULTUS_IVF_THRESHOLD")
                    notice(f"Returning to exact search for {len(index):,} faces ({why}).")
            index.fit_size(self.settings.ivf_threshold, self._searchable_vectors)
            index.save()
            return plan

    def _searchable_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every searchable face's id and template, from the store (the exact values)."""
        parts = list(self.store.face_vectors(self.store.searchable_face_ids().tolist()))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._embedder.spec.dim), dtype=np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @property
    def rights_threshold(self) -> float:
        """The similarity at which rights requests match: the setting, else the embedder's own."""
        if self.settings.rights_threshold is not None:
            return self.settings.rights_threshold
        return self._embedder.spec.default_rights_threshold

    def _remember_model(self) -> None:
        """Record the embedder's name as the gallery's, and under its model id."""
        name = self._embedder_name
        if self.store.get_meta(GALLERY_EMBEDDER) != name:
            self.store.set_meta(GALLERY_EMBEDDER, name)
        self.store.set_meta(MODEL_NAME + self._embedder.model_id, name)

    def _suppression_checks(self) -> list[SuppressionCheck]:
        """One check per model under which active suppression entries were recorded.

        Entries made before a `reindex --model` keep their old templates (the objector's
        photo is never kept, so they cannot be re-embedded); ingest then embeds each new
        face with that old model too, so an objection outlives a change of model.
        """
        checks = []
        for model_id in self.store.registers.suppression_models():
            if model_id == self._embedder.model_id:
                checks.append(SuppressionCheck(model_id, None, self._embedder.spec.distance(self.rights_threshold)))
                continue
            name = self.store.get_meta(MODEL_NAME + model_id) or model_id
            try:
                other = create_embedder(name)
                matches = other.model_id == model_id
            except ModelError as exc:
                raise ModelError(
                    f"Objections were recorded with the model {model_id}, which cannot be loaded "
                    f"now ({exc}). Ingest would not be able to honour them; restore that model "
                    "(an ONNX file at the same path) and run this again."
                ) from None
            if not matches:
                raise ModelError(
                    f"Objections were recorded with the model {model_id}, but {name} is now "
                    f"{other.model_id}. Ingest would not be able to honour them; restore the "
                    "original model file and run this again."
                )
            checks.append(SuppressionCheck(model_id, name, other.spec.distance(other.spec.default_rights_threshold)))
        return checks

    def search(
        self,
        photo: bytes | str | os.PathLike[str],
        *,
        purpose: str | None,
        case: str | None,
        top: int | None = None,
        threshold: float | None = None,
        face: int | None = None,
    ) -> SearchResult:
        """Candidate faces for the face in ``photo`` (a path or the photo's bytes); logged."""
        data, name = _read_probe(photo)
        # The index loads (file, decryption, reconciliation) while the probe is analysed:
        # both are mostly native code, so a cold search takes the longer of the two, not the sum.
        index = _InBackground(lambda: self._open_index(writable=False))
        return search_photo(
            data,
            analyzer=self.analyzer,
            store=self.store,
            index=index.result,
            purpose=purpose,
            case=case,
            top=top or self.settings.top,
            threshold=self.settings.threshold if threshold is None else threshold,
            face=face,
            name=name,
            max_pixels=self.settings.max_pixels,
            max_decode_mb=self.settings.max_decode_mb,
            actor=self.actor,
            purpose_required=self.settings.purpose_required,
            calibration=calibration_of(self.store, self._embedder.model_id),
        )

    # -- accuracy ---------------------------------------------------------------------------------

    def evaluate(self, dataset: str | os.PathLike[str], *, pairs: str | os.PathLike[str] | None = None,
                 fpir: float = 0.01, progress: Callable[[int, int], None] | None = None,
                 workers: int | None = None) -> dict:
        """Measured accuracy on a folder-per-identity dataset, or on LFW pairs with their images.

        Photos are analysed in ``workers`` processes (default: the ``workers`` setting, one
        per core; 1 runs here), with the same figures whatever the number.
        """
        calibration = calibration_of(self.store, self._embedder.model_id)
        threshold = self.settings.threshold or (calibration["threshold"] if calibration else
                                                self._embedder.spec.default_threshold)
        common = {"threshold": threshold, "max_pixels": self.settings.max_pixels, "progress": progress,
                  **self._analysis_workers(workers)}
        if pairs is not None:
            return evaluate_pairs(self.analyzer, Path(pairs), Path(dataset), **common)
        return evaluate_folder(self.analyzer, Path(dataset), fpir=fpir, **common)

    def calibrate(self, dataset: str | os.PathLike[str], *, fmr: float,
                  progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> dict:
        """Set the search threshold for a target false match rate, measured on ``dataset`` (``workers`` as for evaluate)."""
        record = calibrate(self.store, self.analyzer, Path(dataset), fmr=fmr, max_pixels=self.settings.max_pixels,
                           progress=progress, **self._analysis_workers(workers))
        self.store.log(actor=self.actor, action=AuditAction.CALIBRATION,
                       details=calibration_figures(record))
        return record

    def _analysis_workers(self, workers: int | None) -> dict:
        # Workers build the analyzer from the names the engine's own was built from.
        return {"workers": self.settings.worker_count if workers is None else max(1, workers),
                "names": (self.settings.detector, self._embedder_name, self.settings.detect_size,
                          self.settings.min_face_size)}

    # -- rights of the people in the photos -------------------------------------------------

    def match_person(self, photo: bytes | str | os.PathLike[str], *, face: int | None = None) -> PersonMatch:
        """Stored faces matching the face in a requester's photo (read in memory only)."""
        data, _ = _read_probe(photo)
        return match_person(
            data,
            analyzer=self.analyzer,
            store=self.store,
            index=self._open_index(writable=False),
            threshold=self.rights_threshold,
            face=face,
            max_pixels=self.settings.max_pixels,
            max_decode_mb=self.settings.max_decode_mb,
        )

    def access(self, photo: bytes | str | os.PathLike[str], *, face: int | None = None, include_crops: bool = False) -> dict:
        """Everything held about the person in ``photo`` and every search that returned it."""
        match = self.match_person(photo, face=face)
        return access_report(match, store=self.store, blobs=self.blobs, actor=self.actor, include_crops=include_crops)

    def erase(self, match: PersonMatch) -> dict:
        """Erase every photo of a matched person; return the signed receipt."""
        with self._writing():
            return erase_person(match, **self._erasure_parts())

    def object(self, match: PersonMatch) -> dict:
        """Erase a matched person's photos and block them from future ingest; signed receipt."""
        with self._writing():
            return object_person(match, **self._erasure_parts())

    def restrict(self, match: PersonMatch, *, lift: bool = False) -> tuple[int, int]:
        """Restrict (or release) a matched person's faces; return (request id, faces changed)."""
        with self._writing():
            return restrict_person(match, store=self.store, index=self._open_index(writable=True), actor=self.actor, lift=lift)

    def suppressions(self) -> list:
        """Suppression entries, by id and dates only."""
        return self.store.registers.list_suppressions()

    def withdraw_suppression(self, suppression_id: int) -> bool:
        """Withdraw a suppression entry (its template is erased); whether one was active."""
        with self.store.transaction() as conn:
            done = self.store.registers.withdraw_suppression(suppression_id, at=iso(utcnow()), conn=conn)
            if done:
                self.store.log(
                    actor=self.actor, action=AuditAction.SUPPRESSION_WITHDRAW, details={"suppression_id": suppression_id}, conn=conn
                )
        return done

    def submit_public_request(self, *, kind: str, photo: bytes, contact: str, client: str) -> dict:
        """Register a request sent from the public page, for the DPO to carry out.

        The photo is used in memory to make the face template, which is kept sealed until
        the request is carried out; the photo is not kept. At most
        ``PUBLIC_REQUESTS_PER_DAY`` attempts a day per contact address or client, refused
        ones included.
        """
        if kind not in PUBLIC_REQUEST_KINDS:
            raise PolicyError(f"A request is one of: {', '.join(PUBLIC_REQUEST_KINDS)}; not {kind!r}.")
        contact = (contact or "").strip()
        if not re.fullmatch(r"[^@\s]{1,100}@[^@\s]{1,100}\.[^@\s]{1,20}", contact):
            raise PolicyError("Give an e-mail address at which the data-protection officer can answer you.")
        now = utcnow()
        # Counted before the photo is looked at, so that refused attempts (no face, a bad
        # photo) count too, and atomically, so that concurrent ones cannot all pass.
        attempt = self.store.registers.reserve_public_attempt(
            contact=contact, client=client, at=iso(now), since=iso(now - timedelta(days=1)),
            limit=PUBLIC_REQUESTS_PER_DAY,
        )
        if attempt is None:
            raise RateLimitedError(
                f"At most {PUBLIC_REQUESTS_PER_DAY} requests a day may be sent from one address; your earlier "
                "requests are registered and will be answered. Try again tomorrow if you need to."
            )
        try:
            template = requester_template(photo, analyzer=self.analyzer, max_pixels=self.settings.max_pixels,
                                          max_decode_mb=self.settings.max_decode_mb)
        except BaseException:
            # A refused attempt still counts for the client that sent it, but not for the
            # address it named: anyone could name someone else's address to block them.
            self.store.registers.refused_public_attempt(attempt)
            raise
        probe_sha256 = hashlib.sha256(photo).hexdigest()
        # Sealed outside the writer lock (the public page must not wait for an ingest): a
        # rotation in this process starts only between two such seal-and-commits, so every
        # request is either committed before it (and re-sealed by it) or sealed under the new key.
        with self._seal_lock, self.store.transaction() as conn:
            request_id = self.store.registers.open_public_request(
                kind=kind, template=template, model_id=self.analyzer.model_id, contact=contact,
                received_at=iso(now), due_at=iso(due_date(now)), probe_sha256=probe_sha256, attempt_id=attempt,
                conn=conn,
            )
            self.store.log(
                actor="public", action=AuditAction.PUBLIC_REQUEST,
                details={"request_id": request_id, "kind": kind, "probe_sha256": probe_sha256}, conn=conn,
            )
        return {"request_id": request_id, "kind": kind, "due_at": iso(due_date(now))}

    def fulfil_request(self, request_id: int) -> dict:
        """Carry out an open public request: access report, or erasure or objection receipt."""
        request, template, model_id = self.store.registers.public_request_template(request_id)
        check_gallery_model([model_id], self.analyzer.model_id)
        match = match_template(
            template, probe_sha256=request.probe_sha256 or "", analyzer=self.analyzer, store=self.store,
            index=self._open_index(writable=False), threshold=self.rights_threshold, request_id=request_id,
        )
        contact = self.store.registers.contact_of(request_id)
        if request.kind == "access":
            result = access_report(match, store=self.store, blobs=self.blobs, actor=self.actor, include_crops=True)
        elif request.kind == "erasure":
            result = self.erase(match)
        else:
            result = self.object(match)
        return {"request_id": request_id, "kind": request.kind, "contact": contact, "result": result}

    def request_details(self, request_id: int) -> dict:
        """One request, with the requester's contact address for a public one."""
        request = self.store.registers.get_request(request_id)
        return {**request.as_dict(), "contact": self.store.registers.contact_of(request_id)}

    def requests(self, *, overdue: bool = False) -> list:
        """The requests register, or only requests open past their due date."""
        return self.store.registers.list_requests(overdue_at=iso(utcnow()) if overdue else None)

    def check_receipt(self, receipt: dict) -> str:
        """Verify a receipt's signature; say whether this deployment signed it."""
        return check_receipt(receipt, keys=self.keys)

    def receipts(self) -> list:
        """Every erasure, objection and purge, done or still pending, with its counts."""
        return self.store.erasures.list()

    def receipt(self, erasure_id: int) -> dict:
        """The signed receipt of a finished erasure, objection or purge (kept for good)."""
        return self.store.erasures.receipt(erasure_id)

    # -- retention, keys and audit --------------------------------------------------------------

    def purge(self, *, now: datetime | None = None) -> dict:
        """Remove every image expired at ``now`` (default: the present); signed receipt."""
        with self._writing():
            return purge_expired(now=now or utcnow(), **self._erasure_parts())

    def rotate_keys(self) -> dict:
        """Re-encrypt everything under a new key and drop the old one (or finish a rotation cut short).

        Refused while another process has the data directory open: it would keep the old
        key in memory and write under it once the key is dropped.
        """
        why = (f"Another process has {self.data_dir} open (`vultus serve`, or a command still running). "
               "Rotating beside it would leave it writing under a dropped key, so nothing was changed. "
               "Rotate through the running server (POST /v1/keys/rotate as an admin), or stop it and run "
               "`vultus keys rotate` again.")
        with self._presence.alone(why=why), self._writing():
            parts = self._erasure_parts()
            return rotate_keys(keys=self.keys, store=self.store, blobs=self.blobs, index=parts["index"], actor=self.actor,
                               sealing=self._seal_lock)

    def audit_entries(self, *, since: str | None = None, until: str | None = None, action: str | None = None) -> list:
        """Audit entries in order, optionally in [since, until) and of one action."""
        with self.store.engine.connect() as conn:
            return list(self.store.audit.entries(conn, since=since, until=until, action=action))

    def verify_audit(self) -> Verification:
        """Check the whole audit chain and its signed head."""
        with self.store.engine.connect() as conn:
            return self.store.audit.verify(conn)

    # -- accounts -------------------------------------------------------------------------------

    def add_user(self, name: str, *, role: str) -> tuple[Account, str]:
        """Create an account; return it and its token, which is shown this once only."""
        account, token = self.store.accounts.add(name, role, at=iso(utcnow()))
        self.store.log(actor=self.actor, action=AuditAction.USER_ADD, details={"name": name, "role": account.role.value})
        return account, token

    def users(self) -> list[Account]:
        """Every account, with its role and whether it is disabled."""
        return self.store.accounts.list()

    def disable_user(self, name: str) -> None:
        """Disable an account: its token stops working; its audit entries stay."""
        self.store.accounts.disable(name, at=iso(utcnow()))
        self.store.log(actor=self.actor, action=AuditAction.USER_DISABLE, details={"name": name})

    def set_password(self, name: str, password: str) -> None:
        """Give an account a password for the web sign-in."""
        self.store.accounts.set_password(name, password)
        self.store.log(actor=self.actor, action=AuditAction.USER_PASSWORD, details={"name": name})

    def authenticate(self, token: str) -> Account | None:
        """The active account holding ``token``, or None."""
        return self.store.accounts.authenticate(token)

    def authenticate_password(self, name: str, password: str) -> Account | None:
        """The active account ``name`` if ``password`` is its password, or None."""
        return self.store.accounts.authenticate_password(name, password)

    def _erasure_parts(self) -> dict:
        return {
            "store": self.store,
            "blobs": self.blobs,
            "index": self._open_index(writable=True),
            "keys": self.keys,
            "actor": self.actor,
        }

    @property
    def actor(self) -> str:
        """Who is acting, as recorded in the audit log: the account of the current request
        (see :meth:`acting_as`), else the configured or operating-system user."""
        return _ACTOR.get() or self.settings.actor_name

    @contextmanager
    def acting_as(self, name: str) -> Iterator["Engine"]:
        """Record everything done inside the block (in this thread or task) as ``name``."""
        token = _ACTOR.set(name)
        try:
            yield self
        finally:
            _ACTOR.reset(token)

    # -- maintenance -----------------------------------------------------------------------

    def reindex(self) -> int:
        """Rebuild the vector index from the store; return the number of templates in it."""
        with self._writing():
            return self._rebuild_index()

    def change_model(self, embedder: str, *, progress: Callable[[int, int], None] | None = None) -> ModelChange:
        """Re-embed every stored face with ``embedder`` (a name or an ONNX path) and make it the gallery's.

        Faces are re-aligned from their stored boxes on the stored photo copies. Run again
        after an interruption to finish. Suppression entries keep their old templates and
        are still honoured (see :meth:`_suppression_checks`); open public requests must be
        carried out first, since their templates cannot be converted.
        """
        with self._writing():
            new = create_embedder(embedder)
            new_id = new.model_id  # loads and checks the model before anything changes
            waiting = {m: n for m, n in self.store.registers.open_request_models().items() if m != new_id}
            if waiting:
                raise PolicyError(
                    f"{sum(waiting.values())} public request(s) wait with a template of the current model, "
                    "which a new model cannot read. Carry them out (`vultus requests`, or the DPO queue) "
                    "first, then change the model."
                )
            analyzer = self._analyzer_for(new)
            with self._index_lock:
                # The index is a cache of the old templates: drop it first, so no half-converted
                # gallery is ever searched through it.
                (self.data_dir / INDEX_PATH).unlink(missing_ok=True)
                self._index = None
                self._embedder_name, self._embedder, self._analyzer = embedder, new, analyzer
            self._remember_model()
            change = convert_gallery(self.store, self.blobs, analyzer, max_pixels=self.settings.max_pixels,
                                     max_decode_mb=self.settings.max_decode_mb,
                                     progress=progress)
            self.store.log(actor=self.actor, action=AuditAction.MODEL_CHANGE, details=change.as_dict())
            self._rebuild_index()
            return change

    def _rebuild_index(self) -> int:
        # Without a file, opening rebuilds the index from the store and saves it. The old
        # file is set aside, not deleted, until the new one is saved: a rebuild that fails
        # (templates that cannot be read) must not leave the deployment with no index.
        with self._index_lock:
            path = self.data_dir / INDEX_PATH
            aside = path.with_name(path.name + ".previous")
            if path.exists():
                path.replace(aside)
            self._index = None
            try:
                count = len(self._open_index(writable=True))
                self._fit_index()
            except BaseException:
                self._index = None
                if aside.exists():
                    aside.replace(path)
                raise
            aside.unlink(missing_ok=True)
            return count

    def stats(self) -> Stats:
        """Counts and sizes of this deployment."""
        counts = self.store.counts()
        try:
            index = self._open_index(writable=False)
            vectors, index_bytes = len(index), index.file_size()
            kind = index.kind if index.kind != "ivf" else f"ivf (nprobe {index.nprobe})"
        except ModelError:  # two models (an unfinished `reindex --model`): stats still answer
            vectors, index_bytes, kind = 0, 0, "none (the gallery holds two models)"
        return Stats(
            data_dir=str(self.data_dir.resolve()),
            sources=counts["sources"],
            images=counts["images"],
            images_with_faces=counts["images_with_faces"],
            faces=counts["faces"],
            index_vectors=vectors,
            index_bytes=index_bytes,
            index_kind=kind,
            disk_bytes=_disk_usage(self.data_dir),
            embedder=self._embedder.model_id,
            detector=self.settings.detector,
            gallery_models=sorted(self.store.model_ids()),
            restricted_faces=len(self.store.restricted_face_ids()),
            audit_entries=self.store.audit_count(),
            open_requests=sum(1 for r in self.store.registers.list_requests() if r.completed_at is None),
            active_suppressions=sum(1 for e in self.store.registers.list_suppressions() if e.withdrawn_at is None),
            purpose_required=self.settings.purpose_required,
            key_file=str(self.settings.key_path.resolve()),
        )

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face pipeline; its weights load on first use."""
        if self._analyzer is None:
            self._analyzer = self._analyzer_for(self._embedder)
        return self._analyzer

    def _analyzer_for(self, embedder: Embedder) -> FaceAnalyzer:
        # The engine's own embedder instance, so that an ONNX model whose shape the engine
        # has already read is not loaded a second time by the analyzer.
        return FaceAnalyzer(create_detector(self.settings.detector), create_aligner(embedder.aligner), embedder,
                            detect_size=self.settings.detect_size, min_face=self.settings.min_face_size,
                            lanes=self.settings.worker_count)

    # -- internals -------------------------------------------------------------------------

    def _open_index(self, *, writable: bool) -> VectorIndex:
        """The index, reconciled with the store; saved only by a writer holding the lock.

        A cheap signature of the faces table (count and highest id, ids never reused)
        tells when another process or call has changed the store since the last
        reconciliation, so a long-lived engine never searches a stale index.
        """
        with self._index_lock:
            return LockedIndex(self._open_index_locked(writable), self._index_lock)

    def _open_index_locked(self, writable: bool) -> VectorIndex:
        # Never load another model's templates into this model's index (an unfinished
        # `reindex --model`, or --embedder set to something else): refuse with advice.
        check_gallery_model(self.store.model_ids(), self._embedder.model_id)
        signature = self.store.face_signature()
        if self._index is not None and signature == self._index_signature:
            return self._index
        if self._index is None:
            path = self.data_dir / INDEX_PATH
            try:
                self._index = create_index("faiss", path, self._embedder.spec.dim, self.keys)
            except IndexCorruptError:
                if not writable:
                    raise
                path.unlink()
                self._index = create_index("faiss", path, self._embedder.spec.dim, self.keys)
        if _reconcile(self._index, self.store) and writable:
            self._index.save()
        self._index_signature = signature
        return self._index

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the data directory's writer lock: one writer at a time, across processes
        (a lock file) and across the threads of this process (a mutex)."""
        busy = DataDirLockedError(
            f"Another Vultus operation is writing to {self.data_dir} (an ingest, erasure, purge, "
            "key rotation or reindex). Wait for it to finish, then run this again."
        )
        if not self._write_mutex.acquire(blocking=False):
            raise busy
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._write_mutex.release()
            raise busy from None
        self._lock_fd = fd
        marker = self.data_dir / DIRTY_MARKER
        try:
            finish_pending(store=self.store, blobs=self.blobs, keys=self.keys,
                           index=lambda: self._open_index(writable=True))
            if marker.exists():
                self._sweep_after_crash()
            marker.touch()
            try:
                yield
            except (PolicyError, ModelError):
                marker.unlink()  # refused by a check that runs before anything is written
                raise
            marker.unlink()
        finally:
            self._release_lock()

    def _sweep_after_crash(self) -> None:
        """Remove what an interrupted writer left: temporary files and unreferenced blobs.

        A writer puts blobs on disk before their rows commit, so a kill in between leaves
        a photo copy that nothing refers to; it must not outlive its (never stored) row.
        """
        for folder in (self.blobs.root, self.data_dir / INDEX_PATH.parent):
            if folder.is_dir():
                for tmp in [*folder.rglob(".tmp-*"), *folder.glob("*.previous")]:
                    tmp.unlink(missing_ok=True)
        referenced = self.store.blob_keys()
        for key in self.blobs.keys():
            if key not in referenced:
                self.blobs.delete(key)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
            self._write_mutex.release()


_ACTOR: ContextVar[str | None] = ContextVar("vultus_actor", default=None)


class _InBackground:
    """Runs ``work`` in a thread; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, work: Callable[[], object]):
        self._value: object = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
                self._error = exc

        self._thread = threading.Thread(target=run, name="vultus-index", daemon=True)
        self._thread.start()

    def result(self):  # noqa: ANN201 - whatever work returned
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _reconcile(index: VectorIndex, store: Store) -> bool:
    """Make the index hold exactly the store's searchable faces; return whether it changed."""
    in_store = store.searchable_face_ids()
    in_index = index.ids()
    stray = np.setdiff1d(in_index, in_store, assume_unique=True)
    missing = np.setdiff1d(in_store, in_index, assume_unique=True)
    if len(stray):
        index.remove(stray)
    for ids, vectors in store.face_vectors(missing.tolist()) if len(missing) else ():
        index.add(ids, vectors)
    return bool(len(stray) or len(missing))


def _read_probe(photo: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The probe's bytes and a name for messages; a path is read, never copied."""
    if isinstance(photo, (bytes, bytearray)):
        return bytes(photo), "probe"
    path = Path(photo)
    refuse_remote([str(photo)])
    try:
        return path.read_bytes(), str(photo)
    except FileNotFoundError:
        raise InputPathError(f"The probe photo {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise InputPathError(f"{path} is a folder; search takes one photo.") from None


def _disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def open(data_dir: str | os.PathLike[str] | None = None, **settings: object) -> Engine:  # noqa: A001
    """Open (creating if needed) the Vultus deployment in ``data_dir``.

    Other keyword arguments override :class:`~vultus.config.Settings` fields, which
    otherwise come from ``VULTUS_*`` environment variables and the defaults.
    """
    return Engine(Settings.from_env(data_dir=Path(data_dir) if data_dir is not None else None, **settings))
