"""The vector-index seam: a derived, rebuildable cache of the store's face templates.

A backend registers itself under a URL scheme (``faiss``, ...) with :func:`register_index`;
the gallery opens the one the ``index.url`` setting names, for its embedder's dimension and
model id. Use cases see only :class:`VectorIndex` and ask its :class:`Capabilities`, never a
backend's name. An index whose structure follows the gallery's size (FAISS: exact, then IVF)
also keeps :class:`Resizable`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import SettingsError
from ..store.blobs import Cipher

__all__ = ["RERANK", "Capabilities", "IdFilter", "VectorIndex", "Resizable", "LockedIndex", "IndexTarget", "IndexBackend",
           "register_index", "index_backend", "index_schemes", "open_index", "default_index_url"]


#: Searches ask an approximate index for this many times the candidates they need and rank
#: those by their exact templates from the store; approximate backends tune for that.
RERANK = 2

#: The folder of the embedded default, inside the data directory.
DEFAULT_INDEX_FOLDER = "index"


@dataclass(frozen=True)
class Capabilities:
    """What an index can do: use cases ask this, never a backend's name or kind."""

    #: Its distances are exact (a flat index), so results need no re-ranking by the store's
    #: templates; an approximate one is asked for more and re-ranked.
    exact: bool
    #: ``remove`` then ``flush`` leaves no copy of the removed vectors (in memory, in its
    #: files or on its server), so an erasure is physical there too.
    physical_removal: bool
    #: What ``flush`` made durable is there when it is opened again; otherwise it starts empty
    #: and is rebuilt from the store.
    persistent: bool
    #: Words for `vultus stats`, e.g. ``exact`` or ``ivf (nprobe 12)``.
    description: str
    #: One index that every process and host uses (a server's), not a copy of each process's own:
    #: only a writer, under the writer lock, brings it in line with the store. Such an index
    #: implements :class:`Shared` too: a reader calls its ``refresh`` when the store has changed.
    shared: bool = False


