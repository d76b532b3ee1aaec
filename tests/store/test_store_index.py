"""Store and index parts: transactions, idempotency, atomic saves, reconciliation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.gallery import reconcile as _reconcile
from vultus.config import Settings
from vultus.errors import IndexCorruptError, SettingsError, SourceExistsError, UnknownSourceError
from vultus.index import IndexTarget, index_schemes, open_index
from vultus.store import BlobStore, NewFace, Store
from vultus.store.schema import SCHEMA_VERSION


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    return Keyring.open(tmp_path / "keys.json")


@pytest.fixture
def store(tmp_path: Path, keys: Keyring) -> Store:
    s = Store(tmp_path / "v.db", keys)
    yield s
    s.close()


def _source(store: Store):
    return store.add_source(
        name="s", controller="c", legal_basis="consent", purpose="p", retention_days=10, consent_ref=None
    )


def _face(seed: int) -> NewFace:
    vec = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return NewFace((1, 2, 30, 40), [(1.0, 2.0)] * 5, 0.5, vec, "m1", None)


def _add(store: Store, source_id: int, sha: str, faces: list[NewFace]):
    return store.add_image(
        source_id=source_id, sha256=sha, original_path=f"/x/{sha[:4]}.jpg", size_bytes=10, width=100,
        height=100, format="JPEG", ingested_at="2026-01-01T00:00:00Z", expires_at="2026-01-11T00:00:00Z",
        blob_key=None, new_faces=faces,
    )


def test_sources_are_unique_and_looked_up_by_name(store: Store):
    src = _source(store)
    assert store.get_source("s").id == src.id
    with pytest.raises(SourceExistsError):
        _source(store)
    with pytest.raises(UnknownSourceError, match="vultus source add"):
        store.get_source("missing")


def test_an_image_and_its_faces_are_stored_once(store: Store):
    src = _source(store)
    ids = _add(store, src.id, "a" * 64, [_face(1), _face(2)])
    assert len(ids) == 2
    assert _add(store, src.id, "a" * 64, [_face(3)]) is None  # same sha256: nothing stored
    assert store.counts()["faces"] == 2
    got = dict(zip(*next(store.face_vectors())))
    assert np.allclose(got[ids[0]], _face(1).embedding)
    hit = store.hydrate(ids)[ids[1]]
    assert hit.source == "s" and hit.legal_basis == "consent" and hit.box == (1, 2, 30, 40)
    assert store.model_ids() == {"m1"}


def test_sqlite_runs_in_wal_with_secure_delete(store: Store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_blob_keys_are_validated_and_writes_atomic(tmp_path: Path, keys: Keyring):
    blobs = BlobStore(tmp_path / "blobs", keys)
    key = blobs.image_key("ab" * 32, "jpg")
    blobs.put(key, b"one")
    blobs.put(key, b"two")
    assert blobs.get(key) == b"two" and blobs.keys() == [key]
    assert b"two" not in blobs.raw(key)  # sealed on disk
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")


#: Backends whose URL names a folder; those on a server (milvus) keep the contract in tests/contract
#: and tests/services, against the server that scripts/services.sh starts.
FOLDER_SCHEMES = [s for s in index_schemes() if s != "milvus"]


@pytest.mark.parametrize("encrypted", [True, False])
@pytest.mark.parametrize("backend", FOLDER_SCHEMES)
def test_index_adds_searches_removes_and_persists(tmp_path: Path, backend: str, encrypted: bool, keys: Keyring):
    """The contract every vector index backend must keep."""
    target = IndexTarget(f"{backend}://{tmp_path / 'i'}", 4, keys if encrypted else None)
    index = open_index(target)
    vectors = np.eye(4, dtype=np.float32)
    index.add(np.array([10, 11, 12, 13]), vectors)
    distances, ids = index.search(vectors[:1], 2)
    assert ids[0][0] == 10 and distances[0][0] == pytest.approx(0.0)
    assert distances[0][1] == pytest.approx(np.sqrt(2.0), rel=1e-5)  # Euclidean, not squared
    near, near_ids = index.range_search(np.array([1.0, 0.1, 0, 0], dtype=np.float32), 1.4)
    assert near_ids.tolist() == [10, 11, 12, 13][: len(near_ids)] and len(near_ids) == 2
    assert near[0] < near[1] < 1.4
    assert index.remove(np.array([10, 99])) == 1
    index.flush()
    again = open_index(target)
    assert sorted(again.ids().tolist()) == [11, 12, 13]
    assert again.search(vectors[:1], 1)[1][0][0] != 10
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("backend", FOLDER_SCHEMES)
def test_a_corrupt_index_file_says_how_to_rebuild(tmp_path: Path, backend: str):
    target = IndexTarget(f"{backend}://{tmp_path / 'i'}", 4)
    index = open_index(target)
    index.add(np.array([1]), np.ones((1, 4), np.float32))
    index.flush()
    for path in (tmp_path / "i").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError, match="vultus reindex"):
        open_index(target)


def test_a_faiss_url_names_a_folder_holding_faces_faiss(tmp_path: Path):
    from vultus.index import default_index_url, index_backend
    from vultus.index.faiss_index import index_file

    assert index_file(f"faiss://{tmp_path / 'idx'}") == index_file(f"faiss:///{tmp_path / 'idx'}") == tmp_path / "idx" / "faces.faiss"
    assert default_index_url(tmp_path / "data") == f"faiss://{tmp_path / 'data' / 'index'}"
    for bad, message in (("faiss://host/x", "faiss:///FOLDER"), ("faiss:relative", "faiss:///FOLDER"),
                         (f"faiss://{tmp_path / 'none' / 'idx'}", "does not exist")):
        with pytest.raises(SettingsError, match=message):
            index_file(bad)
    index = open_index(IndexTarget(f"faiss://{tmp_path / 'idx'}", 4))
    index.add(np.array([1, 2]), np.eye(2, 4, dtype=np.float32))
    assert index.size_on_disk() == 0 and not (tmp_path / "idx").exists()
    index.flush()
    assert index.size_on_disk() == (tmp_path / "idx" / "faces.faiss").stat().st_size > 0
    assert (tmp_path / "idx").stat().st_mode & 0o777 == 0o700  # made owner-only
    # After a crash, the temporary files of a write cut short go; the index stays.
    leftovers = [tmp_path / "idx" / ".tmp-abc.faiss", tmp_path / "idx" / "faces.faiss.previous"]
    for left in leftovers:
        left.write_bytes(b"templates")
    index_backend(f"faiss://{tmp_path / 'idx'}").sweep(f"faiss://{tmp_path / 'idx'}")
    assert not any(left.exists() for left in leftovers)
    assert sorted(open_index(IndexTarget(f"faiss://{tmp_path / 'idx'}", 4)).ids().tolist()) == [1, 2]


def test_reconcile_makes_the_index_match_the_store(store: Store, tmp_path: Path):
    src = _source(store)
    ids = _add(store, src.id, "b" * 64, [_face(1), _face(2)])
    index = open_index(IndexTarget(f"faiss://{tmp_path / 'i'}", 128))
    index.add(np.array([999]), np.zeros((1, 128), np.float32))  # stray entry
    assert _reconcile(index, store) is True
    assert sorted(index.ids().tolist()) == sorted(ids)
    assert _reconcile(index, store) is False


def test_deleting_an_image_cascades_to_its_faces(store: Store):
    src = _source(store)
    _add(store, src.id, "c" * 64, [_face(1)])
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("DELETE FROM images")
    conn.commit()
    conn.close()
    assert store.counts()["faces"] == 0


def test_one_writer_at_a_time(tmp_path: Path, faces_root: Path):
    import vultus
    from vultus.errors import DataDirLockedError

    with vultus.open(tmp_path / "d") as first, vultus.open(tmp_path / "d") as second:
        first.add_source("s", basis="consent", purpose="p", retention="1d")
        with first.deployment.writing():
            with pytest.raises(DataDirLockedError, match="Wait for it to finish"):
                second.ingest([faces_root / "_formats" / "einstein.png"], source="s", workers=1)
        summary = second.ingest([faces_root / "_formats" / "einstein.png"], source="s", workers=1)
        assert summary.images == 1


def test_a_long_lived_engine_sees_what_another_one_ingested(tmp_path: Path, faces_root: Path):
    import vultus

    probe = faces_root / "facerec_obama" / "1.jpg"
    with vultus.open(tmp_path / "d") as reader, vultus.open(tmp_path / "d") as writer:
        writer.add_source("s", basis="consent", purpose="p", retention="1d")
        writer.ingest([faces_root / "facerec_obama" / "2.jpg"], source="s", workers=1)
        assert len(reader.search(probe, purpose="p", case="c").candidates) == 1
        writer.ingest([faces_root / "facerec_obama" / "3.jpg"], source="s", workers=1)
        assert len(reader.search(probe, purpose="p", case="c").candidates) == 2
        assert reader.stats().index_vectors == 2


def test_a_dead_worker_stops_the_ingest_with_advice_and_keeps_what_was_stored(tmp_path: Path, faces_root: Path):
    import multiprocessing
    import os
    import signal

    import vultus
    from vultus.errors import WorkerCrashedError

    def kill_a_worker(done: int, total: int, faces: int) -> None:
        if done == 2:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)

    with vultus.open(tmp_path / "d") as engine:
        engine.add_source("s", basis="consent", purpose="p", retention="1d")
        with pytest.raises(WorkerCrashedError, match="run the same command again"):
            engine.ingest([faces_root / "deepface_angelina"], source="s", workers=2, progress=kill_a_worker)
    with vultus.open(tmp_path / "d") as engine:
        summary = engine.ingest([faces_root / "deepface_angelina"], source="s", workers=1)
        stats = engine.stats()
        assert summary.duplicates >= 1 and stats.images == 8
        assert stats.faces == stats.index_vectors


# -- large galleries: IVF ---------------------------------------------------------------------


def _clustered(count: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    """Templates shaped like a gallery: people (centres) with several photos each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count // 4, dim)).astype(np.float32) * 0.12
    return centres[rng.integers(0, len(centres), count)] + rng.standard_normal((count, dim)).astype(np.float32) * 0.04


