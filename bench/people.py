"""People: grouping a collection's faces into people, measured on the shared faces and at scale.

    .venv/bin/python bench/people.py                   # every section (about 4 minutes on 2 busy cores)
    .venv/bin/python bench/people.py clusters          # some: clusters, speed, probes, store
    .venv/bin/python bench/people.py speed --sizes 1000,10000

clusters  Every identity photo of DATA_ROOT/faces ingested with the default analyzer (as
          `vultus ingest` stores them); all its faces are clustered, and the faces alone in
          their photo are scored against their folders (a photo with several faces does not say
          which one its folder names). Per method and cut: pairwise precision and recall, false
          pairs, people found, and faces left unassigned. Methods: single link, dlib's Chinese
          whispers, complete link (dlib's bottom_up_clustering), average link on distances,
          and Vultus's average link on squared distances (vultus.faces.clustering), also with a
          margin rule that unassigns a face whose second-nearest group is almost as near.
          Then `assign`, each scored face left out in turn: the others clustered, the face
          placed by each rule.
speed     Synthetic faces shaped like the real ones (bench/speed.py (c)'s model: identity centres
          and per-photo spread fitted to the shared templates, five faces a person): clustering
          time at each size on one core, of which the neighbour search, with pairwise precision
          and recall on them; then `assign` latency against the people found at the largest size.

probes    Recall@10 with an identity's first 1, 2 and 3 photos as probes of one person, under
          each fusion (bench/people_probes.py, which runs on its own too, with its options).
store     What keeping groups in the store costs around the method: a full run, a re-run,
          placing at ingest, a merge, an erasure's settling (bench/people_store.py).

Everything in clusters and speed runs on one thread (OMP_NUM_THREADS=1 unless set), as "one core" in the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and FAISS load their thread pools

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import vultus  # noqa: E402
from vultus.evaluation import IdentityFaces, identity_faces, identity_photos  # noqa: E402
from vultus.faces import clustering  # noqa: E402
from vultus.metrics import pairwise_scores  # noqa: E402


def table(header: tuple, rows: list) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print()


def shared_faces(data_root: Path) -> tuple[IdentityFaces, float]:
    """The shared identity photos ingested into a temporary deployment, as stored, and the
    embedder's match distance."""
    faces_root = data_root / "faces"
    with tempfile.TemporaryDirectory(prefix="vultus-bench-") as tmp:
        with vultus.open(Path(tmp) / "data") as engine:
            engine.add_source("identities", basis="legitimate-interests", purpose="people benchmark", retention="30d")
            engine.ingest([faces_root / name for name in identity_photos(faces_root)], source="identities", workers=2)
            return identity_faces(engine, faces_root, source="identities"), engine.analyzer.embedder.spec.match_distance


# -- the methods compared --------------------------------------------------------------------------


def _distances(vectors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vectors[:, None, :].astype(np.float64) - vectors[None, :, :], axis=2)


def _groups_of(raw: np.ndarray, min_size: int = 2) -> np.ndarray:
    """Raw group numbers to labels, -1 for a group smaller than ``min_size`` (or numbered -1)."""
    labels = np.full(len(raw), -1, dtype=np.int64)
    next_label = 0
    for value in np.unique(raw[raw >= 0]):
        members = raw == value
        if members.sum() >= min_size:
            labels[members] = next_label
            next_label += 1
    return labels


def single_link(vectors: np.ndarray, cut: float) -> np.ndarray:
    near = _distances(vectors) < cut
    raw = np.arange(len(vectors))
    changed = True
    while changed:  # each face takes the smallest group number among its links, until stable
        smallest = np.where(near, raw[None, :], len(raw)).min(axis=1)
        new = np.minimum(raw, smallest)
        new = new[new]
        changed = bool((new != raw).any())
        raw = new
    return _groups_of(raw)


def average_link(vectors: np.ndarray, cut: float) -> np.ndarray:
    """Textbook average linkage on plain distances (dense; the shared faces only)."""
    n = len(vectors)
    between = _distances(vectors)
    np.fill_diagonal(between, np.inf)
    size = np.ones(n)
    raw = np.arange(n)
    alive = np.ones(n, dtype=bool)
    while True:
        masked = np.where(alive[:, None] & alive[None, :], between, np.inf)
        a, b = np.unravel_index(np.argmin(masked), masked.shape)
        if masked[a, b] >= cut:
            break
        merged = (between[a] * size[a] + between[b] * size[b]) / (size[a] + size[b])
        between[a, :], between[:, a] = merged, merged
        between[a, a] = np.inf
        size[a] += size[b]
        alive[b] = False
        raw[raw == b] = a
    return _groups_of(raw)


