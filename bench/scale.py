"""Beyond one machine: Milvus at a million faces, and ingest on Ray against the process pool.

Usage: python bench/scale.py [--sections fixed milvus ray] [--faces 1000000] [--queries 1000]
                             [--ef 64 80 96] [--index-url milvus://HOST:PORT]

- ``milvus``: a synthetic gallery of ``--faces`` 128-d templates shaped like the shared faces'
  (as bench/speed.py (c) makes them: people with the real between- and within-person spread)
  is added through Vultus's Milvus index (a fresh generation: insert, flush and alias swap;
  then the HNSW index build is waited for). Then ``--queries`` single-face searches, each as
  vultus.search asks an approximate index: RERANK x 10 candidates, re-ranked by their exact
  templates (here from memory); p50 / p99 latency in ms and recall@10 against exact search
  (FAISS flat), for each ``--ef``. Needs a Milvus server (``eval "$(scripts/services.sh start
  milvus)"``; the URL defaults to VULTUS_TEST_INDEX_URL); its collections are dropped at the end.
- ``fixed``: what any search costs whatever the gallery's size: a 2,000-face collection, then
  p50 / p99 of a bare request (``has_collection``) and of a Vultus search (20 candidates, the default ef).
  Through scripts/services.sh's loopback relay, that includes the relay's hop.
- ``ray``: the shared faces ingested with the process pool and with the Ray executor (a local
  Ray started by the ingest, as without --ray-address), side by side: photos per second.

The store-side cost of an ingest on PostgreSQL against SQLite is bench/store_cost.py's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _real_templates() -> tuple[np.ndarray, list[str]]:
    from speed import real_chips  # bench/speed.py: one face of each shared photo, aligned

    from vultus.faces import FaceAnalyzer

    chips, labels = real_chips()
    embedder = FaceAnalyzer.from_names("hog", "dlib-resnet-v1").embedder
    return np.asarray(embedder.embed(list(chips)), dtype=np.float32), labels


def _wait_for_loaded_index(utility, name: str, using: str, faces: int) -> None:  # noqa: ANN001
    """Until the query node serves every segment from its HNSW index: before that hand-off, sealed
    segments are searched through Milvus's interim IVF index (slower, and blind to ef)."""
    while True:
        segments = utility.get_query_segment_info(name, using=using)
        if sum(s.num_rows for s in segments) >= faces and all(s.index_name for s in segments):
            return
        time.sleep(1)