def test_large_gallery_switches_to_ivf_keeping_recall_and_physical_removal(tmp_path: Path):
    from vultus.index.faiss_index import MIN_IVF, FaissIndex

    count = MIN_IVF + 2_000
    vectors = _clustered(count)
    ids = np.arange(1, count + 1, dtype=np.int64) * 3  # ids are the store's, not positions
    index = FaissIndex(tmp_path / "faces.faiss", 128)
    index.add(ids, vectors)
    assert not index.fit_size(count + 1, lambda: (ids, vectors)) and index.kind == "exact"
    assert index.fit_size(MIN_IVF, lambda: (ids, vectors))
    assert index.kind == "ivf" and 1 <= index.nprobe
    assert sorted(index.ids().tolist()) == ids.tolist()
    # Recall@10 against exact search on fresh queries near stored templates.
    rng = np.random.default_rng(9)
    queries = vectors[rng.choice(count, 300, replace=False)] + rng.standard_normal((300, 128)).astype(np.float32) * 0.04
    exact = np.argsort(((queries[:, None, :] - vectors[None]) ** 2).sum(axis=2), axis=1)[:, :10]
    _, found = index.search(queries, 10)
    recall = np.mean([len(set(ids[e]) & set(f)) / 10 for e, f in zip(exact, found)])
    assert recall >= 0.98, recall
    # A search for a purpose: only the faces of the sources that allow it (here a random 5%, or
    # all but them), with recall@10 as searches count it (the true ten among the first 20).
    from vultus.index import RERANK, IdFilter

    kept = ids[rng.random(count) < 0.05]
    for id_filter, let in ((IdFilter(kept), np.isin(ids, kept)), (IdFilter(kept, exclude=True), ~np.isin(ids, kept))):
        truth = ids[let][np.argsort(((queries[:, None, :] - vectors[let][None]) ** 2).sum(axis=2), axis=1)[:, :10]]
        _, found = index.search(queries, RERANK * 10, id_filter)
        assert set(found[found >= 0].tolist()) <= set(ids[let].tolist())  # never a face left out
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
        assert recall >= 0.98, (id_filter.exclude, recall)
    # Erasure: the codes go, the id is never returned again, also after saving and loading.
    gone = ids[:50]
    assert index.remove(gone) == 50 and len(index) == count - 50
    index.flush()
    again = FaissIndex(tmp_path / "faces.faiss", 128)
    assert again.kind == "ivf" and again.nprobe == index.nprobe and len(again) == count - 50
    assert not set(gone.tolist()) & set(again.ids().tolist())
    _, found = again.search(vectors[:50], 5)
    assert not set(gone.tolist()) & set(found.ravel().tolist())
    # Rights requests search every list: the range search finds what exact search finds.
    probe = vectors[500]
    radius = float(np.sort(np.linalg.norm(vectors[50:] - probe, axis=1))[20]) + 1e-3
    within = set(ids[50:][np.linalg.norm(vectors[50:] - probe, axis=1) <= radius - 2e-3].tolist())
    _, hits = again.range_search(probe, radius)
    assert within <= set(hits.tolist())
    # Shrinking below the threshold goes back to exact search, from the store's vectors.
    keep = ids[50:MIN_IVF - 100]
    again.remove(ids[MIN_IVF - 100 :])
    assert again.fit_size(MIN_IVF, lambda: (keep, vectors[50:MIN_IVF - 100]))
    assert again.kind == "exact" and sorted(again.ids().tolist()) == keep.tolist()


