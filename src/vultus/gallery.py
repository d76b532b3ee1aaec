"""The gallery's model and its vector index: which embedder it uses, the analyzer for it, the index kept in step.

The store is the source of truth; the vector index (the backend its URL names) is a cache of
it that is reconciled on first use (templates missing from it are added, stray entries
removed), refitted to the gallery's size when it is :class:`~vultus.index.Resizable` (FAISS:
exact, then IVF), and rebuilt from the store on demand. The
gallery remembers its embedder in the store, so commands after a change of model need no
flag, and an objection recorded under an earlier model is still honoured.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from .config import Settings
from .crypto import Keyring
from .errors import IndexCorruptError, ModelError, SettingsError
from .faces import Embedder, FaceAnalyzer, create_aligner, create_detector, create_embedder
from .index import IndexTarget, LockedIndex, Resizable, Shared, VectorIndex, index_backend
from .policy import SuppressionCheck, check_gallery_model
from .store import MetadataStore

__all__ = ["DEFAULT_EMBEDDER", "Gallery", "reconcile"]

#: Meta keys: the gallery's embedder name, and the name each model id was made with
#: (needed to honour suppression entries recorded under an earlier model).
GALLERY_EMBEDDER = "embedder"
MODEL_NAME = "model_name:"
DEFAULT_EMBEDDER = "dlib-resnet-v1"


class Gallery:
    """The embedder, analyzer and vector index of one deployment's faces."""

    def __init__(self, settings: Settings, store: MetadataStore, keys: Keyring, index_url: str):
        self.settings = settings
        self.store = store
        self.keys = keys
        self.index_url = index_url
        self._backend = index_backend(index_url)
        self.embedder_name = settings.embedder or store.get_meta(GALLERY_EMBEDDER) or DEFAULT_EMBEDDER
        self.embedder: Embedder = create_embedder(self.embedder_name)
        self._analyzer: FaceAnalyzer | None = None
        self._index: VectorIndex | None = None
        self._index_signature: tuple[int, int, int] | None = None
        # Every use of the in-memory index is under one lock (FAISS must not search while it changes).
        self.index_lock = threading.RLock()

    # -- models ------------------------------------------------------------------------------

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face pipeline; its weights load on first use."""
        if self._analyzer is None:
            self._analyzer = self.analyzer_for(self.embedder)
        return self._analyzer

    def analyzer_for(self, embedder: Embedder) -> FaceAnalyzer:
        """An analyzer with the deployment's detector and settings around ``embedder``."""
        # The engine's own embedder instance, so that an ONNX model whose shape the engine
        # has already read is not loaded a second time by the analyzer.
        return FaceAnalyzer(create_detector(self.settings.detector), create_aligner(embedder.aligner), embedder,
                            detect_size=self.settings.detect_size, min_face=self.settings.min_face_size,
                            lanes=self.settings.worker_count)

    def analysis_names(self) -> tuple:
        """What worker processes build their analyzer from: the names this one was built from."""
        return (self.settings.detector, self.embedder_name, self.settings.detect_size, self.settings.min_face_size)

    @property
    def rights_threshold(self) -> float:
        """The similarity at which rights requests match: the setting, else the embedder's own."""
        if self.settings.rights_threshold is not None:
            return self.settings.rights_threshold
        return self.embedder.spec.default_rights_threshold

    def remember_model(self) -> None:
        """Record the embedder's name as the gallery's, and under its model id."""
        name = self.embedder_name
        if self.store.get_meta(GALLERY_EMBEDDER) != name:
            self.store.set_meta(GALLERY_EMBEDDER, name)
        self.store.set_meta(MODEL_NAME + self.embedder.model_id, name)

    def switch_model(self, name: str, embedder: Embedder, analyzer: FaceAnalyzer) -> None:
        """Make ``embedder`` the gallery's; the old model's index is dropped first.

        The index is a cache of the old templates: dropped before any is converted, so no
        half-converted gallery is ever searched through it.
        """
        with self.index_lock:
            self._backend.drop(self._target())
            self._index = None
            self.embedder_name, self.embedder, self._analyzer = name, embedder, analyzer
        self.remember_model()

    def suppression_checks(self) -> list[SuppressionCheck]:
        """One check per model under which active suppression entries were recorded.

        Entries made before a `reindex --model` keep their old templates (the objector's
        photo is never kept, so they cannot be re-embedded); ingest then embeds each new
        face with that old model too, so an objection outlives a change of model.
        """
        checks = []
        for model_id in self.store.registers.suppression_models():
            if model_id == self.embedder.model_id:
                checks.append(SuppressionCheck(model_id, None, self.embedder.spec.distance(self.rights_threshold)))
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

    # -- the index ---------------------------------------------------------------------------

    def _target(self) -> IndexTarget:
        """The gallery's index as its backend is asked for it: the URL, for the current embedder."""
        return IndexTarget(self.index_url, self.embedder.spec.dim, self.keys, self.embedder.model_id)

    def _open_backend(self, fresh: bool) -> VectorIndex:
        index = self._backend.open(self._target(), fresh)
        if not index.capabilities.physical_removal:
            # Erasure receipts say that a person's templates are gone: an index that only hides
            # removed vectors would make them false.
            raise SettingsError(f"The vector index at {self.index_url} cannot remove templates physically, which "
                                "erasures require; set VULTUS_INDEX__URL (--index-url) to another index.")
        return index

    def open_index(self, *, writable: bool) -> VectorIndex:
        """The index, reconciled with the store; flushed only by a writer holding the lock.

        A cheap signature of the faces table (count and highest id, ids never reused)
        tells when another process or call has changed the store since the last
        reconciliation, so a long-lived engine never searches a stale index.
        """
        with self.index_lock:
            return LockedIndex(self._open_locked(writable), self.index_lock)

    def _open_locked(self, writable: bool) -> VectorIndex:
        # Never load another model's templates into this model's index (an unfinished
        # `reindex --model`, or --embedder set to something else): refuse with advice.
        check_gallery_model(self.store.model_ids(), self.embedder.model_id)
        signature = self.store.face_signature()
        if self._index is not None and signature == self._index_signature:
            return self._index
        unreadable, reopened = False, self._index is not None
        if self._index is None:
            try:
                self._index = self._open_backend(fresh=False)
            except IndexCorruptError:
                if not writable:
                    raise
                # Rebuilt from the store below, and flushed over the unreadable copy.
                self._index, unreadable = self._open_backend(fresh=True), True
        if self._index.capabilities.shared and not writable:
            # A server's index is every process's: a reader changing it could race a writer's
            # erasure or rebuild. Its searches re-rank by the store's templates, so a face the store
            # no longer holds is never shown; one not indexed yet waits for the next writer.
            # Refreshed, it counts what the server holds now (searches size themselves by it).
            if reopened and isinstance(self._index, Shared):
                self._index.refresh()
        elif (reconcile(self._index, self.store) or unreadable) and writable:
            self._index.flush()
        self._index_signature = signature
        return self._index

    def fit_index(self, notice: Callable[[str], None] | None = None) -> str | None:
        """Refit a :class:`~vultus.index.Resizable` index to the gallery's size (writers only).

        Returns the new kind of index (FAISS: ``exact`` or ``ivf``), or None when it was kept
        (always, for an index with one structure at every size).
        """
        with self.index_lock:
            index = self._open_locked(writable=True)
            if not isinstance(index, Resizable):
                return None
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
            index.flush()
            return plan

    def _searchable_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every searchable face's id and template, from the store (the exact values)."""
        parts = list(self.store.face_vectors(self.store.searchable_face_ids().tolist()))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.embedder.spec.dim), dtype=np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def rebuild_index(self) -> int:
        """Rebuild the index from the store (writers only); the number of templates in it."""
        # A fresh index is filled from the store and replaces the stored one only when it is
        # flushed: a rebuild that fails (templates that cannot be read) must not leave the
        # deployment with no index.
        with self.index_lock:
            check_gallery_model(self.store.model_ids(), self.embedder.model_id)
            signature = self.store.face_signature()
            index = self._open_backend(fresh=True)
            reconcile(index, self.store)
            index.flush()  # even empty: nothing of the old index may outlive a rebuild
            self._index, self._index_signature = index, signature
            count = len(index)
            self.fit_index()
            return count


def reconcile(index: VectorIndex, store: MetadataStore) -> bool:
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
