"""Cost of `vultus migrate`: copying a store, building the target index and checking the copy.

Usage: python bench/migrate.py [--faces 20000 100000] [--to sqlite|memory]

A deployment on the fake embedder of vultus.testing (64-d templates, random here, sealed as
real ones are) gets ``--faces`` faces, one per photo, with an audit entry per 100 photos; it is
then moved into a new SQLite file and FAISS folder (``--to sqlite``) or the in-memory store and
index (``--to memory``). Prints, per size, the time of each step (the rows copied, the index
built, the checks: reading every table back for its sha256, the sample searches) and faces a second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import vultus
import vultus.testing
from vultus.store import AuditAction, NewFace, iso, utcnow


def _deployment(data: Path, faces: int) -> None:
    rng = np.random.default_rng(0)
    with vultus.open(data, detector="fake", embedder="fake", actor="bench") as engine:
        source = engine.add_source("bench", basis="legitimate-interests", purpose="testing", retention="30d")
        now = iso(utcnow())
        for n in range(faces):
            vector = rng.normal(size=vultus.testing.FAKE_SPEC.dim).astype(np.float32)
            face = NewFace((0, 0, 50, 50), (), 0.9, vector / np.linalg.norm(vector), vultus.testing.FAKE_SPEC.model_id,
                           None)
            engine.store.add_image(source_id=source.id, sha256=f"{n:064x}", original_path=f"/photos/{n}.jpg",
                                   size_bytes=1000, width=50, height=50, format="JPEG", ingested_at=now,
                                   expires_at="2999-01-01T00:00:00Z", blob_key=None, new_faces=[face])
            if n % 100 == 0:
                engine.store.log(actor="bench", action=AuditAction.INGEST, details={"images": 100})
        engine.gallery.remember_model()  # as an ingest does
        engine.reindex()


def _run(faces: int, to: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _deployment(data, faces)
        marks: list[tuple[str, float]] = []

        def progress(step: str, done: int, total: int) -> None:
            if not marks or marks[-1][0] != step:
                marks.append((step, time.perf_counter()))

        keeper = None
        if to == "memory":
            keeper = vultus.store.open_store("memory://bench", vultus.crypto.Keyring.open(data / "keys.json"))
            store, index = "memory://bench", "memory://"
        else:
            (Path(tmp) / "target").mkdir()
            store, index = f"sqlite:///{tmp}/target/moved.db", f"faiss://{tmp}/target/index"
        with vultus.open(data, detector="fake", actor="bench") as engine:
            started = time.perf_counter()
            report = engine.migrate(to_store=store, to_index=index, progress=progress)
            ended = time.perf_counter()
        if keeper is not None:
            keeper.close()
        assert report.ok, report.checks
        times = dict(marks)
        return {"copy": times["index"] - started, "index": times["verify"] - times["index"],
                "verify": ended - times["verify"], "total": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[20000])
    parser.add_argument("--to", choices=["sqlite", "memory"], default="sqlite")
    args = parser.parse_args()
    print(f"{'faces':>8}  {'copy s':>7}  {'index s':>7}  {'checks s':>8}  {'total s':>7}  {'faces/s':>8}")
    for faces in args.faces:
        t = _run(faces, args.to)
        print(f"{faces:>8,}  {t['copy']:>7.2f}  {t['index']:>7.2f}  {t['verify']:>8.2f}  {t['total']:>7.2f}  "
              f"{faces / t['total']:>8,.0f}")


if __name__ == "__main__":
    main()