def test_small_galleries_stay_exact(engine):
    assert engine.stats().index_kind == "exact"
    with pytest.raises(SettingsError, match="ivf_threshold"):
        Settings(ivf_threshold=-1).validate()


def test_searches_through_an_approximate_index_rank_by_exact_templates(engine, faces_root: Path):
    from vultus.search import search_photo

    engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_biden", faces_root / "deepface_jeff"],
                  source="test", workers=1)
    probe = (faces_root / "facerec_obama" / "1.jpg").read_bytes()
    common = dict(analyzer=engine.analyzer, store=engine.store, purpose="p", case="c", top=3, threshold=0.0,
                  face=None, name="probe", max_pixels=10**8, actor="t", purpose_required=True, calibration=None)
    exact = search_photo(probe, index=engine._open_index(writable=False), **common)

    from vultus.index import Capabilities

    class Coarse:
        """An approximate index: right candidates, wrong order, distances off by its codes."""

        capabilities = Capabilities(exact=False, physical_removal=True, persistent=True, description="ivf")

        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def search(self, vectors, k):
            distances, ids = self.inner.search(vectors, k)
            return distances[:, ::-1] + 0.05, ids[:, ::-1]

    approximate = search_photo(probe, index=Coarse(engine._open_index(writable=False)), **common)
    assert [c.face_id for c in approximate.candidates] == [c.face_id for c in exact.candidates]
    assert [c.similarity for c in approximate.candidates] == [c.similarity for c in exact.candidates]


