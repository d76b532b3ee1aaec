"""The default vector index: FAISS exact L2 search with an id map and physical removal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError, KeyFileError
from ..store.blobs import Cipher, write_atomic
from .base import register_index

__all__ = ["FaissIndex"]

_CONTEXT = b"index"


class FaissIndex:
    """``IndexIDMap2(IndexFlatL2)``: exact search, ids chosen by the store, true deletion.

    With a cipher the file is sealed with AES-GCM; the index lives decrypted in memory only.

    ``remove_ids`` on a flat index compacts the stored vectors, so a removed template is
    gone from memory and, after :meth:`save`, from the file.
    """

    def __init__(self, path: Path, dim: int, cipher: Cipher | None = None):
        import faiss  # heavy import kept out of `import vultus`

        self._faiss = faiss
        self.path = Path(path)
        self.dim = dim
        self.cipher = cipher
        if self.path.exists():
            try:
                raw = self.path.read_bytes()
                if cipher is not None:
                    raw = cipher.decrypt(raw, _CONTEXT)
                index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
            except KeyFileError:
                raise
            except Exception as exc:  # faiss raises RuntimeError with C++ text
                raise IndexCorruptError(
                    f"The vector index {self.path} cannot be read ({exc}). Run `vultus reindex` "
                    "to rebuild it from the store; no face data is lost."
                ) from exc
            if index.d != dim:
                raise IndexCorruptError(
                    f"The vector index {self.path} holds {index.d}-d vectors, the embedder makes "
                    f"{dim}-d ones. Run `vultus reindex` to rebuild it from the store."
                )
            self._index = index
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(self._faiss.IDSelectorBatch(ids)))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            n = len(vectors)
            return np.full((n, 1), np.inf, dtype=np.float32), np.full((n, 1), -1, dtype=np.int64)
        squared, ids = self._index.search(vectors, k)
        return np.sqrt(np.maximum(squared, 0.0)), ids

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        # FAISS's L2 radius is squared; results come unordered.
        _, squared, ids = self._index.range_search(query, float(radius) ** 2)
        order = np.argsort(squared, kind="stable")
        return np.sqrt(np.maximum(squared[order], 0.0)), ids[order].astype(np.int64)

    def ids(self) -> np.ndarray:
        return self._faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def save(self) -> None:
        raw = self._faiss.serialize_index(self._index).tobytes()
        write_atomic(self.path, raw if self.cipher is None else self.cipher.encrypt(raw, _CONTEXT))

    def file_size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


register_index("faiss", FaissIndex)