def _dlib_vectors(vectors: np.ndarray) -> list:
    import dlib

    return [dlib.vector(row.astype(np.float64).tolist()) for row in vectors]


def chinese_whispers(vectors: np.ndarray, cut: float) -> np.ndarray:
    import dlib

    return _groups_of(np.asarray(dlib.chinese_whispers_clustering(_dlib_vectors(vectors), cut)))


def complete_link(vectors: np.ndarray, cut: float) -> np.ndarray:
    import dlib

    return _groups_of(np.asarray(dlib.bottom_up_clustering(_dlib_vectors(vectors), 1, cut)))


def with_margin(vectors: np.ndarray, labels: np.ndarray, cut: float, margin: float) -> np.ndarray:
    """Unassigns a face whose RMS distance to the rest of its group is over the cut, or whose
    nearest other group is less than ``margin`` further (the rule measured and not kept)."""
    out = labels.copy()
    people = np.unique(labels[labels >= 0])
    members = [vectors[labels == p].astype(np.float64) for p in people]
    centres = np.stack([m.mean(axis=0) for m in members])
    spreads = np.array([((m - m.mean(axis=0)) ** 2).sum(axis=1).mean() for m in members])
    sizes = np.array([len(m) for m in members])
    for face in np.flatnonzero(labels >= 0):
        own = int(np.searchsorted(people, labels[face]))
        to_all = ((centres - vectors[face]) ** 2).sum(axis=1) + spreads
        own_rms = np.sqrt(sizes[own] / (sizes[own] - 1) * to_all[own])  # the face itself left out
        to_all[own] = np.inf
        if own_rms >= cut or np.sqrt(to_all.min()) - own_rms < margin:
            out[face] = -1
    return _groups_of(out)


def methods(distance: float) -> list[tuple[str, list[float], object]]:
    vultus_rms = lambda v, cut, size=2: clustering.cluster(v, distance=distance, cut=cut, min_size=size)  # noqa: E731
    return [
        ("single link", [0.45, 0.50, 0.51, 0.52, 0.55, 0.60], single_link),
        ("Chinese whispers (dlib)", [0.45, 0.50, 0.52, 0.54, 0.55, 0.57, 0.60], chinese_whispers),
        ("complete link (dlib)", [0.60, 0.61, 0.65, 0.68, 0.69, 0.71, 0.75], complete_link),
        ("average link, distances", [0.50, 0.52, 0.53, 0.54, 0.57, 0.60, 0.61, 0.62, 0.65], average_link),
        ("average link, RMS (Vultus)", [0.50, 0.52, 0.53, 0.54, 0.57, 0.60, 0.61, 0.62, 0.65], vultus_rms),
        ("  min_size 3", [0.54, 0.57], lambda v, cut: vultus_rms(v, cut, 3)),
        ("  + margin 0.05", [0.50, 0.54, 0.57], lambda v, cut: with_margin(v, vultus_rms(v, cut), cut, 0.05)),
        ("  + margin 0.10", [0.50, 0.54, 0.57], lambda v, cut: with_margin(v, vultus_rms(v, cut), cut, 0.10)),
    ]


def clusters_section(faces: IdentityFaces, distance: float) -> None:
    scored = faces.scored
    truth = faces.identities[scored]
    with_two = sum(1 for c in Counter(truth).values() if c >= 2)
    print(f"clusters: {len(faces.vectors)} faces in {faces.photos} photos; {int(scored.sum())} scored (alone in "
          f"their photo) of {faces.scored_identities} identities, {with_two} of them with 2+ scored faces; "
          f"{len(set(faces.identities) - {''})} identity folders. Chosen: average link, RMS, cut "
          f"{clustering.CUT_RATIO} x {distance} = {clustering.CUT_RATIO * distance:.2f}, min_size 2.\n")
    rows = []
    for name, cuts, run in methods(distance):
        for cut in cuts:
            labels = run(faces.vectors, cut)
            score = pairwise_scores(labels[scored], truth)
            people_scored = len(set(labels[scored][labels[scored] >= 0]))
            rows.append((name, f"{cut:.2f}", f"{score.precision:.3f}", f"{score.recall:.3f}",
                         score.predicted_pairs - score.right_pairs, f"{score.right_pairs}/{score.true_pairs}",
                         f"{people_scored} ({int(labels.max()) + 1})", int((labels[scored] < 0).sum()),
                         int((labels < 0).sum())))
    table(("method", "cut", "precision", "recall", "false pairs", "right/true pairs", "people (all faces)",
           "unassigned scored", "unassigned all"), rows)
    assign_section(faces, distance)


