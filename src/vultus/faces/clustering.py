"""Grouping face templates into people: a full clustering and the incremental placing of a face.

Pure numpy on templates (rows of unit-free Euclidean embeddings as the embedder makes them);
no storage, no model. A face too uncertain to place is left unassigned (label -1), because a
wrong grouping is worse for the people in the photos than a missing one.

This first version is plain single-link grouping at a distance threshold; the method and its
parameters are chosen by ``bench/people.py`` (pairwise precision and recall on the shared faces).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cluster", "assign", "centroid"]


def cluster(vectors: np.ndarray, *, distance: float, min_size: int = 2) -> np.ndarray:
    """A label per row of ``vectors`` (n x d): people numbered 0, 1, ... and -1 for a face
    left unassigned (in a group smaller than ``min_size``). Two faces closer than
    ``distance`` are linked; a group is the linked faces."""
    n = len(vectors)
    labels = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return labels
    vectors = np.asarray(vectors, dtype=np.float32)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    for i in range(n):
        near = np.flatnonzero(np.linalg.norm(vectors[i + 1:] - vectors[i], axis=1) < distance) + i + 1
        for j in near:
            a, b = root(i), root(int(j))
            if a != b:
                parent[b] = a
    roots = np.array([root(i) for i in range(n)])
    next_label = 0
    for r in np.unique(roots):
        members = np.flatnonzero(roots == r)
        if len(members) >= min_size:
            labels[members] = next_label
            next_label += 1
    return labels


def assign(vector: np.ndarray, centroids: np.ndarray, *, distance: float) -> int | None:
    """The row of ``centroids`` (k x d) that ``vector`` belongs to, or None when none is
    closer than ``distance`` (the face stays unassigned until a full clustering)."""
    if len(centroids) == 0:
        return None
    d = np.linalg.norm(np.asarray(centroids, dtype=np.float32) - np.asarray(vector, dtype=np.float32), axis=1)
    best = int(np.argmin(d))
    return best if d[best] < distance else None


def centroid(vectors: np.ndarray) -> np.ndarray:
    """The template that stands for a group: the mean of its faces' templates."""
    return np.asarray(vectors, dtype=np.float32).mean(axis=0)