# -- migrations ---------------------------------------------------------------------------------


def _schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name != 'alembic_version' "
                                   "AND name NOT LIKE 'sqlite_autoindex_alembic%'"))


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def _legacy(path: Path, *, version: str = "3") -> None:
    """A database as Vultus wrote it before migrations: schema version 3's tables, a schema version, no revision."""
    import importlib

    from sqlalchemy import create_engine

    baseline = importlib.import_module("vultus.store.migrations.versions.0003_baseline")
    engine = create_engine(f"sqlite:///{path}")
    baseline.tables.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?), ('audit_head', '')", (version,))
        conn.execute("INSERT INTO sources (name, controller, legal_basis, purpose, retention_days, created_at) "
                     "VALUES ('old', 'c', 'consent', 'p', 5, '2026-01-01T00:00:00Z')")


def test_a_new_database_gets_every_revision_and_exactly_the_schema(tmp_path: Path, keys: Keyring):
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from vultus.store.migrate import MIGRATIONS
    from vultus.store.schema import metadata

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_VERSION
    Store(tmp_path / "v.db", keys).close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(SCHEMA_VERSION,)]
    # The revisions must build what schema.py declares, table by table and index by index.
    engine = create_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    metadata.create_all(engine)
    engine.dispose()
    assert _schema(tmp_path / "v.db") == _schema(tmp_path / "declared.db")