def assign_section(faces: IdentityFaces, distance: float) -> None:
    """Each scored face left out: the rest clustered, the face placed by each rule."""
    cut = clustering.CUT_RATIO * distance
    margin = clustering.ASSIGN_MARGIN_RATIO * distance
    rules = [
        (f"nearest centroid < {distance:.2f} (the placeholder)", dict(cut=distance, margin=0.0), False),
        (f"nearest centroid < {cut:.2f}", dict(margin=0.0), False),
        (f"nearest centroid < {cut:.2f}, margin {margin:.2f}", {}, False),
        (f"RMS with spreads < {cut:.2f}", dict(margin=0.0), True),
        (f"RMS with spreads < {cut:.2f}, margin {margin:.2f} (chosen)", {}, True),
    ]
    tally = {name: Counter() for name, _, _ in rules}
    for face in np.flatnonzero(faces.scored):
        rest = np.flatnonzero(np.arange(len(faces.vectors)) != face)
        labels = clustering.cluster(faces.vectors[rest], distance=distance)
        people = np.unique(labels[labels >= 0])
        members = [faces.vectors[rest][labels == p] for p in people]
        centroids = np.stack([clustering.centroid(m) for m in members])
        spreads = np.array([clustering.spread(m) for m in members])
        # Whose group each is: the identity of most of its scored faces ("" when it has none).
        owners = []
        for p in people:
            named = [faces.identities[i] for i in rest[labels == p] if faces.scored[i]]
            owners.append(Counter(named).most_common(1)[0][0] if named else "")
        mine = faces.identities[face]
        for name, options, use_spreads in rules:
            placed = clustering.assign(faces.vectors[face], centroids, distance=distance,
                                       spreads=spreads if use_spreads else None, **options)
            if placed is None:
                tally[name]["missed" if mine in owners else "left out, rightly"] += 1
            elif owners[placed] == mine:
                tally[name]["right"] += 1
            else:
                tally[name]["to a group of unscored faces" if owners[placed] == "" else "WRONG person"] += 1
    columns = ("right", "WRONG person", "to a group of unscored faces", "missed", "left out, rightly")
    print("assign: each scored face left out, the others clustered, the face placed "
          "(missed: its person exists; left out, rightly: it does not)\n")
    table(("rule", *columns), [(name, *(tally[name][c] for c in columns)) for name, _, _ in rules])


# -- speed ---------------------------------------------------------------------------------------


