"""An exact vector index in plain numpy, keeping the :class:`~vultus.index.VectorIndex` contract.

It holds its vectors in memory and, when given a path, flushes them there (atomically, and
sealed with a cipher when given one), so a test can reopen it as it would the FAISS index.
Without a path it is memory only: ``flush`` does nothing and it starts empty when opened
again (an index rebuilt from the store). Importing :mod:`vultus.testing` registers it for
``memory://`` URLs (memory only) and ``memory:///FOLDER`` ones (a file in that folder), so a
deployment can run on it (``vultus.open(path, index={"url": "memory://"})``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError, SettingsError
from ..index import Capabilities, IdFilter, IndexBackend, IndexTarget, register_index
from ..store.blobs import Cipher, write_atomic

__all__ = ["MemoryIndex"]

_CONTEXT = b"memory-index"
#: The URL scheme the fake index is registered under (as the in-memory store is, in its own registry).
SCHEME = "memory"
#: The file a ``memory:///FOLDER`` index keeps in its folder.
FILE_NAME = "memory-index.npz"


class MemoryIndex:
    """Exact Euclidean nearest-neighbour search over int64-keyed float32 vectors; true removal."""

    def __init__(self, dim: int, path: Path | None = None, cipher: Cipher | None = None, *, fresh: bool = False):
        self.dim = dim
        self.path = None if path is None else Path(path)
        self.cipher = cipher
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        if not fresh and self.path is not None and self.path.exists():
            self._load()

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

    def search(self, vectors: np.ndarray, k: int, id_filter: IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not len(self):
            # As FAISS answers through Vultus's wrapper: one padding column per query.
            return np.full((len(queries), 1), np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        k = max(1, min(k, len(self)))
        # Padded as FAISS pads when the filter lets fewer than k through.
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        let = np.ones(len(self), dtype=bool) if id_filter is None else id_filter.allows(self._ids)
        for row, query in enumerate(queries):
            found = self._distances(query)[let]
            # Ties broken by id, so results do not depend on the order faces were added in.
            order = np.lexsort((self._ids[let], found))[:k]
            distances[row, : len(order)], ids[row, : len(order)] = found[order], self._ids[let][order]
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

    def flush(self) -> None:
        if self.path is None:
            return
        out = io.BytesIO()
        np.savez(out, ids=self._ids, vectors=self._vectors)
        raw = out.getvalue()
        write_atomic(self.path, raw if self.cipher is None else self.cipher.encrypt(raw, _CONTEXT))

    def size_on_disk(self) -> int | None:
        if self.path is None:
            return None
        return self.path.stat().st_size if self.path.exists() else 0


def _file(url: str) -> Path | None:
    """The file a ``memory:///FOLDER`` URL names, or None for ``memory://`` (memory only)."""
    _, _, rest = url.partition("://")
    if not rest:
        return None
    if not rest.startswith("/"):
        raise SettingsError(f"A memory index URL is memory:// (memory only) or memory:///FOLDER, not {url!r}.")
    return Path("/" + rest.lstrip("/")) / FILE_NAME


def _drop(target: IndexTarget) -> None:
    path = _file(target.url)
    if path is not None:
        path.unlink(missing_ok=True)


def _sweep(url: str) -> None:
    path = _file(url)
    if path is not None and path.parent.is_dir():
        for left in path.parent.glob(f".tmp-*{path.suffix}"):
            left.unlink(missing_ok=True)


register_index(SCHEME, IndexBackend(
    open=lambda target, fresh: MemoryIndex(target.dim, _file(target.url), target.cipher, fresh=fresh),
    drop=_drop, sweep=_sweep))