@dataclass(frozen=True)
class IdFilter:
    """Which ids a search may return: only ``ids``, or with ``exclude`` every id but them.

    A search for a purpose covers only the sources that allow it (vultus.search): their faces,
    or every face but those of the sources left out, whichever list is shorter.
    """

    ids: np.ndarray
    exclude: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", np.unique(np.asarray(self.ids, dtype=np.int64).reshape(-1)))

    def allows(self, ids: np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``ids`` the filter lets through."""
        inside = np.isin(np.asarray(ids, dtype=np.int64), self.ids)
        return ~inside if self.exclude else inside

    def kept(self, total: int) -> int:
        """About how many of an index's ``total`` ids it lets through (exactly, when its ids are all in the index)."""
        return max(0, total - len(self.ids)) if self.exclude else min(total, len(self.ids))


@runtime_checkable
class VectorIndex(Protocol):
    """Exact or approximate nearest-neighbour search over int64-keyed float32 vectors.

    Distances are Euclidean (not squared). Changes are made durable by :meth:`flush`, which
    must be atomic: after a crash the stored index is either the previous or the new one.
    """

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids (ids must not be present yet)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids (physically once flushed); return how many were present."""
        ...

    def search(self, vectors: np.ndarray, k: int, id_filter: IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For each query, the ``k`` nearest (distances, ids), nearest first; id -1 pads, at distance inf.

        With ``id_filter``, only ids it lets through are searched: no other id is returned,
        and the ``k`` are the nearest of those (an approximate index: as nearly as unfiltered).
        """
        ...

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Every (distance, id) within Euclidean ``radius`` of one vector, nearest first; no cap."""
        ...

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        ...

    def flush(self) -> None:
        """Make what was added and removed durable, removals physically gone; nothing to do when not persistent.

        FAISS writes its file atomically (sealed with the cipher's current key); a server
        index flushes and compacts.
        """
        ...

    def size_on_disk(self) -> int | None:
        """Bytes its own files take (0 before the first flush); None when it keeps no local files."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What it can do now (an index that changes structure with its size may change them)."""
        ...


@runtime_checkable
class Shared(Protocol):
    """A shared index (``capabilities.shared``) that other processes write to."""

    def refresh(self) -> None:
        """Catch up with what other processes wrote: its size (searches size themselves by it),
        and the generation its name points at now."""
        ...


@runtime_checkable
class Resizable(Protocol):
    """An index whose structure follows the gallery's size; the gallery refits it after ingest and reindex."""

    def plan_size(self, threshold: int) -> str | None:
        """What :meth:`fit_size` would rebuild the index as (``exact`` or an approximate kind), or None to keep it."""
        ...

    def fit_size(self, threshold: int, exact_vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        """Adapt the index's structure to its size (``threshold`` faces); return whether it changed.

        ``exact_vectors()`` gives every (id, template) held by the store, for rebuilding.
        """
        ...


class LockedIndex:
    """Any index, with every operation taken under one lock, for use from many threads."""

    def __init__(self, inner: VectorIndex, lock: "threading.RLock"):
        self._inner = inner
        self._lock = lock
        self.dim = inner.dim

    def __len__(self) -> int:
        with self._lock:
            return len(self._inner)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        with self._lock:
            return self._inner.remove(ids)

    def search(self, vectors: np.ndarray, k: int, id_filter: IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if id_filter is None:  # as before filters existed: wrapped indexes need not know them
                return self._inner.search(vectors, k)
            return self._inner.search(vectors, k, id_filter)

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self._inner.range_search(vector, radius)

    def ids(self) -> np.ndarray:
        with self._lock:
            return self._inner.ids()

    def flush(self) -> None:
        with self._lock:
            self._inner.flush()

    def size_on_disk(self) -> int | None:
        with self._lock:
            return self._inner.size_on_disk()

    @property
    def capabilities(self) -> Capabilities:
        with self._lock:
            return self._inner.capabilities


@dataclass(frozen=True)
class IndexTarget:
    """What a backend is asked to open: where, for vectors of which size and model, sealed how."""

    #: The index's URL; its scheme named the backend (``faiss:///srv/vultus/index``).
    url: str
    #: The embedder's template size.
    dim: int
    #: Seals what the backend writes where it can (templates are biometric data even inside
    #: an index); None writes plain files.
    cipher: Cipher | None = None
    #: The embedder's model id: a server index keeps one collection per model, so a change of
    #: model never mixes templates. A file index holds one model at a time and may ignore it.
    model_id: str | None = None


@dataclass(frozen=True)
class IndexBackend:
    """An index backend: how to open one, drop one, and clean up after a writer killed mid-flush."""

    #: ``open(target, fresh)``: the index at ``target`` (created empty when nothing is stored
    #: there). With ``fresh``, an empty one whatever is stored, which replaces what is stored
    #: only at its first ``flush`` (a rebuild that fails leaves the old index in place).
    open: Callable[[IndexTarget, bool], VectorIndex]
    #: ``drop(target)``: delete what is stored for ``target`` durably (a change of model drops
    #: the old model's); nothing to do when nothing is there.
    drop: Callable[[IndexTarget], None]
    #: ``sweep(url)``: remove what a writer killed mid-flush left behind (temporary files).
    sweep: Callable[[str], None]
    #: ``place(url)``: what the URL points at, equal for two URLs of the same index however they
    #: are written (a server's options and credentials left out); None: its normalised text.
    place: Callable[[str], str] | None = None


_BACKENDS: dict[str, IndexBackend] = {}


def register_index(scheme: str, backend: IndexBackend) -> None:
    """Make an index backend available for URLs whose scheme is ``scheme`` (``faiss``, ...)."""
    _BACKENDS[scheme] = backend


def index_schemes() -> list[str]:
    """The URL schemes of every registered index backend."""
    return sorted(_BACKENDS)


def default_index_url(data_dir: Path) -> str:
    """The embedded default: FAISS files in ``DATA/index``."""
    return f"faiss://{Path(data_dir).absolute() / DEFAULT_INDEX_FOLDER}"


def index_backend(url: str) -> IndexBackend:
    """The backend for ``url``'s scheme; a clear error when none is registered."""
    scheme, separator, _ = url.partition("://")
    backend = _BACKENDS.get(scheme.lower()) if separator else None
    if backend is None:
        known = ", ".join(f"{s}://" for s in index_schemes())
        raise SettingsError(
            f"No vector index handles {url!r}; set VULTUS_INDEX__URL (or --index-url) to a URL "
            f"starting with one of: {known}, or unset it for FAISS files in the data directory (DATA/index)."
        )
    return backend


def open_index(target: IndexTarget, *, fresh: bool = False) -> VectorIndex:
    """Open the index at ``target.url`` with the backend its scheme names (see :class:`IndexBackend`)."""
    return index_backend(target.url).open(target, fresh)
