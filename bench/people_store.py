"""Cost of keeping people groups in the store: a full run, placing at ingest, a re-run, a correction, an erasure's settling.

Usage: python bench/people_store.py [--faces 1000 5000] [--per-person 10]

On synthetic templates (128-d, people about 1.0 apart, their photos about 0.35 apart, as
dlib's are), stored in a temporary SQLite data directory's store with sealed templates, times
one ``people cluster`` run, a second run (nothing to move), placing 100 new faces as ingest
does, a merge, and settling the groups after an erasure of one person's photos; prints a
table. The clustering method's own quality is measured by ``bench/people.py``; this is the
store and use-case overhead around it, with the method in ``vultus.faces.clustering``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vultus.crypto import Keyring
from vultus.erasures import erase_images
from vultus.people import Placer, cluster_source, merge_people, set_clustering
from vultus.store import AuditAction, BlobStore, NewFace, iso, open_store, utcnow

MODEL = "bench-128"


class _NoIndex:
    """Erasure flushes an index; the bench has none to keep."""

    def remove(self, ids) -> None:  # noqa: ANN001
        pass

    def flush(self) -> None:
        pass


def _gallery(n: int, per_person: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    people = max(1, n // per_person)
    centres = rng.normal(0.0, 1.0 / 16, size=(people, 128))
    labels = np.arange(n) % people
    return (centres[labels] + rng.normal(0.0, 0.022, size=(n, 128))).astype(np.float32), labels


def _store_faces(store, source_id: int, vectors: np.ndarray, start: int) -> list[int]:
    ids = []
    now = utcnow()
    with store.transaction():
        for n, vector in enumerate(vectors):
            face = NewFace((0, 0, 10, 10), (), 0.99, vector, MODEL, None)
            ids += store.add_image(source_id=source_id, sha256=f"{start + n:064x}", original_path=f"/p/{start + n}.jpg",
                                   size_bytes=1, width=10, height=10, format="JPEG", ingested_at=iso(now),
                                   expires_at=iso(now), blob_key=None, new_faces=[face])
    return ids


def run(n: int, per_person: int, folder: Path) -> list[tuple[str, str]]:
    rng = np.random.default_rng(n)
    keys = Keyring.open(folder / "keys.json")
    store = open_store(f"sqlite:///{folder / 'vultus.db'}", keys)
    try:
        source = store.add_source(name="s", controller="c", legal_basis="consent", purpose="p", retention_days=30,
                                  consent_ref=None)
        set_clustering(store, actor="bench", source="s", enabled=True)
        vectors, labels = _gallery(n, per_person, rng)
        ids = _store_faces(store, source.id, vectors, 0)
        rows = []

        def timed(label: str, func, *args, **kwargs):  # noqa: ANN001, ANN202
            started = time.perf_counter()
            result = func(*args, **kwargs)
            rows.append((f"{n} faces", label, f"{(time.perf_counter() - started) * 1000:.0f} ms"))
            return result

        first = timed("people cluster (first run)", cluster_source, store, source="s", actor="bench", model_id=MODEL,
                      distance=0.6)
        timed("people cluster (again, nothing moves)", cluster_source, store, source="s", actor="bench",
              model_id=MODEL, distance=0.6)
        new, _ = _gallery(100, per_person, np.random.default_rng(n))  # the same people, new photos
        new_ids = _store_faces(store, source.id, new + rng.normal(0.0, 0.01, size=new.shape).astype(np.float32), n)
        placer = Placer(store, source, model_id=MODEL, distance=0.6, actor="bench")
        timed("place 100 new faces (ingest)", placer.place, new_ids, list(new))
        people = [p.id for p in store.people.list(source.id)]
        timed("merge two people", merge_people, store, people[:2], actor="bench")
        images = store.images_of_faces([i for i, label in zip(ids, labels) if label == labels[-1]])
        timed("erase one person's photos (settle included)", erase_images, images, kind="erasure", store=store,
              blobs=BlobStore(folder / "blobs", keys), index=_NoIndex(), keys=keys,
              audit=("bench", AuditAction.ERASURE, {}))
        rows.append((f"{n} faces", f"groups {first['people']}, grouped {first['grouped']}, "
                     f"placed {placer.placed} of 100", ""))
        return rows
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--per-person", type=int, default=10)
    args = parser.parse_args(argv)
    table = []
    for n in args.faces:
        with tempfile.TemporaryDirectory() as folder:
            table += run(n, args.per_person, Path(folder))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