def synthetic(faces: IdentityFaces, count: int, seed: int = 0, per_person: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``count`` templates of count/5 people and their owners, shaped like the scored faces:
    Gaussian identity centres and per-photo spread with the real ones' covariances."""
    rng = np.random.default_rng(seed)
    templates, labels = faces.vectors[faces.scored].astype(np.float64), faces.identities[faces.scored]
    names = sorted(set(labels))
    centres = np.stack([templates[labels == name].mean(axis=0) for name in names])
    within = templates - centres[np.searchsorted(names, labels)]
    dim = templates.shape[1]
    between = np.linalg.cholesky(np.cov(centres.T) + 1e-4 * np.eye(dim))
    spread = np.linalg.cholesky(np.cov(within.T) + 1e-5 * np.eye(dim))
    people = count // per_person
    made = centres.mean(axis=0) + rng.standard_normal((people, dim)) @ between.T
    owner = rng.integers(0, people, count)
    vectors = made[owner] + rng.standard_normal((count, dim)) @ spread.T
    return np.ascontiguousarray(vectors, dtype=np.float32), owner


def margin_on_synthetic(faces: IdentityFaces, distance: float, count: int = 10_000) -> None:
    """A lower cut against the margin rule, where look-alikes are many: synthetic faces are
    more crowded than real ones (their centres vary only where the 29 real identities do)."""
    vectors, owner = synthetic(faces, count, seed=count)
    rows = []
    for cut in (0.45, 0.50, 0.54):
        labels = clustering.cluster(vectors, distance=distance, cut=cut)
        for margin in (None, 0.05, 0.10):
            got = labels if margin is None else with_margin(vectors, labels, cut, margin)
            score = pairwise_scores(got, owner)
            rows.append((f"{cut:.2f}", "-" if margin is None else f"{margin:.2f}", f"{score.precision:.3f}",
                         f"{score.recall:.3f}", f"{int((got < 0).sum()):,}"))
    print(f"cut against margin rule on {count:,} synthetic faces\n")
    table(("cut", "margin", "precision", "recall", "unassigned"), rows)


def speed_section(faces: IdentityFaces, distance: float, sizes: list[int]) -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    cut = clustering.CUT_RATIO * distance
    rows = []
    last = None
    for count in sizes:
        vectors, owner = synthetic(faces, count, seed=count)
        started = time.perf_counter()
        clustering._neighbour_graph(vectors, clustering.NEIGHBOURS, cut * cut)
        graph_s = time.perf_counter() - started
        started = time.perf_counter()
        labels = clustering.cluster(vectors, distance=distance)
        seconds = time.perf_counter() - started
        score = pairwise_scores(labels, owner)
        rows.append((f"{count:,}", f"{seconds:.1f}", f"{seconds / count * 1000:.2f}", f"{graph_s:.1f}",
                     f"{score.precision:.3f}", f"{score.recall:.3f}", f"{int(labels.max()) + 1:,} / {len(set(owner)):,}",
                     f"{int((labels < 0).sum()):,}"))
        last = vectors, labels, owner
    print(f"speed: clustering synthetic faces on one core (cut {cut:.2f}, {clustering.NEIGHBOURS} neighbours)\n")
    table(("faces", "seconds", "s per 1,000 faces", "of which neighbour search", "precision", "recall",
           "people found / true", "unassigned"), rows)
    margin_on_synthetic(faces, distance)

    vectors, labels, owner = last
    people = np.unique(labels[labels >= 0])
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, people)
    ends = np.searchsorted(sorted_labels, people, side="right")
    centroids = np.stack([clustering.centroid(vectors[order[s:e]]) for s, e in zip(starts, ends)])
    spreads = np.array([clustering.spread(vectors[order[s:e]]) for s, e in zip(starts, ends)])
    new, _ = synthetic(faces, 1000, seed=len(vectors))  # other people's faces, as ingest would bring
    new = np.concatenate([new[:500], vectors[:500]])  # and faces of people already there
    calls = []
    for row in new:
        started = time.perf_counter()
        clustering.assign(row, centroids, distance=distance, spreads=spreads)
        calls.append(time.perf_counter() - started)
    started = time.perf_counter()
    clustering.assign_many(new, centroids, distance=distance, spreads=spreads)
    batch = time.perf_counter() - started
    calls_ms = np.asarray(calls) * 1000
    table(("assign against", "one face: p50 ms", "p99 ms", "1,000 faces at once: ms per face"),
          [(f"{len(people):,} people", f"{np.percentile(calls_ms, 50):.2f}", f"{np.percentile(calls_ms, 99):.2f}",
            f"{batch / len(new) * 1000:.3f}")])
    # ru_maxrss is in KiB on Linux.
    print(f"peak memory, this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB\n")


SECTIONS = ("clusters", "speed", "probes", "store")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(REPO.parent / "shared" / "data")
    parser.add_argument("sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--sizes", default="1000,10000,100000", help="synthetic face counts for speed")
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    if not faces_root.is_dir():
        print(f"No test data at {faces_root}; pass --data-root or set VULTUS_TEST_DATA.", file=sys.stderr)
        return 2
    chosen = args.sections or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"no section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if "clusters" in chosen or "speed" in chosen:
        faces, distance = shared_faces(Path(args.data_root))
        if "clusters" in chosen:
            clusters_section(faces, distance)
        if "speed" in chosen:
            speed_section(faces, distance, [int(s) for s in args.sizes.split(",")])
    # Their own scripts, with their default options (each also runs alone).
    sys.path.insert(0, str(REPO / "bench"))
    if "probes" in chosen:
        import people_probes

        people_probes.main(["--data-root", args.data_root])
    if "store" in chosen:
        import people_store

        people_store.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
