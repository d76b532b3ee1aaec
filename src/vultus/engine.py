"""The engine: wiring only. It builds the parts from settings and hands each use case what it needs.

The parts are the :class:`~vultus.deployment.Deployment` (data directory, keys, store, blobs,
writer lock) and the :class:`~vultus.gallery.Gallery` (embedder, analyzer, vector index); the
use cases live in their own modules (see ARCHITECTURE.md).
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import accounts, maintenance, public_requests
from .calibration import calibrate, calibration_figures, evaluate_gallery_model
from .config import Settings
from .deployment import Deployment
from .gallery import Gallery
from .faces import FaceAnalyzer
from .index import VectorIndex
from .ingest import IngestSummary, ingest_paths
from .maintenance import Stats
from .migration import SAMPLE, MigrationReport, migrate_deployment
from .people import PeopleDesk
from .probes import PhotoArg, Probe, read_probes
from .reembed import ModelChange
from .retention import purge_expired, rotate_keys
from .rights import PersonMatch, access_report, check_receipt, erase_person, match_person, object_person, restrict_person
from .search import FUSION, SearchResult, search_gallery
from .store import AuditAction, SourceRecord, Verification, iso, utcnow
from .store.accounts import Account

__all__ = ["Engine", "Stats", "open"]

_ACTOR: ContextVar[str | None] = ContextVar("vultus_actor", default=None)


def _actor_of(settings: Settings) -> str:
    return _ACTOR.get() or settings.actor_name


class Engine:
    """Everything Vultus does, on one data directory. Use :func:`vultus.open` to get one.

    The store is the source of truth; the vector index is a cache of it that is reconciled
    on first use and that :meth:`reindex` rebuilds. Models load on first use, so opening
    is cheap.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.deployment = Deployment(settings)
        self.data_dir, self.keys, self.store, self.blobs = (self.deployment.data_dir, self.deployment.keys,
                                                            self.deployment.store, self.deployment.blobs)
        self.notices = self.deployment.notices
        self.gallery = Gallery(settings, self.store, self.keys, self.deployment.index_url)
        # Bound to the gallery, not to this engine: an engine dropped without close() is then
        # freed (its hold on the directory released) as soon as nothing refers to it.
        self.deployment.index = functools.partial(self.gallery.open_index, writable=True)
        # Public requests seal templates outside the writer lock; a key rotation in this
        # process takes this lock between two of them.
        self._seal_lock = threading.Lock()
        #: People groups of the sources that allow them (``engine.people.list()``, ``.merge()``, ...).
        self.people = PeopleDesk(self.store, deployment=self.deployment, gallery=self.gallery,
                                 actor=functools.partial(_actor_of, settings))
        try:
            self.deployment.finish_interrupted()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the database, the writer lock and this process's hold on the directory."""
        self.deployment.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face pipeline; its weights load on first use."""
        return self.gallery.analyzer

    @property
    def rights_threshold(self) -> float:
        """The similarity at which rights requests match: the setting, else the embedder's own."""
        return self.gallery.rights_threshold

    @property
    def actor(self) -> str:
        """Who is acting, as recorded in the audit log: the account of the current request
        (see :meth:`acting_as`), else the configured or operating-system user."""
        return _actor_of(self.settings)

    @contextmanager
    def acting_as(self, name: str) -> Iterator["Engine"]:
        """Record everything done inside the block (in this thread or task) as ``name``."""
        token = _ACTOR.set(name)
        try:
            yield self
        finally:
            _ACTOR.reset(token)

    # -- sources, ingest and search --------------------------------------------------------

    def add_source(self, name: str, *, basis: str, purpose: str, retention: str, controller: str | None = None,
                   consent_ref: str | None = None, **allows: Any) -> SourceRecord:
        """Register a source of photos with its controller, legal basis, purpose and retention; ``allows``:
        ``purposes`` (search categories; None: the one closest to ``purpose``), ``clustering`` and
        ``clustering_note`` (grouping its faces into people: see :attr:`people`), as :func:`accounts.add_source`."""
        return accounts.add_source(self.store, actor=self.actor, name=name, basis=basis, purpose=purpose,
                                   retention=retention, controller=controller, consent_ref=consent_ref, **allows)

    def set_source(self, name: str, **allows: Any) -> SourceRecord:
        """Change what source ``name`` allows (``purposes``, ``clustering``, ``clustering_note``), audited:
        :func:`accounts.set_source`."""
        return accounts.set_source(self.store, actor=self.actor, name=name, **allows)

    def sources(self) -> list[SourceRecord]:
        """Every registered source, with its image and face counts."""
        return self.store.list_sources()

    def ingest(self, paths: Iterable[str | os.PathLike[str]], *, source: str, workers: int | None = None,
               progress: Callable[[int, int, int], None] | None = None, rename: tuple[str, str] | None = None,
               notice: Callable[[str], None] | None = None, root: str | os.PathLike[str] | None = None,
               video_progress: Callable[[str, int, int, int], None] | None = None) -> IngestSummary:
        """Index the photos and videos in ``paths`` (files, folders, zip and tar archives) into ``source``.

        ``notice(message)`` is told before a long step that shows no progress: rebuilding
        the index when the gallery crosses ``ivf_threshold``. With ``root``, only files whose
        real path (links resolved) is under it are read; the others are refused.
        ``video_progress(name, frames done, frames expected, appearances)`` follows each video.
        """
        return ingest_paths([str(p) for p in paths], source=source, settings=self.settings, deployment=self.deployment,
                            gallery=self.gallery, actor=self.actor, workers=self._workers(workers), progress=progress,
                            rename=rename, notice=notice, root=None if root is None else str(root),
                            video_progress=video_progress)

    def search(self, photo: PhotoArg | Sequence[PhotoArg], *, purpose: str | None, case: str | None,
               top: int | None = None, threshold: float | None = None, face: int | None = None,
               fusion: str = FUSION, category: str | None = None) -> SearchResult:
        """Candidate faces for the face in ``photo`` (a path or the photo's bytes), or for the person in
        several such photos (their results fused, see :data:`~vultus.search.FUSION`), from the sources
        whose purposes allow ``category`` (default: the ``default_category`` setting); logged."""
        return search_gallery(photo, gallery=self.gallery, store=self.store, settings=self.settings, actor=self.actor,
                              purpose=purpose, case=case, top=top, threshold=threshold, face=face, fusion=fusion,
                              category=category)

    # -- accuracy ---------------------------------------------------------------------------

    def evaluate(self, dataset: str | os.PathLike[str], *, pairs: str | os.PathLike[str] | None = None,
                 fpir: float = 0.01, progress: Callable[[int, int], None] | None = None,
                 workers: int | None = None) -> dict:
        """Measured accuracy on a folder-per-identity dataset, or on LFW pairs with their images.

        Photos are analysed in ``workers`` processes (default: the ``workers`` setting, one
        per core; 1 runs here), with the same figures whatever the number.
        """
        return evaluate_gallery_model(Path(dataset), pairs=None if pairs is None else Path(pairs), gallery=self.gallery,
                                      store=self.store, settings=self.settings, fpir=fpir, progress=progress,
                                      workers=self._workers(workers))

    def calibrate(self, dataset: str | os.PathLike[str], *, fmr: float,
                  progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> dict:
        """Set the search threshold for a target false match rate, measured on ``dataset`` (``workers`` as for evaluate)."""
        record = calibrate(self.store, self.analyzer, Path(dataset), fmr=fmr, max_pixels=self.settings.max_pixels,
                           progress=progress, workers=self._workers(workers), names=self.gallery.analysis_names())
        self.store.log(actor=self.actor, action=AuditAction.CALIBRATION, details=calibration_figures(record))
        return record

    def _workers(self, workers: int | None) -> int:
        return self.settings.worker_count if workers is None else max(1, workers)

    # -- rights of the people in the photos -------------------------------------------------

    def match_person(self, photo: PhotoArg | Sequence[PhotoArg], *, face: int | None = None) -> PersonMatch:
        """Stored faces matching the face in a requester's photo, or any face of several photos of
        them (read in memory only; every face must match the first photo's)."""
        probes = read_probes(photo)
        if len(probes) == 1 and probes[0].name == "probe":
            probes = [Probe(probes[0].data, "the requester's photo")]
        return match_person(probes, analyzer=self.analyzer, store=self.store, index=self._open_index(writable=False),
                            threshold=self.rights_threshold, face=face, max_pixels=self.settings.max_pixels,
                            max_decode_mb=self.settings.max_decode_mb)

    def access(self, photo: PhotoArg | Sequence[PhotoArg], *, face: int | None = None, include_crops: bool = False) -> dict:
        """Everything held about the person in ``photo`` (or several photos of them) and every search that returned it."""
        match = self.match_person(photo, face=face)
        return access_report(match, store=self.store, blobs=self.blobs, actor=self.actor, include_crops=include_crops)

    def erase(self, match: PersonMatch) -> dict:
        """Erase every photo and video appearance of a matched person; return the signed receipt."""
        with self.deployment.writing():
            return erase_person(match, **self._erasure_parts())

    def object(self, match: PersonMatch) -> dict:
        """Erase a matched person's photos and appearances and block them from future ingest; signed receipt."""
        with self.deployment.writing():
            return object_person(match, **self._erasure_parts())

    def restrict(self, match: PersonMatch, *, lift: bool = False) -> tuple[int, int]:
        """Restrict (or release) a matched person's faces; return (request id, faces changed)."""
        with self.deployment.writing():
            return restrict_person(match, store=self.store, index=self._open_index(writable=True), actor=self.actor,
                                   lift=lift)

    def suppressions(self) -> list:
        """Suppression entries, by id and dates only."""
        return self.store.registers.list_suppressions()

    def withdraw_suppression(self, suppression_id: int) -> bool:
        """Withdraw a suppression entry (its template is erased); whether one was active."""
        return maintenance.withdraw_suppression(self.store, suppression_id, actor=self.actor)

    def submit_public_request(self, *, kind: str, photo: bytes | Probe | Sequence[bytes | Probe], contact: str,
                              client: str) -> dict:
        """Register a request sent from the public page with one photo or several of the requester, for
        the DPO to carry out (see :mod:`~vultus.public_requests`)."""
        return public_requests.submit_public_request(
            kind=kind, photo=photo, contact=contact, client=client, store=self.store, analyzer=self.analyzer,
            max_pixels=self.settings.max_pixels, max_decode_mb=self.settings.max_decode_mb, sealing=self._seal_lock,
            threshold=self.rights_threshold)

    def fulfil_request(self, request_id: int) -> dict:
        """Carry out an open public request: access report, or erasure or objection receipt."""
        return public_requests.fulfil_request(
            request_id, store=self.store, blobs=self.blobs, analyzer=self.analyzer,
            index=self._open_index(writable=False), threshold=self.rights_threshold, actor=self.actor,
            erase=self.erase, object_to=self.object)

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

    # -- retention, keys and audit -----------------------------------------------------------

    def purge(self, *, now: datetime | None = None) -> dict:
        """Remove every image and video expired at ``now`` (default: the present); signed receipt."""
        with self.deployment.writing():
            return purge_expired(now=now or utcnow(), **self._erasure_parts())

    def rotate_keys(self) -> dict:
        """Re-encrypt everything under a new key and drop the old one (or finish a rotation cut short).

        Refused while another process has the data directory open: it would keep the old
        key in memory and write under it once the key is dropped.
        """
        with self.deployment.alone_to_rotate(), self.deployment.writing():
            parts = self._erasure_parts()
            return rotate_keys(keys=self.keys, store=self.store, blobs=self.blobs, index=parts["index"],
                               actor=self.actor, sealing=self._seal_lock)

    def audit_entries(self, *, since: str | None = None, until: str | None = None, action: str | None = None) -> list:
        """Audit entries in order, optionally in [since, until) and of one action."""
        return self.store.audit_entries(since=since, until=until, action=action)

    def verify_audit(self) -> Verification:
        """Check the whole audit chain and its signed head."""
        return self.store.verify_audit()

    # -- accounts ------------------------------------------------------------------------------

    def add_user(self, name: str, *, role: str) -> tuple[Account, str]:
        """Create an account; return it and its token, which is shown this once only."""
        return accounts.add_user(self.store, actor=self.actor, name=name, role=role)

    def users(self) -> list[Account]:
        """Every account, with its role and whether it is disabled."""
        return self.store.accounts.list()

    def disable_user(self, name: str) -> None:
        """Disable an account: its token stops working; its audit entries stay."""
        accounts.disable_user(self.store, actor=self.actor, name=name)

    def set_password(self, name: str, password: str) -> None:
        """Give an account a password for the web sign-in."""
        accounts.set_password(self.store, actor=self.actor, name=name, password=password)

    def authenticate(self, token: str) -> Account | None:
        """The active account holding ``token``, or None."""
        return self.store.accounts.authenticate(token)

    def authenticate_password(self, name: str, password: str) -> Account | None:
        """The active account ``name`` if ``password`` is its password, or None."""
        return self.store.accounts.authenticate_password(name, password)

    # -- maintenance ---------------------------------------------------------------------------

    def reindex(self) -> int:
        """Rebuild the vector index from the store; return the number of templates in it."""
        with self.deployment.writing():
            return self.gallery.rebuild_index()

    def change_model(self, embedder: str, *, progress: Callable[[int, int], None] | None = None) -> ModelChange:
        """Re-embed every stored face with ``embedder`` and make it the gallery's (see :func:`~vultus.maintenance.change_model`)."""
        with self.deployment.writing():
            return maintenance.change_model(embedder, settings=self.settings, store=self.store, blobs=self.blobs,
                                            gallery=self.gallery, actor=self.actor, progress=progress)

    def migrate(self, *, to_store: str, to_index: str, replace_index: bool = False, sample: int = SAMPLE,
                progress: Callable[[str, int, int], None] | None = None) -> MigrationReport:
        """Copy this deployment into the store at ``to_store`` and build its index at ``to_index``,
        verified, and audited on both sides (see :mod:`~vultus.migration`); the key file and the blobs
        stay in the data directory. ``progress(step, done, total)``: a table's name, ``index`` or ``verify``."""
        return migrate_deployment(deployment=self.deployment, gallery=self.gallery, settings=self.settings,
                                  to_store=to_store, to_index=to_index, actor=self.actor, replace_index=replace_index,
                                  sample=sample, progress=progress)

    def stats(self) -> Stats:
        """Counts and sizes of this deployment."""
        return maintenance.stats(self.settings, self.store, self.gallery, self.data_dir)

    def _open_index(self, *, writable: bool) -> VectorIndex:
        return self.gallery.open_index(writable=writable)

    def _erasure_parts(self) -> dict:
        return {"store": self.store, "blobs": self.blobs, "index": self._open_index(writable=True), "keys": self.keys,
                "actor": self.actor}


def open(data_dir: str | os.PathLike[str] | None = None, **settings: object) -> Engine:  # noqa: A001
    """Open (creating if needed) the Vultus deployment in ``data_dir``.

    Other keyword arguments override :class:`~vultus.config.Settings` fields, which
    otherwise come from ``VULTUS_*`` environment variables and the defaults.
    """
    return Engine(Settings.from_env(data_dir=Path(data_dir) if data_dir is not None else None, **settings))
