"""Cost of accountability: erasure, access, audit verification, key rotation, purge, encryption.

Usage: python bench/rights.py [--data-root ../shared/data] [--log-entries 5000]

Ingests the identity folders of DATA_ROOT/faces into a temporary data directory, then times
each rights and upkeep operation once and prints a table. Audit verification is timed over
the real entries plus --log-entries synthetic search entries.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import vultus
from vultus.evaluation import identity_photos
from vultus.store import AuditAction, utcnow


def timed(rows: list, label: str, func, *args, **kwargs):
    started = time.perf_counter()
    result = func(*args, **kwargs)
    rows.append((label, f"{(time.perf_counter() - started) * 1000:.0f} ms"))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--log-entries", type=int, default=5000)
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    if not faces_root.is_dir():
        print(f"No test data at {faces_root}; pass --data-root or set VULTUS_TEST_DATA.", file=sys.stderr)
        return 2
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="vultus-bench-") as tmp, vultus.open(tmp, actor="bench") as engine:
        engine.add_source("identities", basis="legitimate-interests", purpose="benchmark", retention="30d")
        summary = engine.ingest([faces_root / n for n in identity_photos(faces_root)], source="identities")
        rows.append(("gallery", f"{summary.images} photos, {summary.faces} faces"))
        probe = faces_root / "deepface_angelina" / "1.jpg"
        match = timed(rows, "match a person (rights threshold)", engine.match_person, probe)
        rows.append(("  photos matched", str(len(match.image_ids))))
        timed(rows, "access report (JSON, crops included)", engine.access, probe, include_crops=True)
        timed(rows, "erasure with receipt", engine.erase, match)
        other = engine.match_person(faces_root / "deepface_scarlett" / "1.jpg")
        timed(rows, "objection with receipt", engine.object, other)
        for n in range(args.log_entries):
            engine.store.log(actor="bench", action=AuditAction.SEARCH, details={
                "purpose": "p", "case": f"C-{n}", "probe_sha256": secrets.token_hex(32),
                "candidates": [{"face_id": 1, "image_sha256": secrets.token_hex(32), "similarity": 0.8}]})
        entries = engine.stats().audit_entries
        verdict = timed(rows, f"audit verify ({entries} entries)", engine.verify_audit)
        assert verdict.ok
        rotated = timed(rows, "keys rotate", engine.rotate_keys)
        rows.append(("  re-encrypted", f"{rotated['blobs']} files, {rotated['templates']} templates"))
        receipt = timed(rows, "purge (everything expired)", engine.purge, now=utcnow() + timedelta(days=31))
        rows.append(("  purged", f"{len(receipt['removed_images'])} photos"))
        blob = secrets.token_bytes(4 * 1024 * 1024)
        started = time.perf_counter()
        for _ in range(25):
            engine.keys.decrypt(engine.keys.encrypt(blob, b"bench"), b"bench")
        seconds = time.perf_counter() - started
        rows.append(("AES-GCM seal + open", f"{25 * 4 / seconds:.0f} MiB/s"))
    width = max(len(r[0]) for r in rows)
    print("\nRights, audit and upkeep timings (one run each, this machine)\n")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
