"""Biometric accuracy measures on similarity scores (ISO/IEC 19795-1 and NIST FRTE terms).

Pure functions on numpy arrays: no models, no files. Higher similarity means more alike,
and a comparison "matches" when its similarity is at or above the threshold. Also the
pairwise precision and recall of a grouping of faces into people against true labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "rates_at",
    "threshold_for_fmr",
    "tenfold_accuracy",
    "Identification",
    "identification",
    "roc_points",
    "tmr_at_fmr",
    "Pairwise",
    "pairwise_scores",
]


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at ``threshold``: impostor pairs accepted, genuine pairs rejected."""
    fmr = float(np.mean(impostor >= threshold)) if len(impostor) else 0.0
    fnmr = float(np.mean(genuine < threshold)) if len(genuine) else 0.0
    return fmr, fnmr


def threshold_for_fmr(impostor: np.ndarray, target: float) -> tuple[float, float, bool]:
    """The lowest threshold whose measured FMR is at most ``target``.

    Returns (threshold, measured FMR, resolved). With n impostor scores an FMR below 1/n
    cannot be measured: then the threshold sits just above the highest impostor score,
    the measured FMR is 0 and ``resolved`` is False (the true FMR is only bounded, by
    about 3/n at 95% confidence).
    """
    scores = np.sort(np.asarray(impostor, dtype=np.float64))
    n = len(scores)
    if n == 0:
        raise ValueError("no impostor comparisons to calibrate on")
    distinct = np.unique(scores)
    at_or_above = n - np.searchsorted(scores, distinct, side="left")  # impostors accepted at each
    allowed = np.nonzero(at_or_above / n <= target)[0]
    if not len(allowed):
        return float(scores[-1] + 1e-6), 0.0, False
    threshold = float(distinct[allowed[0]])
    return threshold, float(at_or_above[allowed[0]] / n), True


