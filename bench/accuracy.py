"""Accuracy on the shared face set: leave-one-out rank-1, recall@10, group face counts.

Usage: python bench/accuracy.py [--data-root ../shared/data] [--detector hog] [--workers N]

Ingests every identity folder of DATA_ROOT/faces into a temporary data directory, searches
with each photo of every identity that has two or more, and prints a table. Also prints the
faces found in each _group/ photo against labels.csv, ingest throughput, search latency
and peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import vultus
from vultus.evaluation import group_counts, identity_photos, leave_one_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--detector", default="hog")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    if not faces_root.is_dir():
        print(f"No test data at {faces_root}; pass --data-root or set VULTUS_TEST_DATA.", file=sys.stderr)
        return 2
    folders = [str(faces_root / name) for name in identity_photos(faces_root)]
    with tempfile.TemporaryDirectory(prefix="vultus-bench-") as tmp:
        with vultus.open(tmp, detector=args.detector) as engine:
            engine.add_source("identities", basis="legitimate-interests", purpose="accuracy benchmark", retention="30d")
            started = time.monotonic()
            summary = engine.ingest(folders, source="identities", workers=args.workers or None)
            ingest_s = time.monotonic() - started
            started = time.monotonic()
            loo = leave_one_out(engine, faces_root, source="identities")
            search_s = time.monotonic() - started
            groups = group_counts(engine, faces_root / "labels.csv")

    print(f"\nAccuracy on {faces_root} (detector {args.detector}, embedder dlib-resnet-v1)\n")
    rows = [
        ("identities with 2+ photos", str(loo.identities)),
        ("probes", str(loo.probes)),
        ("probes with a face found", str(loo.probes_with_face)),
        ("rank-1 (among probes with a face)", f"{loo.rank1:.2%} ({loo.rank1_hits}/{loo.probes_with_face})"),
        (f"recall@{loo.k}", f"{loo.recall_at_k:.2%}"),
        ("gallery photos / faces", f"{summary.images} / {summary.faces} (+{summary.no_face} with no face)"),
        ("ingest", f"{ingest_s:.1f} s, {(summary.images + summary.no_face) / ingest_s:.2f} photos/s"),
        ("search latency (mean, incl. probe detection)", f"{search_s / max(1, loo.probes) * 1000:.0f} ms"),
        # ru_maxrss is in KiB on Linux; children are the ingest worker processes.
        ("peak memory, this process", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"),
        ("peak memory, largest worker", f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    for probe, got in loo.misses:
        print(f"  miss: {probe} -> {got}")
    for probe in loo.no_face:
        print(f"  no face: {probe}")
    print("\nGroup photos: faces found vs labels.csv\n")
    print(f"{'file'.ljust(40)}  expected  found")
    for name, expected, found in groups:
        print(f"{name.ljust(40)}  {expected:8d}  {found:5d}")
    total_expected = sum(e for _, e, _ in groups)
    total_found = sum(min(f, e) for _, e, f in groups)
    print(f"{'total (found capped at expected)'.ljust(40)}  {total_expected:8d}  {total_found:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
