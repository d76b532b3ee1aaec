"""Store-side cost on PostgreSQL vs SQLite: row inserts by method and batch size, and an ingest of the shared faces.

Usage: python bench/store_cost.py [--url postgresql+psycopg://...] [--sections inserts ingest]
                                  [--people N] [--repeat 3]

Needs a PostgreSQL server (``eval "$(scripts/services.sh start postgres)"``; the URL defaults
to VULTUS_TEST_STORE_URL); each run makes databases of its own there and drops them.

- ``inserts``: ``faces`` rows (sealed 128-d templates, as ingest writes them) inserted in one
  transaction per batch, for batch sizes from one photo's faces to a migration's chunks: one
  INSERT per row (what ``add_image`` does), one executemany with RETURNING (the ids back, as
  ingest needs them), and COPY (ids taken from the sequence first, then one COPY stream).
  Microseconds per row, best of ``--repeat``.
- ``ingest``: a real ingest of the shared faces (VULTUS_TEST_DATA, every identity or the first
  ``--people``) into a SQLite deployment and into a PostgreSQL one, with every store call timed
  where it runs (transactions' commits included); then the same ``add_image`` calls replayed
  into a fresh store of each kind with nothing else running. Prints the seconds the store took.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import text

from vultus.crypto import Keyring
from vultus.store import iso, open_store, utcnow
from vultus.store.schema import faces
from vultus.testing.postgres import drop_database, fresh_database

BATCHES = (1, 4, 16, 64, 1000, 10000)


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


# -- inserts ------------------------------------------------------------------------------------


def _rows(store, image_id: int, n: int, rng: np.random.Generator) -> list[dict]:
    vectors = rng.normal(size=(n, 128)).astype(np.float32)
    return [{"image_id": image_id, "box_left": 0, "box_top": 0, "box_right": 10, "box_bottom": 10,
             "landmarks": "[[1.0,2.0]]", "det_score": 0.99, "embedding": store._seal(v), "model_id": "bench",
             "crop_key": f"crops/x/{n}.jpg", "restricted": 0} for v in vectors]


def _per_row(conn, rows: list[dict]) -> list[int]:
    return [conn.execute(faces.insert().values(**row)).inserted_primary_key[0] for row in rows]


def _executemany(conn, rows: list[dict]) -> list[int]:
    return list(conn.execute(faces.insert().returning(faces.c.id, sort_by_parameter_order=True), rows).scalars())


def _copy(conn, rows: list[dict]) -> list[int]:
    ids = list(conn.execute(text("SELECT nextval(pg_get_serial_sequence('faces', 'id')) FROM generate_series(1, :n)"),
                            {"n": len(rows)}).scalars())
    columns = ["id", *rows[0]]
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY faces ({', '.join(columns)}) FROM STDIN") as copy:
        for face_id, row in zip(ids, rows):
            copy.write_row([face_id, *row.values()])
    cursor.close()
    return ids


def inserts(server: str, repeat: int) -> str:
    url = fresh_database(server, "bench_inserts")
    folder = Path(tempfile.mkdtemp())
    store = open_store(url, Keyring.open(folder / "keys.json"))
    lite = open_store(f"sqlite:///{folder / 'lite.db'}", Keyring.open(folder / "keys.json"))
    rng = np.random.default_rng(0)
    table = []
    try:
        for s in (store, lite):  # image 1 in each, which every face row below belongs to
            source = s.add_source(name="b", controller="c", legal_basis="consent", purpose="p", retention_days=1,
                                  consent_ref=None)
            s.add_image(source_id=source.id, sha256="0" * 64, original_path="/b", size_bytes=1, width=1, height=1,
                        format="JPEG", ingested_at=iso(utcnow()), expires_at="2999", blob_key=None, new_faces=[])
        for batch in BATCHES:
            rows = {name: _rows(s, 1, batch, rng) for name, s in (("pg", store), ("sqlite", lite))}
            # Small batches: enough transactions for a steady figure, about 2000 rows each way.
            rounds = max(1, 2000 // batch) if batch < 1000 else 1
            result = [f"{batch}"]
            for name, s, method in (("sqlite", lite, _per_row), ("sqlite", lite, _executemany), ("pg", store, _per_row),
                                    ("pg", store, _executemany), ("pg", store, _copy)):
                best = float("inf")
                for _ in range(repeat):
                    start = time.perf_counter()
                    for _ in range(rounds):
                        with s.engine.begin() as conn:
                            got = method(conn, rows[name])
                    best = min(best, time.perf_counter() - start)
                    assert len(got) == batch
                result.append(f"{best / (rounds * batch) * 1e6:.0f}")
            table.append(tuple(result))
    finally:
        store.close()
        lite.close()
        drop_database(url, server_url=server)
    return _table(table, ("faces per transaction", "SQLite INSERT/row µs", "SQLite executemany µs",
                          "PG INSERT/row µs", "PG executemany µs", "PG COPY µs"))


# -- ingest ---------------------------------------------------------------------------------------


class _Timer:
    """Seconds spent in a store's calls (outermost calls only), and the add_image calls made."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth = 0
        self.added: list[dict] = []

    def wrap(self, owner: object, prefix: str = "") -> None:
        for name, member in inspect.getmembers(type(owner), callable):
            if name.startswith("_") or name in ("close",) or isinstance(member, type):
                continue
            setattr(owner, name, self._timed(getattr(owner, name), prefix + name))

    def _timed(self, method, label: str):  # noqa: ANN001, ANN202
        @functools.wraps(method)
        def timed(*args, **kwargs):
            if self.depth:
                return method(*args, **kwargs)
            if label == "add_image":
                self.added.append(kwargs)
            self.depth += 1
            start = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            finally:
                self.depth -= 1
                self.seconds[label] += time.perf_counter() - start
            if label == "transaction":
                return self._timed_block(result, label)
            if inspect.isgenerator(result):
                return self._timed_iter(result, label)
            return result
        return timed

    @contextmanager
    def _timed_block(self, block, label: str):  # noqa: ANN001
        start = time.perf_counter()
        block.__enter__()
        self.seconds[label] += time.perf_counter() - start
        try:
            yield
        except BaseException as exc:
            block.__exit__(type(exc), exc, exc.__traceback__)
            raise
        start = time.perf_counter()
        block.__exit__(None, None, None)  # the commit
        self.seconds[label] += time.perf_counter() - start

    def _timed_iter(self, generator, label: str):  # noqa: ANN001
        while True:
            start = time.perf_counter()
            try:
                item = next(generator)
            except StopIteration:
                return
            finally:
                self.seconds[label] += time.perf_counter() - start
            yield item