def test_a_database_from_before_migrations_is_stamped_and_keeps_its_rows(tmp_path: Path, keys: Keyring):
    _legacy(tmp_path / "v.db")
    with sqlite3.connect(tmp_path / "v.db") as conn:
        # Early databases at schema version 3 lack these; Vultus has always added them on open.
        conn.execute("DROP TABLE erasures")
        conn.execute("DROP TABLE public_attempts")
    store = Store(tmp_path / "v.db", keys)
    try:
        assert [s.name for s in store.list_sources()] == ["old"]
        assert store.erasures.pending() == []
    finally:
        store.close()

    with sqlite3.connect(tmp_path / "v.db") as conn:
        # Stamped as the baseline, then upgraded through every later revision.
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT count(*) FROM public_attempts").fetchone() == (0,)


def test_revision_4_makes_the_old_rows_photos_and_keeps_ids_templates_and_counters(tmp_path: Path, keys: Keyring):
    _legacy(tmp_path / "v.db")
    with sqlite3.connect(tmp_path / "v.db") as conn:
        for image_id in (1, 2):
            conn.execute("INSERT INTO images (id, sha256, source_id, original_path, size_bytes, width, height, format, "
                         "ingested_at, expires_at, face_count, blob_key) VALUES (?, ?, 1, ?, 10, 20, 30, 'JPEG', "
                         "'2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 1, ?)",
                         (image_id, f"{image_id}" * 64, f"/p/{image_id}.jpg", f"images/11/{image_id}.jpg"))
            conn.execute("INSERT INTO faces (id, image_id, box_left, box_top, box_right, box_bottom, landmarks, "
                         "det_score, embedding, model_id, crop_key, restricted) VALUES (?, ?, 1, 2, 3, 4, '[]', 0.9, "
                         "?, 'm1', NULL, ?)", (image_id * 10, image_id, bytes([image_id]) * 40, image_id - 1))
        # The newest image and face were erased: their ids must not come back.
        conn.execute("DELETE FROM faces WHERE id = 20")
        conn.execute("DELETE FROM images WHERE id = 2")
        before = conn.execute("SELECT * FROM faces").fetchall()
    store = Store(tmp_path / "v.db", keys)
    try:
        [hit] = store.hydrate([10]).values()
        assert (hit.media, hit.duration, hit.appearance, hit.media_time, hit.still_key) == ("photo", None, None, None, None)
        [new_face] = store.add_image(source_id=1, sha256="3" * 64, original_path="/p/3.jpg", size_bytes=1, width=1,
                                     height=1, format="JPEG", ingested_at="2026-01-02T00:00:00Z",
                                     expires_at="2026-02-02T00:00:00Z", blob_key=None, new_faces=[_face(1)])
        assert new_face == 21
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        assert conn.execute("SELECT id, media, duration FROM images ORDER BY id").fetchall() == [
            (1, "photo", None), (3, "photo", None)]
        assert conn.execute("SELECT id, image_id, box_left, box_top, box_right, box_bottom, landmarks, det_score, "
                            "embedding, model_id, crop_key, restricted FROM faces WHERE id = 10").fetchall() == before
        assert conn.execute("SELECT appearance, media_time, time_start, time_end, seen_at, still_key FROM faces "
                            "WHERE id = 10").fetchall() == [(None,) * 6]
        # Upgraded through revision 4 to the newest.
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(SCHEMA_VERSION,)]
        assert not [name for (name,) in conn.execute("SELECT name FROM sqlite_master") if name.startswith("v3_copy")]


