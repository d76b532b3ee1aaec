"""Where the landmarks that align a YuNet face come from: dlib's 5-point model on the box, or YuNet's own points.

    .venv/bin/python bench/alignment.py [--data-root ../shared/data]

Both ways cut dlib's face chip (dlib's ResNet was trained on chips placed by dlib's own
five points: two corners of each eye and the base of the nose). YuNet gives other points
(eye centres, nose tip, mouth corners), so for (b) dlib's five are predicted from YuNet's:
each face's YuNet points are brought by a similarity transform onto their mean shape, and
dlib's points are placed where, on average over the same photos, they sit in that frame
(ten numbers fitted on the photos that are then scored, so (b) is if anything flattered).

    (a) dlib's 5-point model on YuNet's box (mapped to dlib's geometry): what Vultus does
    (b) dlib's points predicted from YuNet's five

For each, face 1 of every shared identity photo is embedded and every pair scored: 10-fold
accuracy, FMR and FNMR at the model's threshold (0.70 similarity), and TMR at FMR 1e-3.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vultus.evaluation import identity_photos  # noqa: E402
from vultus.faces import FaceAnalyzer  # noqa: E402
from vultus.media import decode_image  # noqa: E402
from vultus.metrics import rates_at, tenfold_accuracy, tmr_at_fmr  # noqa: E402


def _similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, scale, shift) taking ``source`` points closest to ``target``."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    a = (s * t).sum() / (s**2).sum()
    b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum() / (s**2).sum()
    rotation = np.array([[a, -b], [b, a]])
    return np.hstack([rotation, (mu_t - rotation @ mu_s)[:, None]])


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def _invert(transform: np.ndarray) -> np.ndarray:
    rotation = np.linalg.inv(transform[:, :2])
    return np.hstack([rotation, (-rotation @ transform[:, 2])[:, None]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("VULTUS_TEST_DATA") or str(REPO.parent / "shared" / "data")
    parser.add_argument("--data-root", default=default)
    args = parser.parse_args()
    import dlib

    faces_root = Path(args.data_root) / "faces"
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    analyzer.detector.with_landmarks = True  # one thread: the analyzer's only detector
    samples = []  # (identity, rgb, detection, dlib's five points on the box)
    for name, paths in sorted(identity_photos(faces_root).items()):
        for path in paths:
            try:
                rgb = decode_image(path.read_bytes(), name=str(path)).rgb
            except Exception:  # noqa: BLE001 - the set's unreadable files
                continue
            found = analyzer.detect(rgb)
            if not found or found[0].landmarks is None:
                continue
            marks, _ = analyzer.aligner.align(rgb, found[:1], size=150)
            samples.append((name, rgb, found[0], np.asarray(marks[0], dtype=np.float64)))
    yunet = [np.asarray(s[2].landmarks, dtype=np.float64) for s in samples]
    mean_shape = yunet[0].copy()
    for _ in range(5):  # generalised Procrustes: the mean of the shapes brought onto it
        mean_shape = np.mean([_apply(_similarity_transform(p, mean_shape), p) for p in yunet], axis=0)
    to_mean = [_similarity_transform(p, mean_shape) for p in yunet]
    dlib_in_mean = np.mean([_apply(t, s[3]) for t, s in zip(to_mean, samples)], axis=0)

    def chips_b() -> list[np.ndarray]:
        chips = []
        for t, (_, rgb, det, _) in zip(to_mean, samples):
            points = _apply(_invert(t), dlib_in_mean)
            box = det.box
            shape = dlib.full_object_detection(dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1),
                                               [dlib.point(round(x), round(y)) for x, y in points])
            chips.append(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        return chips

    labels = np.asarray([s[0] for s in samples])
    embedder = analyzer.embedder
    rows = []
    for label, vectors in (
        ("(a) dlib's 5-point model on the box", np.stack([analyzer.reembed(s[1], [s[2]])[0].embedding for s in samples])),
        ("(b) dlib's points from YuNet's five", embedder.embed(chips_b())),
    ):
        sims, same = [], []
        for i in range(len(labels) - 1):
            sims.append(embedder.spec.similarity(np.linalg.norm(vectors[i + 1:] - vectors[i], axis=1)))
            same.append(labels[i + 1:] == labels[i])
        similarity, same_ = np.concatenate(sims), np.concatenate(same)
        genuine, impostor = similarity[same_], similarity[~same_]
        threshold = embedder.spec.default_threshold
        fmr, fnmr = rates_at(genuine, impostor, threshold)
        accuracy, _ = tenfold_accuracy(similarity, same_)
        at = tmr_at_fmr(genuine, impostor, 1e-3)
        rows.append((label, f"{accuracy * 100:.2f}%", f"{fmr:.5f}", f"{fnmr:.4f}", "-" if at is None else f"{at[0]:.3f}"))
    print(f"{len(samples)} photos with a face, {int(same_.sum())} genuine and {int((~same_).sum())} impostor pairs")
    header = ("landmarks", "10-fold", "FMR", "FNMR", "TMR@FMR1e-3")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
