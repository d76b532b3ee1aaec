"""Grouping face templates into people: a full clustering and the incremental placing of a face.

Pure numpy and FAISS on templates (rows of Euclidean embeddings as the embedder makes them);
no storage, no model. A face too uncertain to place is left unassigned (label -1), because a
wrong grouping is worse for the people in the photos than a missing one.

**The method: average linkage on squared distances, over a k-nearest-neighbour graph.**
Agglomerative clustering that merges, cheapest first, the two groups whose root-mean-square
distance over all their cross pairs of faces is smallest, and stops at the cut. The RMS
distance of groups A and B has a closed form in each group's centroid and spread (the mean
squared distance of its faces to their centroid), ``|cA - cB|^2 + sA + sB``, so a merge costs
O(d) and no distance matrix is kept. Two groups closer than the cut have at least one pair of
faces closer than it, so only groups joined by an edge of the faces' nearest-neighbour graph
(FAISS, exact, ``neighbours`` per face, edges under the cut) are ever compared; on inputs of
at most ``neighbours + 1`` faces that is every pair, and the result is exact average linkage.
Groups smaller than ``min_size`` (by default, faces that joined nobody) are unassigned.

**Why this one** (``bench/people.py clusters``: the 121 faces the default analyzer finds in the
102 shared identity photos, all clustered, and scored over the 91 faces alone in their photo; a
photo with several faces is not scored, since its folder does not say which face it names, and
the largest is not it in 3 of those 11, judged by the identity's other photos). Pairwise precision (P) and recall (R) by cut:

    method                   cuts with P = 1   R there       first false merges
    single link              <= 0.51           0.92 - 0.98   0.52 (P 0.88)
    Chinese whispers (dlib)  <= 0.50 - 0.54    0.81 - 0.98   0.52 - 0.55 (P 0.97 - 0.98), 0.57 (P 0.86)
    complete link (dlib)     0.61 - 0.68       0.99          0.69 (P 0.99), 0.71 (P 0.87)
    average link, distances  0.53 - 0.61       0.99          0.62 (P 0.88)
    average link, RMS        0.53 - 0.61       0.99          0.62 (P 0.88)

(Chinese whispers depends on the order of the faces: its safe range moved between two ingests.)
Every false merge joins the same two look-alike identities (``deepface_unnamed_b`` and ``_c``:
their closest pair is 0.52 apart, while 13 same-person pairs are further than 0.5). Average and
complete link keep them apart over equally wide ranges at full recall; average link is chosen
because its RMS form has the closed form above (merges in O(d) on a sparse graph; the plain
average gives the same groups here), because the same rule places a new face from a person's
centroid and spread alone (complete link needs every member's template), and because complete
link compares a group's furthest pair, which grows with a person's number of photos (not
measurable here: at most 8 photos an identity). The cut is ``CUT_RATIO`` (0.9) times the
embedder's match distance: 0.54 for dlib, in the safe range (R 0.993 from 0.53 up, 0.93 still
at 0.50), on its cautious side because look-alikes multiply with a collection's size: on
synthetic faces, more crowded than real ones, precision at 10,000 faces is 0.79 at 0.54, 0.97
at 0.50 and 1.0 at 0.45 (recall >= 0.998); a deployment with large sources may pass a lower
``cut``. Measured for dlib's ResNet only. ``min_size`` 3 costs recall (0.94; pairs of photos
are common) for no precision. A margin rule that also unassigns a face whose second-nearest
group is almost as near was measured and dropped: on the shared faces it only costs recall,
and on the synthetic faces a lower cut buys the same precision for less recall (0.97 at 0.54
with margin 0.1: recall 0.87; at 0.50 without: recall 1.0). 100,000 synthetic faces cluster in
50 to 85 s on one core of a busy 2-core machine, three quarters of it the exact neighbour search.

**Placing one face** (``assign``): the nearest person by the same RMS distance (with the
person's spread; without it, plain centroid distance), when it is under the cut and at least
``margin`` (``ASSIGN_MARGIN_RATIO``, 0.1, times the match distance) nearer than the second
nearest; otherwise None, and the face waits for the next full clustering. Leaving each shared
face out in turn, it places 69 of the 71 faces whose person exists, and none wrongly.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = [
    "CUT_RATIO",
    "ASSIGN_MARGIN_RATIO",
    "NEIGHBOURS",
    "cluster",
    "assign",
    "assign_many",
    "centroid",
    "spread",
]

#: The clustering cut as a fraction of the embedder's match distance (module docstring).
CUT_RATIO = 0.9
#: How much nearer than the second-nearest person a face must be to be placed, as a fraction
#: of the match distance.
ASSIGN_MARGIN_RATIO = 0.1
#: Nearest neighbours per face in the graph the clustering runs on.
NEIGHBOURS = 32


def _matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (one template per row), not shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} hold NaN or infinite values: re-embed the faces they came from.")
    return array


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive number of the embedder's distance units, not {value}.")
    return value


def _neighbour_graph(vectors: np.ndarray, neighbours: int, cut2: float) -> list[np.ndarray]:
    """Each face's neighbours closer than the cut (squared ``cut2``), symmetrised: the
    ``neighbours`` nearest found by exact FAISS search, and any face that found it."""
    import faiss  # a part of its own: loaded when a clustering runs, not with the package

    n, dim = vectors.shape
    index = faiss.IndexFlatL2(dim)
    index.add(vectors)
    k = min(n, neighbours + 1)  # + 1: each face finds itself
    sources, targets = [], []
    for start in range(0, n, 20_000):  # bounded memory for the distance blocks
        squared, found = index.search(vectors[start : start + 20_000], k)
        rows = np.repeat(np.arange(start, start + len(found)), k)
        found, squared = found.ravel(), squared.ravel()
        keep = (found >= 0) & (found != rows) & (squared < cut2)
        sources.append(rows[keep])
        targets.append(found[keep])
    src = np.concatenate(sources + targets)
    dst = np.concatenate(targets + sources)
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    bounds = np.searchsorted(src, np.arange(n + 1))
    return [dst[bounds[i] : bounds[i + 1]] for i in range(n)]


def cluster(vectors: np.ndarray, *, distance: float, min_size: int = 2, cut: float | None = None,
            neighbours: int = NEIGHBOURS) -> np.ndarray:
    """A label per row of ``vectors`` (n x d): people numbered 0, 1, ... in the order of their
    first face, and -1 for a face left unassigned (in a group smaller than ``min_size``).

    ``distance`` is the embedder's match distance; groups merge while their RMS distance is
    under ``cut`` (default ``CUT_RATIO * distance``), compared only where the graph of each
    face's ``neighbours`` nearest links them. Deterministic: the same rows give the same
    labels, and the same rows in another order the same groups (exact ties aside).
    """
    vectors = _matrix(vectors, "Templates")
    distance = _positive(distance, "distance")
    cut = _positive(CUT_RATIO * distance if cut is None else cut, "cut")
    if min_size < 1 or neighbours < 1:
        raise ValueError(f"min_size and neighbours must be at least 1 (got {min_size} and {neighbours}).")
    n = len(vectors)
    if n == 0:
        return np.full(0, -1, dtype=np.int64)
    cut2 = cut * cut
    near = _neighbour_graph(vectors, neighbours, cut2) if n > 1 else [np.zeros(0, dtype=np.int64)]
    # A group is known by one of its faces (its id); owner[face] is the id of the face's group.
    centre = vectors.copy()
    spread2 = np.zeros(n)
    size = np.ones(n, dtype=np.int64)
    owner = np.arange(n)
    members: list[np.ndarray | None] = [np.array([i]) for i in range(n)]
    version = np.zeros(n, dtype=np.int64)
    heap: list[tuple[float, int, int, int, int]] = []

    def push_nearest(group: int) -> None:
        """Queue the group's cheapest merge, if one is under the cut. Merges never bring a
        group closer (average linkage is reducible), so one entry per group is enough: an
        entry whose partner has changed is re-evaluated when it comes up."""
        groups = owner[near[group]]
        groups = np.unique(groups[groups != group])
        near[group] = groups  # ids of groups: each is one of its own faces, so owner[] maps it
        if len(groups) == 0:
            return
        gap = centre[groups] - centre[group]
        cost = np.einsum("ij,ij->i", gap, gap) + spread2[groups] + spread2[group]
        best = int(np.argmin(cost))
        if cost[best] < cut2:
            other = int(groups[best])
            heapq.heappush(heap, (float(cost[best]), group, other, int(version[group]), int(version[other])))

    for face in range(n):
        push_nearest(face)
    while heap:
        _, a, b, version_a, version_b = heapq.heappop(heap)
        if owner[a] != a or version[a] != version_a:
            continue  # a has merged since: its new entry is queued
        if owner[b] != b or version[b] != version_b:
            push_nearest(a)
            continue
        if size[a] < size[b] or (size[a] == size[b] and b < a):
            a, b = b, a  # the larger group keeps its id, so fewer faces change owner
        na, nb = size[a], size[b]
        total = na + nb
        centre_a, centre_b = centre[a].astype(np.float64), centre[b].astype(np.float64)
        gap = centre_b - centre_a
        spread2[a] = (na * spread2[a] + nb * spread2[b]) / total + na * nb / (total * total) * float(gap @ gap)
        centre[a] = (na * centre_a + nb * centre_b) / total
        size[a] = total
        owner[members[b]] = a
        members[a] = np.concatenate([members[a], members[b]])
        members[b] = None
        near[a] = np.concatenate([near[a], near[b]])
        near[b] = np.zeros(0, dtype=np.int64)
        version[a] += 1
        push_nearest(a)
    labels = np.full(n, -1, dtype=np.int64)
    first_faces = sorted(int(m.min()) for m in members if m is not None and len(m) >= min_size)
    for label, face in enumerate(first_faces):
        labels[members[owner[face]]] = label
    return labels


def assign_many(vectors: np.ndarray, centroids: np.ndarray, *, distance: float, spreads: np.ndarray | None = None,
                cut: float | None = None, margin: float | None = None) -> np.ndarray:
    """For each row of ``vectors``, the row of ``centroids`` (k x d) it belongs to, or -1.

    A face goes to the person with the smallest RMS distance to its faces,
    ``sqrt(|x - centroid|^2 + spread)`` (``spreads``: each person's ``spread()``; None is
    taken as 0, plain centroid distance, which places more readily), when that is under
    ``cut`` (default ``CUT_RATIO * distance``) and at least ``margin`` (default
    ``ASSIGN_MARGIN_RATIO * distance``) less than the second-nearest person's.
    """
    vectors = _matrix(vectors, "Templates")
    distance = _positive(distance, "distance")
    cut = _positive(CUT_RATIO * distance if cut is None else cut, "cut")
    margin = ASSIGN_MARGIN_RATIO * distance if margin is None else float(margin)
    placed = np.full(len(vectors), -1, dtype=np.int64)
    if len(centroids) == 0 or len(vectors) == 0:
        return placed
    centroids = _matrix(centroids, "Centroids")
    if centroids.shape[1] != vectors.shape[1]:
        raise ValueError(f"Templates have {vectors.shape[1]} values and centroids {centroids.shape[1]}: "
                         "they come from different embedders; re-cluster after re-embedding.")
    extra = np.zeros(len(centroids)) if spreads is None else np.asarray(spreads, dtype=np.float64).reshape(-1)
    if len(extra) != len(centroids) or not (np.isfinite(extra).all() and (extra >= 0).all()):
        raise ValueError("spreads must be one non-negative number per centroid (spread() of each person's faces).")
    norms = np.einsum("ij,ij->i", centroids, centroids) + extra.astype(np.float32)
    for start in range(0, len(vectors), 1024):  # blocks of faces: bounded memory
        block = vectors[start : start + 1024]
        # |x - c|^2 + spread as |x|^2 - 2 x.c + (|c|^2 + spread): one matrix product per block.
        squared = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * (block @ centroids.T) + norms[None, :]
        best = np.argmin(squared, axis=1)
        if len(centroids) > 1:
            two = np.partition(squared, 1, axis=1)
            nearest, second = np.sqrt(np.maximum(two[:, 0], 0.0)), np.sqrt(np.maximum(two[:, 1], 0.0))
        else:
            nearest, second = np.sqrt(np.maximum(squared[:, 0], 0.0)), np.full(len(block), np.inf)
        ok = (nearest < cut) & (second - nearest >= margin)
        placed[start : start + len(block)][ok] = best[ok]
    return placed


def assign(vector: np.ndarray, centroids: np.ndarray, *, distance: float, spreads: np.ndarray | None = None,
           cut: float | None = None, margin: float | None = None) -> int | None:
    """The row of ``centroids`` (k x d) that one face's template belongs to, or None when no
    person is near enough, or two are nearly as near (the face stays unassigned until a full
    clustering). The rule is ``assign_many``'s."""
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    found = int(assign_many(vector, centroids, distance=distance, spreads=spreads, cut=cut, margin=margin)[0])
    return None if found < 0 else found


def centroid(vectors: np.ndarray) -> np.ndarray:
    """The template that stands for a group: the mean of its faces' templates."""
    vectors = _matrix(vectors, "Templates")
    if len(vectors) == 0:
        raise ValueError("A group with no faces has no centroid.")
    return vectors.mean(axis=0)


def spread(vectors: np.ndarray) -> float:
    """How widely a group's faces lie: the mean squared distance of its templates to their
    centroid (0 for one face). With the centroid it gives the RMS distance from any face to
    the group's faces, which is what ``assign`` compares."""
    vectors = _matrix(vectors, "Templates").astype(np.float64)
    if len(vectors) == 0:
        raise ValueError("A group with no faces has no spread.")
    return float(((vectors - vectors.mean(axis=0)) ** 2).sum(axis=1).mean())
