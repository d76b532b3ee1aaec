"""The default vector index: FAISS, exact L2 search up to a size, then IVF; removal is physical.

Small galleries use ``IndexIDMap2(IndexFlatL2)``: exact, and every stored vector is a
float32 copy. Above ``ivf_threshold`` faces the index becomes ``IVF<n>_HNSW32,SQ8``: an
inverted file whose coarse centroids are found through an HNSW graph, with each face stored
as 8-bit scalar-quantised codes (one byte per dimension plus its 8-byte id). Its ``nprobe``
(lists searched per query) is chosen at build time as the smallest that keeps recall@10
against exact search at or above ``TARGET_RECALL`` on queries drawn around stored
templates, counting the true ten among the first ``RERANK`` x 10 found, since searches
re-rank that many by their exact templates. ``remove_ids`` deletes codes from the inverted
lists, so an erased face leaves no vector behind in either form.

Registered for ``faiss:///FOLDER`` URLs: the index is the file ``faces.faiss`` in that folder
(by default the data directory's ``index``); one model's templates at a time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import IndexCorruptError, KeyFileError, SettingsError
from ..store.blobs import Cipher, write_atomic
from .base import RERANK, Capabilities, IdFilter, IndexBackend, IndexTarget, register_index

__all__ = ["FaissIndex", "FILE_NAME", "TARGET_RECALL", "RERANK", "index_file"]

#: The index file inside the URL's folder.
FILE_NAME = "faces.faiss"

_CONTEXT = b"index"
#: Recall@10 against exact search that the IVF index's nprobe must keep.
TARGET_RECALL = 0.99
#: Queries used to choose nprobe.
_TUNING_QUERIES = 500
#: Retrain the IVF index once the gallery has grown this many times past its training size.
_REGROW = 4
#: Below this many faces an IVF index has too few vectors per list to train; stay exact.
MIN_IVF = 10_000
#: The fewest inverted lists an IVF index gets, however small.
MIN_LISTS = 64


class FaissIndex:
    """``IndexIDMap2(IndexFlatL2)``: exact search, ids chosen by the store, true deletion.

    With a cipher the file is sealed with AES-GCM; the index lives decrypted in memory only.

    ``remove_ids`` on a flat index compacts the stored vectors, so a removed template is
    gone from memory and, after :meth:`flush`, from the file. With ``fresh``, the file is not
    read: the index starts empty and replaces it at the first flush.
    """

    def __init__(self, path: Path, dim: int, cipher: Cipher | None = None, *, fresh: bool = False):
        import faiss  # heavy import kept out of `import vultus`

        self._faiss = faiss
        self.path = Path(path)
        self.dim = dim
        self.cipher = cipher
        if not fresh and self.path.exists():
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
            if self._ivf() is not None:
                _set_ef(faiss, self._ivf())
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    @property
    def kind(self) -> str:
        """``exact`` (flat) or ``ivf``."""
        return "ivf" if self._ivf() is not None else "exact"

    @property
    def capabilities(self) -> Capabilities:
        """Exact while flat, approximate as IVF; removal is physical and the file is its own either way."""
        ivf = self._ivf()
        return Capabilities(exact=ivf is None, physical_removal=True, persistent=True,
                            description="exact" if ivf is None else f"ivf (nprobe {int(ivf.nprobe)})")

    @property
    def nprobe(self) -> int | None:
        """Inverted lists searched per query (IVF only)."""
        ivf = self._ivf()
        return None if ivf is None else int(ivf.nprobe)

    def _ivf(self):  # noqa: ANN202 - the faiss IndexIVF inside, or None
        try:
            return self._faiss.extract_index_ivf(self._index)
        except RuntimeError:
            return None

    def fit_size(self, threshold: int, exact_vectors: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        """Choose the index type for the current size; return whether it was rebuilt.

        Exact at or below ``threshold`` faces (0: always exact; and always below ``MIN_IVF``),
        IVF above it. An IVF index
        is retrained once the gallery has grown ``_REGROW`` times past what it was trained
        for. ``exact_vectors()`` returns every (id, template) from the store; a flat index
        is converted from its own vectors instead.
        """
        plan = self.plan_size(threshold)
        if plan is None:
            return False
        if plan == "exact":
            ids, vectors = exact_vectors()
            self._index = self._faiss.IndexIDMap2(self._faiss.IndexFlatL2(self.dim))
            self.add(ids, vectors)
            return True
        ids, vectors = self._flat_contents() if self._ivf() is None else exact_vectors()
        self._index = self._build_ivf(ids, vectors)
        return True

    def plan_size(self, threshold: int) -> str | None:
        """``exact`` to go back to exact search, ``ivf`` to build or retrain the IVF index, or None."""
        count = len(self)
        ivf = self._ivf()
        if threshold <= 0 or count <= max(threshold, MIN_IVF):
            return None if ivf is None else "exact"
        if ivf is not None and count <= _REGROW * (ivf.nlist / 4) ** 2:
            return None
        return "ivf"

    def _flat_contents(self) -> tuple[np.ndarray, np.ndarray]:
        flat = self._faiss.downcast_index(self._index.index)
        vectors = self._faiss.rev_swig_ptr(flat.get_xb(), len(self) * self.dim).reshape(len(self), self.dim).copy()
        return self.ids(), vectors

    def _build_ivf(self, ids: np.ndarray, vectors: np.ndarray):  # noqa: ANN202 - a faiss index
        faiss = self._faiss
        count = len(ids)
        # About 4 sqrt(n) lists, as FAISS's guidelines suggest for millions of vectors.
        nlist = int(min(65536, max(MIN_LISTS, 4 * math.sqrt(count))))
        index = faiss.index_factory(self.dim, f"IVF{nlist}_HNSW32,SQ8", faiss.METRIC_L2)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(count, size=min(count, max(40 * nlist, 50_000)), replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
        self._tune(index, ids, vectors)
        return index

    def _tune(self, index, ids: np.ndarray, vectors: np.ndarray) -> None:  # noqa: ANN001
        """Set the smallest nprobe whose recall@10 against exact search reaches TARGET_RECALL."""
        faiss = self._faiss
        ivf = faiss.extract_index_ivf(index)
        rng = np.random.default_rng(1)
        picks = vectors[rng.choice(len(vectors), size=min(_TUNING_QUERIES, len(vectors)), replace=False)]
        # Queries a little off the stored templates, as a new photo of a known face is.
        scale = 0.3 * float(np.sqrt(np.mean(np.sum(picks**2, axis=1))))
        noise = rng.standard_normal(picks.shape).astype(np.float32)
        noise *= scale / np.linalg.norm(noise, axis=1, keepdims=True)
        queries = np.ascontiguousarray(picks + noise, dtype=np.float32)
        exact = faiss.IndexFlatL2(self.dim)
        exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
        _, rows = exact.search(queries, 10)
        truth = np.asarray(ids)[rows]

        def good(nprobe: int) -> bool:
            # Searches take RERANK x the candidates and rank them by exact templates, so the
            # recall that counts is that of the true ten among the first RERANK x 10 found.
            ivf.nprobe = nprobe
            _set_ef(faiss, ivf)
            _, found = index.search(queries, RERANK * 10)
            return np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]) >= TARGET_RECALL

        # Double until the recall is reached (or every list is searched), then narrow down
        # to within an eighth: each list scanned costs latency, so overshooting is waste.
        low, high = 0, 1
        while not good(high):
            if high >= ivf.nlist:
                break  # even a full scan falls short: search everything
            low, high = high, min(ivf.nlist, high * 2)
        else:
            while high - low > max(1, high // 8):
                middle = (low + high) // 2
                if good(middle):
                    high = middle
                else:
                    low = middle
        ivf.nprobe = high
        _set_ef(faiss, ivf)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(self._faiss.IDSelectorBatch(ids)))

    def search(self, vectors: np.ndarray, k: int, id_filter: IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            n = len(vectors)
            return np.full((n, 1), np.inf, dtype=np.float32), np.full((n, 1), -1, dtype=np.int64)
        if id_filter is None:
            squared, ids = self._index.search(vectors, k)
        else:
            squared, ids = self._filtered_search(vectors, k, id_filter)
        distances = np.sqrt(np.maximum(squared, 0.0))
        distances[ids < 0] = np.inf  # FAISS pads with FLT_MAX
        return distances, ids

    def _filtered_search(self, vectors: np.ndarray, k: int, id_filter: IdFilter) -> tuple[np.ndarray, np.ndarray]:
        """Search only the ids ``id_filter`` lets through, with a FAISS ID selector.

        The flat index is an IndexIDMap2, which maps the selector onto its own positions. An
        IVF index takes the selector in IVF parameters, whose nprobe must be given (it would
        be 1); it searches ``filtered_nprobe`` lists, more than unfiltered ones, since the ids
        let through are sparser in each list.
        """
        faiss = self._faiss
        # Both selectors stay referenced here until the search is done: the parameters and the Not
        # selector hold bare pointers to them.
        batch = faiss.IDSelectorBatch(id_filter.ids)
        selector = faiss.IDSelectorNot(batch) if id_filter.exclude else batch
        ivf = self._ivf()
        if ivf is None:
            params = faiss.SearchParameters(sel=selector)
        else:
            fraction = id_filter.kept(len(self)) / max(1, len(self))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=filtered_nprobe(int(ivf.nprobe), int(ivf.nlist),
                                                                                     fraction))
        return self._index.search(vectors, k, params=params)

    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        # FAISS's L2 radius is squared; results come unordered. Rights requests must find
        # every face of the person: an IVF index searches all its lists for them.
        ivf = self._ivf()
        saved = None if ivf is None else ivf.nprobe
        if ivf is not None:
            ivf.nprobe = ivf.nlist
        try:
            _, squared, ids = self._index.range_search(query, float(radius) ** 2)
        finally:
            if ivf is not None:
                ivf.nprobe = saved
        order = np.argsort(squared, kind="stable")
        return np.sqrt(np.maximum(squared[order], 0.0)), ids[order].astype(np.int64)

    def ids(self) -> np.ndarray:
        ivf = self._ivf()
        if ivf is None:
            return self._faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = ivf.invlists
        parts = [
            self._faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
            for n in range(ivf.nlist)
            if lists.list_size(n)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def flush(self) -> None:
        """Write the file atomically: the old one or the new one is there after a crash, never a part."""
        raw = self._faiss.serialize_index(self._index).tobytes()
        # Owner-only when made here, like the data directory (the file itself is 0600).
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, raw if self.cipher is None else self.cipher.encrypt(raw, _CONTEXT))

    def size_on_disk(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


def filtered_nprobe(nprobe: int, nlist: int, fraction: float) -> int:
    """Lists an IVF search scans when only ``fraction`` of the ids may be returned.

    The nearest ids that pass a filter are farther from the query than the nearest of all, so
    they lie in more lists: scanning nprobe / fraction lists (at most all) sees about as many
    of them as an unfiltered search sees of all ids. bench/purposes.py measures recall@10
    with and without this.
    """
    if fraction <= 0:
        return nprobe
    return int(min(nlist, max(nprobe, math.ceil(nprobe / fraction))))


def _set_ef(faiss, ivf) -> None:  # noqa: ANN001
    """Search settings that are not saved with the index: the HNSW coarse quantizer looks at
    exactly enough centroids for ``nprobe`` lists (measured: more only costs time), and one
    query's lists are scanned on all cores (halves single-query latency on two)."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    if hasattr(quantizer, "hnsw"):
        quantizer.hnsw.efSearch = max(16, int(ivf.nprobe))
    ivf.parallel_mode = 1