def tenfold_accuracy(similarity: np.ndarray, same: np.ndarray, *, folds: int = 10, seed: int = 0,
                     failed: np.ndarray | None = None) -> tuple[float, float]:
    """Verification accuracy by k-fold cross-validation (mean, std), as in the LFW protocol.

    For each fold the threshold that maximises accuracy on the other folds is applied to it.
    Pairs marked ``failed`` (an image with no face: their similarity is not read) count as
    errors in their fold whatever the threshold, as the standard protocol counts them.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    failed = np.zeros(len(same), dtype=bool) if failed is None else np.asarray(failed, dtype=bool)
    order = np.random.default_rng(seed).permutation(len(similarity))
    parts = np.array_split(order, folds)
    accuracies = []
    for held_out in parts:
        train = np.setdiff1d(order, held_out)
        train = train[~failed[train]]
        best = _best_threshold(similarity[train], same[train])
        scored = held_out[~failed[held_out]]
        correct = int(np.sum((similarity[scored] >= best) == same[scored]))
        accuracies.append(correct / len(held_out) if len(held_out) else 0.0)
    return float(np.mean(accuracies)), float(np.std(accuracies))


def _best_threshold(similarity: np.ndarray, same: np.ndarray) -> float:
    """The lowest of the scores that, as a threshold, classifies the most pairs right.

    Counted for every candidate at once from sorted scores (genuine at or above it plus
    impostors below it), the same choice as trying each candidate in turn, in n log n.
    """
    candidates = np.unique(similarity)
    if not len(candidates):
        return float("inf")  # nothing to train on: every held-out pair is rejected
    genuine, impostor = np.sort(similarity[same]), np.sort(similarity[~same])
    right = (len(genuine) - np.searchsorted(genuine, candidates, side="left")
             + np.searchsorted(impostor, candidates, side="left"))
    return float(candidates[int(np.argmax(right))])


def tmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, target: float) -> tuple[float, float] | None:
    """(TMR, threshold) at the lowest threshold whose measured FMR is at most ``target``.

    None when the data cannot resolve ``target``: with n impostor scores no FMR below 1/n
    is measured.
    """
    if not len(impostor) or not len(genuine) or target < 1.0 / len(impostor):
        return None
    threshold, _, resolved = threshold_for_fmr(impostor, target)
    if not resolved:
        return None
    return float(np.mean(np.asarray(genuine) >= threshold)), threshold


@dataclass(frozen=True)
class Identification:
    """Closed-set ranks and open-set FNIR at a chosen FPIR."""

    searches: int
    rank1: float
    rank5: float
    fpir: float
    fnir: float
    threshold: float


def identification(labels: list[str], vectors: np.ndarray, similarity_of, *, fpir: float = 0.01) -> Identification:  # noqa: ANN001
    """Leave-one-out identification over labelled templates.

    ``similarity_of`` maps an array of distances to similarities element-wise.
    Mated searches: each template of an identity with 2+ templates against all others.
    Non-mated searches: each template against the gallery without its own identity. The
    threshold is set so that a fraction ``fpir`` of non-mated searches return any candidate;
    FNIR is the fraction of mated searches whose mate is not the top candidate at or above it.
    """
    labels = np.asarray(labels)
    mated_top, ranks, non_mated_top = [], [], []
    for i, label in enumerate(labels):
        # One row of scores at a time: an n x n x dim distance array would not fit for large n.
        row = np.asarray(similarity_of(np.linalg.norm(vectors - vectors[i], axis=1)), dtype=np.float64)
        row[i] = -np.inf
        same = labels == label
        same[i] = False
        other = ~(labels == label)
        if other.any():
            non_mated_top.append(row[other].max())
        if same.any():
            order = np.argsort(-row)
            order = order[order != i]
            rank = int(np.argmax(same[order])) + 1
            ranks.append(rank)
            mated_top.append(row[order[0]] if rank == 1 else -np.inf)
    non_mated = np.asarray(non_mated_top)
    threshold, measured, _ = threshold_for_fmr(non_mated, fpir) if len(non_mated) else (0.0, 0.0, False)
    ranks_arr = np.asarray(ranks)
    fnir = float(np.mean(np.asarray(mated_top) < threshold)) if mated_top else 0.0
    return Identification(
        searches=len(ranks),
        rank1=float(np.mean(ranks_arr <= 1)) if len(ranks) else 0.0,
        rank5=float(np.mean(ranks_arr <= 5)) if len(ranks) else 0.0,
        fpir=measured,
        fnir=fnir,
        threshold=threshold,
    )


def roc_points(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) over every distinct score, for ROC and DET curves."""
    genuine, impostor = np.sort(np.asarray(genuine)), np.sort(np.asarray(impostor))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    accepted = len(impostor) - np.searchsorted(impostor, thresholds, side="left")
    fmr = accepted / len(impostor) if len(impostor) else np.zeros(len(thresholds))
    fnmr = np.searchsorted(genuine, thresholds, side="left") / len(genuine) if len(genuine) else np.zeros(len(thresholds))
    return thresholds, fmr, fnmr


@dataclass(frozen=True)
class Pairwise:
    """A grouping scored over pairs of faces: a pair is predicted together when both faces
    have the same label >= 0 (an unassigned face, -1, pairs with nobody), and truly together
    when they have the same true label."""

    predicted_pairs: int
    true_pairs: int
    right_pairs: int

    @property
    def precision(self) -> float:
        """Of the pairs put together, the share that are one person (1.0 when none are)."""
        return self.right_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        """Of the pairs that are one person, the share put together (1.0 when there are none)."""
        return self.right_pairs / self.true_pairs if self.true_pairs else 1.0


def _pairs(*columns: np.ndarray) -> int:
    """Pairs of rows that agree on every column: sum of c(c-1)/2 over the distinct rows."""
    if len(columns[0]) == 0:
        return 0
    _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def pairwise_scores(labels: np.ndarray, truth: np.ndarray) -> Pairwise:
    """Pairwise precision and recall of ``labels`` (int, -1 unassigned) against ``truth``
    (one true label per face, any hashable values), counted without listing the pairs."""
    labels = np.asarray(labels, dtype=np.int64)
    _, truth_ids = np.unique(np.asarray(truth), return_inverse=True)
    truth_ids = truth_ids.reshape(-1)
    if len(labels) != len(truth_ids):
        raise ValueError(f"{len(labels)} labels for {len(truth_ids)} true labels: give one of each per face.")
    placed = labels >= 0
    return Pairwise(predicted_pairs=_pairs(labels[placed]), true_pairs=_pairs(truth_ids),
                    right_pairs=_pairs(labels[placed], truth_ids[placed]))
