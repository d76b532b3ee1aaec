"""An exact vector index in plain numpy, keeping the :class:`~vultus.index.VectorIndex` contract.

It holds its vectors in memory and, when given a path, saves them there (atomically, and
sealed with a cipher when given one), so a test can reopen it as it would the FAISS index.
Without a path it is memory only and ``save`` does nothing. It is not registered as a
backend: a deployment always uses a registered one; tests pass this one in where an index
is taken, or open it with :meth:`MemoryIndex.open` as a backend factory would.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError
from ..index import Capabilities
from ..store.blobs import Cipher, write_atomic

__all__ = ["MemoryIndex"]

_CONTEXT = b"memory-index"


class MemoryIndex:
    """Exact Euclidean nearest-neighbour search over int64-keyed float32 vectors; true removal."""

    def __init__(self, dim: int, path: Path | None = None, cipher: Cipher | None = None):
        self.dim = dim
        self.path = None if path is None else Path(path)
        self.cipher = cipher
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        if self.path is not None and self.path.exists():
            self._load()

    @classmethod
    def open(cls, path: Path, dim: int, cipher: Cipher | None = None) -> MemoryIndex:
        """Open (or create empty) the index saved at ``path``: a backend factory's signature."""
        return cls(dim, path, cipher)

    def _load(self) -> None:
        assert self.path is not None
        try:
            raw = self.path.read_bytes()
            if self.cipher is not None:
                raw = self.cipher.decrypt(raw, _CONTEXT)
            with np.load(io.BytesIO(raw), allow_pickle=False) as saved:
                ids, vectors = saved["ids"].astype(np.int64), saved["vectors"].astype(np.float32)
        except Exception as exc:  # numpy and the cipher raise several kinds for a bad file
            raise IndexCorruptError(
                f"The vector index {self.path} cannot be read ({exc}). Run `vultus reindex` "
                "to rebuild it from the store; no face data is lost."
            ) from exc
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise IndexCorruptError(
                f"The vector index {self.path} holds vectors of shape {vectors.shape}, not {self.dim}-d ones. "
                "Run `vultus reindex` to rebuild it from the store."
            )
        self._ids, self._vectors = ids, vectors

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def kind(self) -> str:
        return "exact"

    @property
    def capabilities(self) -> Capabilities:
        """Exact, physical removal; persistent only when given a path."""
        return Capabilities(exact=True, physical_removal=True, persistent=self.path is not None, description="exact")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if np.isin(ids, self._ids).any() or len(np.unique(ids)) != len(ids):
            raise ValueError("Ids added to an index must not be in it already.")
        self._ids = np.concatenate([self._ids, ids])
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove(self, ids: np.ndarray) -> int:
        present = np.isin(self._ids, np.asarray(ids, dtype=np.int64).reshape(-1))
        # New arrays without the removed rows: nothing of a removed vector stays referenced.
        self._ids, self._vectors = self._ids[~present].copy(), self._vectors[~present].copy()
        return int(present.sum())

    def _distances(self, query: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self._vectors - query.reshape(1, self.dim), axis=1)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not len(self):
            # As FAISS answers through Vultus's wrapper: one padding column per query.
            return np.full((len(queries), 1), np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        k = max(1, min(k, len(self)))
        distances = np.empty((len(queries), k), dtype=np.float32)
        ids = np.empty((len(queries), k), dtype=np.int64)
        for row, query in enumerate(queries):
            found = self._distances(query)
            # Ties broken by id, so results do not depend on the order faces were added in.
            order = np.lexsort((self._ids, found))[:k]
            distances[row], ids[row] = found[order], self._ids[order]
        return distances, ids

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        if not len(self):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        found = self._distances(np.asarray(vector, dtype=np.float32))
        near = np.flatnonzero(found <= radius)
        order = near[np.lexsort((self._ids[near], found[near]))]
        return found[order].astype(np.float32), self._ids[order]

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def save(self) -> None:
        if self.path is None:
            return
        out = io.BytesIO()
        np.savez(out, ids=self._ids, vectors=self._vectors)
        raw = out.getvalue()
        write_atomic(self.path, raw if self.cipher is None else self.cipher.encrypt(raw, _CONTEXT))

    def file_size(self) -> int:
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0

    def plan_size(self, threshold: int) -> str | None:
        return None  # one structure at every size

    def fit_size(self, threshold: int, exact_vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        return False
