"""The vector-index seam: a derived, rebuildable cache of the store's face templates."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import UnknownModelError
from ..store.blobs import Cipher

__all__ = ["RERANK", "Capabilities", "VectorIndex", "LockedIndex", "register_index", "create_index", "index_names"]


#: Searches ask an approximate index for this many times the candidates they need and rank
#: those by their exact templates from the store; approximate backends tune for that.
RERANK = 2


@dataclass(frozen=True)
class Capabilities:
    """What an index can do: use cases ask this, never a backend's name or kind."""

    #: Its distances are exact (a flat index), so results need no re-ranking by the store's
    #: templates; an approximate one is asked for more and re-ranked.
    exact: bool
    #: ``remove`` deletes the vectors themselves (from memory, and from disk once saved), so
    #: an erasure is physical there too.
    physical_removal: bool
    #: It keeps a file of its own (``save`` writes it); otherwise it is rebuilt from the store.
    persistent: bool
    #: Words for `vultus stats`, e.g. ``exact`` or ``ivf (nprobe 12)``.
    description: str


@runtime_checkable
class VectorIndex(Protocol):
    """Exact or approximate nearest-neighbour search over int64-keyed float32 vectors.

    Distances are Euclidean (not squared). ``save`` must be atomic: after a crash the file
    on disk is either the previous or the new version.
    """

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids (ids must not be present yet)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Physically remove the given ids; return how many were present."""
        ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each query, the ``k`` nearest (distances, ids), nearest first; id -1 pads."""
        ...

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Every (distance, id) within Euclidean ``radius`` of one vector, nearest first; no cap."""
        ...

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        ...

    def save(self) -> None:
        """Persist atomically to the index's path."""
        ...

    def file_size(self) -> int:
        """Bytes on disk (0 when never saved)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What it can do now (an index that changes structure with its size may change them)."""
        ...

    def plan_size(self, threshold: int) -> str | None:
        """What :meth:`fit_size` would rebuild the index as (a ``kind``), or None to keep it."""
        ...

    def fit_size(self, threshold: int, exact_vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        """Adapt the index's structure to its size (``threshold`` faces); return whether it changed.

        ``exact_vectors()`` gives every (id, template) held by the store, for rebuilding.
        An index with a single structure returns False.
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

    def __getattr__(self, name: str):  # noqa: ANN204 - forwards add, remove, search, ...
        method = getattr(self._inner, name)
        if not callable(method):
            return method

        def locked(*args, **kwargs):  # noqa: ANN002,ANN003,ANN202
            with self._lock:
                return method(*args, **kwargs)

        return locked


IndexFactory = Callable[[Path, int, "Cipher | None"], VectorIndex]
_INDEXES: dict[str, IndexFactory] = {}


def register_index(name: str, factory: IndexFactory) -> None:
    """Make an index backend available under ``name``.

    ``factory(path, dim, cipher)`` opens or creates it; with a cipher, the file on disk is
    encrypted (templates are biometric data even inside an index).
    """
    _INDEXES[name] = factory


def create_index(name: str, path: Path, dim: int, cipher: "Cipher | None" = None) -> VectorIndex:
    """Open (or create empty) the index backend ``name`` stored at ``path``."""
    try:
        factory = _INDEXES[name]
    except KeyError:
        raise UnknownModelError(
            f"No vector index is named {name!r}; choose one of: {', '.join(sorted(_INDEXES))}."
        ) from None
    return factory(path, dim, cipher)


def index_names() -> list[str]:
    """Names of every registered index backend."""
    return sorted(_INDEXES)
