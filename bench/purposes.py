"""Searches kept to the sources that allow a category: recall and latency of the filtered FAISS search.

Usage: python bench/purposes.py [--faces 30000] [--queries 300]

Builds FAISS's IVF index (as the gallery does past VULTUS_IVF_THRESHOLD) over synthetic
clustered 128-d templates, then searches with an id filter that lets through a random share
of the faces (the faces of the sources that allow the category: a source's faces are spread
over the whole space), with the tuned nprobe as it is and scaled by ``filtered_nprobe``.
Recall@10 counts the true ten nearest faces let through among the first RERANK x 10 found,
as searches rerank that many; the exact flat index is the reference for latency. Prints a
table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vultus.index import RERANK, IdFilter
from vultus.index.faiss_index import MIN_IVF, FaissIndex, filtered_nprobe


def clustered(count: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    """Templates in tight groups of about four, as photos of the same people are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count // 4, dim)).astype(np.float32) * 0.12
    return centres[rng.integers(0, len(centres), count)] + rng.standard_normal((count, dim)).astype(np.float32) * 0.04


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    count = max(args.faces, MIN_IVF + 1)
    vectors = clustered(count)
    ids = np.arange(1, count + 1, dtype=np.int64) * 3
    rng = np.random.default_rng(9)
    picks = rng.choice(count, args.queries, replace=False)
    queries = vectors[picks] + rng.standard_normal((args.queries, 128)).astype(np.float32) * 0.04
    with tempfile.TemporaryDirectory() as folder:
        exact = FaissIndex(Path(folder) / "exact.faiss", 128)
        exact.add(ids, vectors)
        ivf = FaissIndex(Path(folder) / "ivf.faiss", 128)
        ivf.add(ids, vectors)
        started = time.perf_counter()
        ivf.fit_size(MIN_IVF, lambda: (ids, vectors))
        built = time.perf_counter() - started
        inner = ivf._ivf()
        tuned, nlist = int(inner.nprobe), int(inner.nlist)
        print(f"{count} faces, IVF with {nlist} lists, tuned nprobe {tuned} (built in {built:.1f} s); "
              f"{args.queries} queries, recall@10 within the first {RERANK * 10}\n")
        rows = []
        for share in (1.0, 0.5, 0.2, 0.05, 0.01):
            kept = ids[rng.random(count) < share] if share < 1 else ids
            id_filter = None if share == 1 else IdFilter(kept)
            let = np.isin(ids, kept)
            distances = ((queries[:, None, :] - vectors[let][None]) ** 2).sum(axis=2)
            truth = ids[let][np.argsort(distances, axis=1)[:, :10]]
            for label, scaled in (("as tuned", False), ("scaled", True)):
                if share == 1 and scaled:
                    continue
                nprobe = filtered_nprobe(tuned, nlist, share) if scaled else tuned
                searcher = _with_nprobe(ivf, nprobe)
                started = time.perf_counter()
                found = [searcher(q[None], RERANK * 10, id_filter)[1][0] for q in queries]
                ms = (time.perf_counter() - started) * 1000 / len(queries)
                recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
                rows.append([f"{share:.0%}", label, str(nprobe), f"{recall:.4f}", f"{ms:.2f}"])
            started = time.perf_counter()
            for q in queries:
                exact.search(q[None], RERANK * 10, id_filter)
            rows.append([f"{share:.0%}", "exact (flat)", "-", "1.0000",
                         f"{(time.perf_counter() - started) * 1000 / len(queries):.2f}"])
    headers = ["faces let through", "nprobe", "lists", "recall@10", "ms/query"]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    return 0


def _with_nprobe(index: FaissIndex, nprobe: int):  # noqa: ANN202 - a search function
    """``index.search`` with the filtered search's nprobe fixed at ``nprobe`` (to compare with and without scaling)."""
    import vultus.index.faiss_index as module

    def search(vectors: np.ndarray, k: int, id_filter: IdFilter | None):
        if id_filter is None:
            return index.search(vectors, k)
        original = module.filtered_nprobe
        module.filtered_nprobe = lambda *_: nprobe
        try:
            return index.search(vectors, k, id_filter)
        finally:
            module.filtered_nprobe = original

    return search


if __name__ == "__main__":
    raise SystemExit(main())