def index_file(url: str) -> Path:
    """The index file a ``faiss:///FOLDER`` URL names: ``FOLDER/faces.faiss``."""
    _, separator, rest = url.partition("://")
    if not separator or not rest.startswith("/"):
        raise SettingsError(
            f"A FAISS index URL is faiss:///FOLDER, an absolute folder for the file {FILE_NAME}, not {url!r}; "
            "or unset VULTUS_INDEX__URL (--index-url) for DATA/index."
        )
    folder = Path("/" + rest.lstrip("/"))
    # The folder itself may be made at the first flush, as DATA/index is; a missing parent is a mistyped path.
    if not folder.parent.is_dir():
        raise SettingsError(f"The index URL {url!r} names a folder in {folder.parent}, which does not exist; "
                            "create it or fix VULTUS_INDEX__URL (--index-url).")
    return folder / FILE_NAME


def _open(target: IndexTarget, fresh: bool) -> FaissIndex:
    return FaissIndex(index_file(target.url), target.dim, target.cipher, fresh=fresh)


def _drop(target: IndexTarget) -> None:
    index_file(target.url).unlink(missing_ok=True)


def _sweep(url: str) -> None:
    folder = index_file(url).parent
    if folder.is_dir():
        # Temporary files of a write cut short, and the copy that earlier releases set aside
        # while a reindex ran: both may hold templates.
        for left in [*folder.glob(f".tmp-*{Path(FILE_NAME).suffix}"), *folder.glob(f"{FILE_NAME}.previous")]:
            left.unlink(missing_ok=True)


register_index("faiss", IndexBackend(open=_open, drop=_drop, sweep=_sweep))