def test_revision_5_gives_each_source_the_category_closest_to_its_purpose_text(tmp_path: Path, keys: Keyring):
    _legacy(tmp_path / "v.db")  # its source 'old' has the purpose "p": no rule applies
    texts = {"press": "Newsroom picture desk", "police": "investigating fraud and crime", "search": "Missing persons",
             "shoots": "wedding and event photos for guests", "museum": "historical archive research"}
    with sqlite3.connect(tmp_path / "v.db") as conn:
        for name, purpose in texts.items():
            conn.execute("INSERT INTO sources (name, controller, legal_basis, purpose, retention_days, created_at) "
                         "VALUES (?, 'c', 'consent', ?, 5, '2026-01-01T00:00:00Z')", (name, purpose))
        before = conn.execute("SELECT * FROM sources ORDER BY id").fetchall()
    store = Store(tmp_path / "v.db", keys)
    try:
        assert {s.name: s.purposes for s in store.list_sources()} == {
            "old": ("archive",), "press": ("journalism",), "police": ("investigation",),
            "search": ("missing-persons",), "shoots": ("event-delivery",), "museum": ("archive",)}
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        assert conn.execute("SELECT * FROM sources ORDER BY id").fetchall() == before  # the table itself is untouched
        assert conn.execute("SELECT count(*) FROM source_purposes").fetchone() == (6,)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('99')",
         "newer Vultus: its database is at revision 99.*Upgrade Vultus"),
        ("UPDATE meta SET value = '2' WHERE key = 'schema_version'", "schema version 2.*no migration from it"),
        ("DROP TABLE faces", "lacks table faces"),
        ("ALTER TABLE users DROP COLUMN password_hash", "lacks column users.password_hash"),
        ("DELETE FROM meta", "not a Vultus database"),
    ],
)
def test_a_database_this_vultus_cannot_migrate_is_refused_unchanged(tmp_path: Path, keys: Keyring, damage: str,
                                                                    message: str):
    from vultus.errors import DataDirError

    _legacy(tmp_path / "v.db")
    with sqlite3.connect(tmp_path / "v.db") as conn:
        conn.executescript(damage)
    before = _dump(tmp_path / "v.db")
    with pytest.raises(DataDirError, match=message):
        Store(tmp_path / "v.db", keys)
    assert _dump(tmp_path / "v.db") == before


_NEXT_REVISION = '''
from alembic import op
from sqlalchemy import Column, Integer

revision = "{next}"
down_revision = "{head}"


def upgrade():
    op.add_column("sources", Column("stars", Integer))
    op.create_table("extra", Column("id", Integer, primary_key=True))
    op.execute("UPDATE meta SET value = '{next}' WHERE key = 'schema_version'")
    {fail}
'''


@pytest.mark.parametrize("fails", [False, True])
def test_a_later_revision_applies_whole_or_not_at_all(tmp_path: Path, keys: Keyring, fails: bool):
    import shutil

    from vultus.errors import DataDirError
    from vultus.store.migrate import MIGRATIONS, upgrade_database
    from vultus.store.repository import _on_connect

    # The revision after this release's newest, whichever that is.
    head, later = SCHEMA_VERSION, str(int(SCHEMA_VERSION) + 1)
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    fail = "raise RuntimeError('the revision broke')" if fails else "pass"
    (migrations / "versions" / f"{int(later):04d}_next.py").write_text(
        _NEXT_REVISION.format(fail=fail, head=head, next=later))
    Store(tmp_path / "v.db", keys).close()
    before = _dump(tmp_path / "v.db")
    if fails:
        with pytest.raises(DataDirError, match=f"to revision {later} failed.*the revision broke.*left as it was"):
            upgrade_database(tmp_path / "v.db", _on_connect, migrations=migrations, head=later)
        assert _dump(tmp_path / "v.db") == before
        return
    upgrade_database(tmp_path / "v.db", _on_connect, migrations=migrations, head=later)
    with sqlite3.connect(tmp_path / "v.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(later,)]
        assert "stars" in [row[1] for row in conn.execute("PRAGMA table_info(sources)")]
        assert conn.execute("SELECT count(*) FROM extra").fetchone() == (0,)
    # This Vultus (its own head) then refuses the database a newer one migrated.
    with pytest.raises(DataDirError, match="newer Vultus"):
        Store(tmp_path / "v.db", keys)
