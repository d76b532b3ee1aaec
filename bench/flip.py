"""Test-time flip, measured before it is offered: templates of the face chip against the mean
of the chip's and its mirror image's, on the shared identity photos.

Usage: python bench/flip.py [--data-root ../shared/data] [--detector yunet]

Every identity photo's main face is detected, aligned and embedded twice (the chip, and the
chip mirrored left to right); all pairs of photos are compared both ways. Prints 10-fold
accuracy, FMR and FNMR at the default threshold (0.70) and TMR at FMR 1e-3 for each. A
different template function would be its own model id; this only says whether it is worth one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from vultus.evaluation import identity_photos
from vultus.faces import FaceAnalyzer
from vultus.media import decode_image
from vultus.metrics import rates_at, tenfold_accuracy, tmr_at_fmr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--detector", default="yunet")
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    analyzer = FaceAnalyzer.from_names(args.detector, "dlib-resnet-v1")
    labels, plain, mean = [], [], []
    for identity, files in identity_photos(faces_root).items():
        for name in files:
            path = Path(name) if Path(name).is_absolute() else faces_root / identity / name
            try:
                rgb = decode_image(path.read_bytes()).rgb
            except Exception:  # noqa: BLE001 - an unreadable photo is left out of both
                continue
            found = analyzer.detect(rgb)
            if not found:
                continue
            _, chips = analyzer.aligner.align(rgb, found[:1], size=analyzer.embedder.spec.input_size)
            chips = np.asarray(chips)
            first = analyzer.embedder.embed(chips)[0]
            mirrored = analyzer.embedder.embed(np.ascontiguousarray(chips[:, :, ::-1]))[0]
            labels.append(identity)
            plain.append(first)
            mean.append((first + mirrored) / 2)
    names = np.asarray(labels)
    rows = []
    for title, vectors in (("chip", np.asarray(plain)), ("mean of chip and mirror", np.asarray(mean))):
        i, j = np.triu_indices(len(vectors), 1)
        similarity = analyzer.embedder.spec.similarity(np.linalg.norm(vectors[i] - vectors[j], axis=1))
        same = names[i] == names[j]
        fmr, fnmr = rates_at(similarity[same], similarity[~same], 0.70)
        accuracy, spread = tenfold_accuracy(similarity, same)
        tmr = tmr_at_fmr(similarity[same], similarity[~same], 1e-3)
        rows.append((title, f"{accuracy:.4%} ± {spread:.4%}", f"{fmr:.5f}", f"{fnmr:.5f}",
                     f"{tmr[0]:.4f}" if tmr else "not resolved"))
    print(f"\nTest-time flip on {faces_root} ({len(names)} photos, detector {args.detector}, dlib-resnet-v1)\n")
    header = ("template", "10-fold accuracy", "FMR at 0.70", "FNMR at 0.70", "TMR at FMR 1e-3")
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
