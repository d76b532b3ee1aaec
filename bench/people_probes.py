"""Several photos, one person: recall@10 with 1, 2 and 3 probe photos, under each way of fusing them.

Usage: python bench/people_probes.py [--data-root ../shared/data] [--workers N] [--fusion max,mean,both]
                                     [--small 32,24]

Ingests every identity folder of DATA_ROOT/faces (folders starting with _ left out) into a
temporary data directory with the default models. For every identity with 4 or more photos,
its first 1, 2 and 3 photos (by name) are the probes of one search; its first 3 are held out of
its results in every case, so each row is scored against the same genuine matches: the
identity's other photos, among every other identity's photos. Recall@10 is the fraction of
those found in the top 10, averaged over identities ("mean") and pooled over all of them
("pooled"), once ranking the whole gallery (threshold 0) and once at the deployment's
threshold, as a user searches; "false" is the mean number of other identities' photos among
a thresholded search's top 10. Each is measured with the probe photos as they are and with
them shrunk so that the face is each of --small pixels wide (a face cut from a crowd or a
camera still: on the photos as they are, one probe already finds every match). Fusions (vultus.search.FUSIONS): "max" scores each stored face by its best
similarity to any probe face, "mean" searches with the probe templates' mean, "both" takes
the better of the two. Also prints the mean search latency (probe analysis included) and how
often a genuine probe face fails the rights requests' same-person check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import vultus
from vultus.evaluation import identity_photos, several_probes
from vultus.search import FUSION, FUSIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--fusion", default=",".join(FUSIONS), help="fusions to measure, comma-separated")
    parser.add_argument("--small", default="32,24", help="face widths (px) of the shrunk probes, comma-separated")
    args = parser.parse_args(argv)
    faces_root = Path(args.data_root) / "faces"
    if not faces_root.is_dir():
        print(f"No test data at {faces_root}; pass --data-root or set VULTUS_TEST_DATA.", file=sys.stderr)
        return 2
    fusions = [f.strip() for f in args.fusion.split(",") if f.strip()]
    folders = [faces_root / name for name in identity_photos(faces_root)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vultus-bench-") as tmp, vultus.open(tmp, actor="bench") as engine:
        engine.add_source("identities", basis="legitimate-interests", purpose="benchmark", retention="30d")
        summary = engine.ingest(folders, source="identities", workers=args.workers or None)
        for width in (None, *(int(w) for w in args.small.split(",") if w.strip())):
            quality = "as they are" if width is None else f"face {width} px"
            for number, fusion in enumerate(fusions):
                ranked = several_probes(engine, faces_root, source="identities", fusion=fusion, threshold=0.0,
                                        probe_width=width)
                searched = several_probes(engine, faces_root, source="identities", fusion=fusion, probe_width=width)
                for n in (1, 2, 3) if number == 0 else (2, 3):  # one probe is the same search whatever the fusion
                    latency = 1000 * float(np.mean(ranked.seconds[n] + searched.seconds[n]))
                    rows.append((quality, fusion if n > 1 else "-", n, ranked.recall(n), searched.recall(n),
                                 searched.pooled(n), searched.false_candidates(n), latency))
        unlike, pairs = _same_person_check(engine, faces_root)
        identities, genuine, rights = len(ranked.identities), sum(ranked.genuine), engine.rights_threshold
        threshold = searched.threshold

    print(f"\nSeveral probe photos of one person, on {faces_root}: {identities} identities with 4+ photos, "
          f"{genuine} genuine matches in a gallery of {summary.faces} faces; threshold {threshold:.3f}\n")
    head = ("probes' faces", "fusion", "probes", "recall@10 ranked", "at threshold", "pooled", "false", "latency")
    widths = (14, 7, 6, 16, 12, 8, 6, 8)
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    for quality, fusion, n, r_rank, r_thr, r_pool, false, ms in rows:
        cells = [quality.ljust(14), fusion.ljust(7), str(n).rjust(6), f"{r_rank:.2%}".rjust(16),
                 f"{r_thr:.2%}".rjust(12), f"{r_pool:.2%}".rjust(8), f"{false:.2f}".rjust(6), f"{ms:.0f} ms".rjust(8)]
        print("  ".join(cells))
    print(f"\nSearches use fusion {FUSION!r}. Same-person check of rights requests (each probe face within the "
          f"rights threshold {rights:.3f} of the first): {unlike} of {pairs} genuine probe faces would be refused.")
    return 0


def _same_person_check(engine, faces_root: Path) -> tuple[int, int]:  # noqa: ANN001 - Engine
    """(refused, tried): photos 2 and 3 of each 4+-photo identity against its photo 1 at the rights threshold."""
    from vultus.probes import read_probes
    from vultus.search import probe_faces

    spec = engine.analyzer.embedder.spec
    radius = spec.distance(engine.rights_threshold)
    refused = tried = 0
    for files in identity_photos(faces_root).values():
        if len(files) < 4:
            continue
        faces = probe_faces(read_probes(files[:3]), analyzer=engine.analyzer, draft=False)
        for face in faces[1:]:
            tried += 1
            refused += float(np.linalg.norm(face.template - faces[0].template)) > radius
    return refused, tried


if __name__ == "__main__":
    sys.exit(main())