def _ingest(data: Path, settings: dict, photos: list[Path]) -> tuple[_Timer, float, int, int]:
    import vultus

    timer = _Timer()
    with vultus.open(data, actor="bench", **settings) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive research", retention="365d")
        for part in (engine.store, engine.store.registers, engine.store.people, engine.store.erasures):
            timer.wrap(part, "" if part is engine.store else type(part).__name__.lower() + ".")
        start = time.perf_counter()
        summary = engine.ingest(photos, source="news", workers=2)
        wall = time.perf_counter() - start
    return timer, wall, summary.images, summary.faces


def _replay(store, calls: list[dict]) -> float:
    source_id = store.add_source(name="news", controller="c", legal_basis="legitimate-interests", purpose="p",
                                 retention_days=365, consent_ref=None).id
    start = time.perf_counter()
    for kwargs in calls:
        store.known_sha256([kwargs["sha256"]])
        store.add_image(**{**kwargs, "source_id": source_id})
    return time.perf_counter() - start


def ingest(server: str, people: int | None) -> str:
    root = Path(os.environ.get("VULTUS_TEST_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    identities = sorted(p for p in (root / "faces").iterdir() if p.is_dir() and not p.name.startswith("_"))[:people]
    folder = Path(tempfile.mkdtemp())
    url = fresh_database(server, "bench_ingest_" + hashlib.sha256(str(folder).encode()).hexdigest()[:8])
    replay_url = fresh_database(server, "bench_replay_" + hashlib.sha256(str(folder).encode()).hexdigest()[:8])
    rows = []
    try:
        runs = {name: _ingest(folder / name, settings, identities)
                for name, settings in (("SQLite", {}), ("PostgreSQL", {"store": {"url": url}}))}
        for name, (timer, wall, images, n_faces) in runs.items():
            store_s = sum(timer.seconds.values())
            top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:3])
            rows.append((f"{name}: real ingest", f"{images} / {n_faces}", f"{wall:.1f}", f"{store_s:.2f}",
                         f"{store_s / max(images, 1) * 1e3:.1f}", top))
        calls = runs["SQLite"][0].added
        keys = Keyring.open(folder / "replay-keys.json")
        n_faces = sum(len(c["new_faces"]) for c in calls)
        for name, url_ in (("SQLite", f"sqlite:///{folder / 'replay.db'}"), ("PostgreSQL", replay_url)):
            store = open_store(url_, keys)
            try:
                seconds = _replay(store, calls)
            finally:
                store.close()
            rows.append((f"{name}: replayed add_image", f"{len(calls)} / {n_faces}", "", f"{seconds:.2f}",
                         f"{seconds / max(len(calls), 1) * 1e3:.1f}", "known_sha256 + add_image per photo"))
    finally:
        drop_database(url, server_url=server)
        drop_database(replay_url, server_url=server)
    return _table(rows, ("run", "photos / faces", "wall s", "store s", "store ms/photo", "largest store calls (s)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VULTUS_TEST_STORE_URL"),
                        help="a database on the PostgreSQL server (default: VULTUS_TEST_STORE_URL)")
    parser.add_argument("--sections", nargs="+", default=["inserts", "ingest"], choices=["inserts", "ingest"])
    parser.add_argument("--people", type=int, default=None, help="ingest only the first N identities")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.url:
        parser.error("no PostgreSQL: start one with `eval \"$(scripts/services.sh start postgres)\"` or pass --url")
    if "inserts" in args.sections:
        print("Inserting faces rows (sealed 128-d templates), one transaction per batch:\n")
        print(inserts(args.url, args.repeat), "\n")
    if "ingest" in args.sections:
        print("Store-side cost of an ingest of the shared faces (FAISS index, 2 workers):\n")
        print(ingest(args.url, args.people))


if __name__ == "__main__":
    main()