def _percentiles(call, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    """p50 and p99 in ms of ``repeats`` calls, after 20 unmeasured ones (connections, caches)."""
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def fixed_cost(url: str, repeats: int) -> str:
    from pymilvus import utility

    from vultus.index import RERANK, IndexTarget, open_index
    from vultus.index.milvus_index import DEFAULT_EF
    from vultus.testing.milvus import drop_prefix

    # 2,000: Milvus indexes no segment under 1,024 rows (queryNode.segment.minSegmentNumRowsToEnableIndex)
    vectors = np.random.default_rng(0).normal(size=(2000, 128)).astype(np.float32)
    base = f"{url.rstrip('/')}/fixed{os.getpid()}"
    try:
        index = open_index(IndexTarget(base, 128, None, "bench-model"), fresh=True)
        index.add(np.arange(1, 2001, dtype=np.int64), vectors)
        index.flush()
        utility.wait_for_index_building_complete(index._base, using=index._using)
        _wait_for_loaded_index(utility, index._base, index._using, 2000)
        rows = []
        for label, call in (("a bare request (has_collection)", lambda: utility.has_collection(index._base,
                                                                                                using=index._using)),
                            (f"a search ({RERANK * 10} candidates, ef {DEFAULT_EF})", lambda: index.search(vectors[:1], RERANK * 10))):
            p50, p99 = _percentiles(call, repeats)
            rows.append((label, f"{p50:.2f}", f"{p99:.2f}"))
    finally:
        drop_prefix(base)
    return _table(rows, ("Milvus, 2,000 faces: fixed cost of", "p50 ms", "p99 ms"))


def milvus(url: str, faces: int, queries: int, efs: list[int]) -> str:
    import faiss
    from pymilvus import utility
    from speed import synthetic

    from vultus.index import RERANK, IndexTarget, open_index
    from vultus.testing.milvus import drop_prefix

    templates, labels = _real_templates()
    gallery, sample = synthetic(templates, labels, faces)
    ids = np.arange(1, faces + 1, dtype=np.int64)
    probes = sample(queries)
    exact = faiss.IndexFlatL2(gallery.shape[1])
    exact.add(gallery)
    _, rows = exact.search(probes, 10)
    truth = ids[rows]
    base = f"{url.rstrip('/')}/bench{os.getpid()}"
    target = IndexTarget(base, gallery.shape[1], None, "bench-model")
    figures = []
    try:
        index = open_index(target, fresh=True)
        started = time.perf_counter()
        index.add(ids, gallery)
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        index.flush()  # seal and swap the alias to the new generation
        utility.wait_for_index_building_complete(index._base, using=index._using)
        _wait_for_loaded_index(utility, index._base, index._using, faces)
        built = time.perf_counter() - started
        figures.append(("insert", f"{faces / inserted:,.0f} faces/s", f"{inserted:.1f} s for {faces:,}"))
        segments = len(utility.get_query_segment_info(index._base, using=index._using))
        figures.append(("flush, HNSW build (M 16, efConstruction 200), loaded", f"{built:.1f} s",
                        f"{segments} segments"))
        for ef in efs:
            searched = open_index(IndexTarget(f"{base}?ef={ef}", gallery.shape[1], None, "bench-model"))
            for q in probes[:20]:  # warm-up: segments loaded, connections open
                searched.search(q[None], RERANK * 10)
            times, found = [], []
            for q in probes:
                started = time.perf_counter()
                _, hit = searched.search(q[None], RERANK * 10)
                picked = hit[0][hit[0] >= 0] - 1  # ids are row + 1
                order = np.argsort(np.linalg.norm(gallery[picked] - q, axis=1))[:10]
                times.append((time.perf_counter() - started) * 1000)
                found.append(picked[order] + 1)
            recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
            figures.append((f"search ef {ef}: p50 / p99 ms, recall@10",
                            f"{np.percentile(times, 50):.2f} / {np.percentile(times, 99):.2f}", f"{recall:.4f}"))
    finally:
        drop_prefix(base)
    return _table(figures, (f"Milvus standalone, {faces:,} faces, {queries} queries", "figure", "detail"))


def ray_against_pool(data_root: Path) -> str:
    import vultus
    from vultus.evaluation import identity_photos

    folders = [data_root / "faces" / name for name in identity_photos(data_root / "faces")]
    rows = []
    for executor in ("pool", "ray"):
        with tempfile.TemporaryDirectory(prefix=f"vultus-{executor}-") as work:
            with vultus.open(Path(work) / "data", actor="bench", ingest_executor=executor) as engine:
                engine.add_source("bench", basis="legitimate-interests", purpose="bench", retention="1d")
                started = time.perf_counter()
                summary = engine.ingest(folders, source="bench", workers=2)
                seconds = time.perf_counter() - started
        rows.append((executor, f"{summary.images}", f"{summary.faces}", f"{seconds:.1f}",
                     f"{summary.images / seconds:.2f}"))
    return _table(rows, ("executor (2 workers)", "photos", "faces", "seconds", "photos/s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["fixed", "milvus", "ray"], choices=["fixed", "milvus", "ray"])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 80, 96])
    parser.add_argument("--index-url", default=os.environ.get("VULTUS_TEST_INDEX_URL"),
                        help="the Milvus server (default: VULTUS_TEST_INDEX_URL)")
    args = parser.parse_args()
    data_root = Path(os.environ.get("VULTUS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if {"fixed", "milvus"} & set(args.sections) and not args.index_url:
        parser.error("no Milvus: start one with `eval \"$(scripts/services.sh start milvus)\"` or pass --index-url")
    if "fixed" in args.sections:
        print(fixed_cost(args.index_url, args.queries), "\n")
    # Ray before the million faces: after that build, Milvus compacts on the same cores for
    # minutes, and a local Ray then timed out starting its node.
    if "ray" in args.sections:
        print(ray_against_pool(data_root), "\n")
    if "milvus" in args.sections:
        print(milvus(args.index_url, args.faces, args.queries, args.ef))


if __name__ == "__main__":
    main()
