"""What is PostgreSQL's own in the store: the advisory writer lock, VACUUM after an erasure, sealed
BYTEA templates, ids never reused, the migrations' PostgreSQL branch, the database checks.

Needs a running PostgreSQL named by VULTUS_TEST_STORE_URL (``eval "$(scripts/services.sh start
postgres)"``); each test gets a database of its own there. The store contract
(tests/contract/test_store_contract.py) runs over PostgreSQL too when the variable is set.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from vultus.crypto import Keyring
from vultus.errors import DataDirError, DataDirLockedError, SettingsError
from vultus.store import AuditAction, NewFace, PostgresStore, iso, open_store, store_exists, utcnow
from vultus.store.dialects import POSTGRESQL
from vultus.store.schema import faces
from vultus.testing.postgres import drop_database, fresh_database

pytestmark = pytest.mark.services

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def db(pg_server: str, tmp_path: Path):
    made = fresh_database(pg_server, "pgstore_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16])
    yield made
    drop_database(made, server_url=pg_server)


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    return Keyring.open(tmp_path / "keys.json")


@pytest.fixture
def store(db: str, keys: Keyring):
    opened = open_store(db, keys)
    opened.add_source(name="s", controller="c", legal_basis="consent", purpose="p", retention_days=10, consent_ref=None)
    yield opened
    opened.close()


def _sql(url: str, query: str, **params):
    engine = create_engine(make_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(query), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def _add(store, sha: str, seeds: list[int], source: str = "s") -> list[int]:
    new = [NewFace(box=(0, 0, 10, 10), landmarks=[], det_score=1.0, embedding=_vector(s), model_id="m", crop_key=None)
           for s in seeds]
    return store.add_image(source_id=store.get_source(source).id, sha256=sha, original_path=f"/p/{sha[:8]}.jpg",
                           size_bytes=1, width=10, height=10, format="JPEG", ingested_at=iso(utcnow()),
                           expires_at="2999-01-01T00:00:00Z", blob_key=None, new_faces=new)


# -- the writer lock ------------------------------------------------------------------------------


def test_one_writer_holds_the_advisory_lock_at_a_time_across_stores(db: str, keys: Keyring):
    first, second = open_store(db, keys), open_store(db, keys)
    try:
        release = first.hold_writer()
        with pytest.raises(DataDirLockedError, match="another"):
            second.hold_writer()
        [(holders,)] = _sql(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        assert holders == 1
        release()
        second.hold_writer()()  # free again once released: taken and given back
    finally:
        first.close()
        second.close()


def test_a_killed_writer_leaves_no_lock_behind(db: str, keys: Keyring, tmp_path: Path):
    script = (
        "import sys, time\n"
        "from vultus.crypto import Keyring\n"
        "from vultus.store import open_store\n"
        f"store = open_store({db!r}, Keyring.open({str(tmp_path / 'keys.json')!r}))\n"
        "release = store.hold_writer()  # kept: the lock lives as long as its connection\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(SRC)})
    store = open_store(db, keys)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(DataDirLockedError):
            store.hold_writer()
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The server ends the killed process's session when its socket closes; the lock goes with it.
        for _ in range(100):
            try:
                store.hold_writer()()
                break
            except DataDirLockedError:
                time.sleep(0.1)
        else:
            pytest.fail("the killed writer's advisory lock was never released")
    finally:
        child.kill()
        store.close()


def test_a_deployment_writing_holds_the_store_lock_for_other_hosts(db: str, tmp_path: Path):
    import vultus

    # Two data directories on one store stand for two hosts (each its own lock file).
    with vultus.open(tmp_path / "a", store={"url": db}, key_file=tmp_path / "keys.json") as one, \
            vultus.open(tmp_path / "b", store={"url": db}, key_file=tmp_path / "keys.json") as other:
        with one.deployment.writing():
            with pytest.raises(DataDirLockedError, match="PostgreSQL store"):
                with other.deployment.writing():
                    pass
        with other.deployment.writing():  # released when the first writer ended
            pass


# -- erasure is physical ---------------------------------------------------------------------------


def test_purge_after_an_erasure_vacuums_the_dead_tuples_away(store: PostgresStore, db: str):
    _sql(db, "CREATE EXTENSION IF NOT EXISTS pgstattuple")
    _sql(db, "CREATE EXTENSION IF NOT EXISTS pageinspect")
    kept = _add(store, "a" * 64, [1])
    gone = _add(store, "b" * 64, [2, 3])
    with store.engine.connect() as conn:
        sealed = conn.execute(text("SELECT embedding FROM faces WHERE id = :i"), {"i": gone[0]}).scalar_one()
    with store.transaction():
        store.delete_images(store.images_of_faces(gone))
        store.log(actor="t", action=AuditAction.ERASURE, details={"faces": len(gone)})

    def dead(table: str) -> int:
        return _sql(db, f"SELECT dead_tuple_count FROM pgstattuple('{table}')")[0][0]

    def tuples_holding(needle: bytes) -> int:
        # Every tuple still on the heap's pages, dead or alive, whose bytes hold ``needle``.
        rows = _sql(db, "SELECT t_data FROM generate_series(0, pg_relation_size('faces') / 8192 - 1) AS b, "
                        "heap_page_items(get_raw_page('faces', b::int)) WHERE t_data IS NOT NULL")
        return sum(needle in bytes(row[0]) for row in rows)

    assert dead("faces") == 2 and dead("images") == 1  # what a DELETE leaves: the rows, marked dead
    assert tuples_holding(bytes(sealed)[:64]) == 1
    store.purge_deleted()
    assert dead("faces") == 0 and dead("images") == 0
    assert tuples_holding(bytes(sealed)[:64]) == 0
    assert [row.face_id for row in store.hydrate(kept).values()] == kept and store.verify_audit().ok


def test_purge_refuses_to_run_inside_the_deleting_transaction(store: PostgresStore):
    with pytest.raises(RuntimeError, match="after the transaction"):
        with store.transaction():
            store.purge_deleted()


def test_purge_refuses_when_the_role_may_not_vacuum_the_tables(store: PostgresStore, db: str, keys: Keyring):
    _sql(db, "DROP ROLE IF EXISTS vultus_reader")
    _sql(db, "CREATE ROLE vultus_reader")
    try:
        _sql(db, "GRANT ALL ON ALL TABLES IN SCHEMA public TO vultus_reader")
        _sql(db, "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO vultus_reader")
        # Connected as vultus, acting as the role (the trial server lets only vultus log in).
        as_reader = make_url(db).update_query_dict({"options": "-crole=vultus_reader"})
        other = open_store(as_reader.render_as_string(hide_password=False), keys)
        try:
            with pytest.raises(DataDirError, match="may not VACUUM.*owner"):
                other.purge_deleted()
        finally:
            other.close()
        store.purge_deleted()  # the owner may
    finally:
        _sql(db, "DROP OWNED BY vultus_reader")
        _sql(db, "DROP ROLE vultus_reader")


# -- sealed templates and ids ----------------------------------------------------------------------


def test_templates_are_sealed_in_bytea_columns(store: PostgresStore, db: str, keys: Keyring):
    [face_id] = _add(store, "a" * 64, [7])
    sealed = ("faces.embedding", "people.centroid", "people.name", "suppressions.template", "requests.template",
              "requests.contact")
    types = dict(_sql(db, "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'public'"))
    assert {column: types.get(column) for column in sealed} == {column: "bytea" for column in sealed}
    [(stored,)] = _sql(db, "SELECT embedding FROM faces WHERE id = :i", i=face_id)
    plain = _vector(7).astype("<f4").tobytes()
    assert plain[:16] not in bytes(stored) and len(bytes(stored)) > len(plain)
    assert np.frombuffer(keys.decrypt(bytes(stored), b"embedding"), dtype="<f4").tolist() == _vector(7).tolist()


def test_ids_are_bigint_and_never_handed_out_twice(store: PostgresStore, db: str):
    kinds = dict(_sql(db, "SELECT table_name, data_type FROM information_schema.columns WHERE column_name = 'id' "
                          "AND table_name IN ('faces', 'images', 'audit', 'people')"))
    assert kinds == {"faces": "bigint", "images": "bigint", "audit": "bigint", "people": "bigint"}
    first = _add(store, "a" * 64, [1, 2])
    with store.transaction():  # the newest face and its photo go: their ids stay used
        store.delete_images(store.images_of_faces(first))
    store.purge_deleted()
    with pytest.raises(ZeroDivisionError):  # a rolled-back insert burns the ids it took
        with store.transaction():
            burnt = _add(store, "b" * 64, [3])
            1 / 0
    again = _add(store, "c" * 64, [4])
    assert min(again) > max(first + burnt)
    # A bulk copy with ids given (a migration) moves the sequence past them.
    with store.engine.begin() as conn:
        row = {c.name: None for c in faces.columns}
        row.update(id=10_000, image_id=store.images_of_faces(again)[0], box_left=0, box_top=0, box_right=1,
                   box_bottom=1, landmarks="[]", det_score=1.0, embedding=store._seal(_vector(5)), model_id="m",
                   restricted=0)
        POSTGRESQL.bulk_insert(conn, faces, [row])
        POSTGRESQL.sync_ids(conn, [faces])
    assert min(_add(store, "d" * 64, [6])) > 10_000


def test_audit_ids_have_no_gap_after_a_rollback(store: PostgresStore):
    store.log(actor="t", action=AuditAction.SEARCH, details={})
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            store.log(actor="t", action=AuditAction.SEARCH, details={})
            1 / 0
    store.log(actor="t", action=AuditAction.SEARCH, details={})
    assert [e.id for e in store.audit_entries()] == [1, 2] and store.verify_audit().ok


def test_a_duplicate_photo_inside_a_transaction_leaves_the_transaction_usable(store: PostgresStore):
    _add(store, "a" * 64, [1])
    with store.transaction():
        store.set_meta("k", "before")
        assert _add(store, "a" * 64, [2]) is None  # a savepoint undoes the failed insert alone
        store.set_meta("k", "after")
        store.log(actor="t", action=AuditAction.INGEST, details={"duplicates": 1})
    assert store.get_meta("k") == "after" and store.counts()["faces"] == 1 and store.verify_audit().ok


def test_the_public_page_limit_holds_under_concurrent_attempts(store: PostgresStore):
    results: list[int | None] = []
    start = threading.Barrier(8)

    def attempt(n: int) -> None:
        start.wait()
        results.append(store.registers.reserve_public_attempt(
            contact="a@example.org", client=f"10.0.0.{n}", at="2026-01-01T00:00:00Z", since="2025-12-31T00:00:00Z",
            limit=3))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [r for r in results if r is not None]
    assert len(results) == 8 and len(accepted) == 3 and len(set(accepted)) == 3


# -- the schema: migrations and checks -------------------------------------------------------------


def _columns(url: str) -> list[tuple]:
    return _sql(url, "SELECT table_name, column_name, data_type, is_nullable, column_default "
                     "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2")


def test_a_revision_3_database_is_upgraded_to_the_same_schema_as_a_new_one(pg_server: str, db: str, keys: Keyring,
                                                                          tmp_path: Path):
    from alembic import command
    from alembic.config import Config

    from vultus.store.migrate import MIGRATIONS

    engine = create_engine(make_url(db), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "3")
            conn.execute(text("INSERT INTO sources (name, controller, legal_basis, purpose, retention_days, created_at) "
                              "VALUES ('old', 'c', 'consent', 'police witnesses', 1, 'x')"))
            conn.execute(text("INSERT INTO images (sha256, source_id, original_path, size_bytes, width, height, format, "
                              "ingested_at, expires_at, face_count) VALUES (:s, 1, '/p', 1, 1, 1, 'JPEG', 'x', 'y', 0)"),
                         {"s": "e" * 64})
    finally:
        engine.dispose()
    upgraded = open_store(db, keys)
    try:
        assert upgraded.get_source("old").purposes == ("investigation",)  # revision 5's rule ran
        assert _add(upgraded, "f" * 64, [1], "old") and max(upgraded.images_of_faces(upgraded.searchable_face_ids())) == 2
    finally:
        upgraded.close()
    new = fresh_database(pg_server, "pgnew_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16])
    try:
        open_store(new, keys).close()
        assert _columns(db) == _columns(new)
        assert _sql(db, "SELECT version_num FROM alembic_version") == _sql(new, "SELECT version_num FROM alembic_version")
    finally:
        drop_database(new, server_url=pg_server)


def test_a_database_that_does_not_sort_as_bytes_is_refused_unchanged(pg_server: str, db: str, keys: Keyring):
    name = make_url(db).database + "_icu"
    _sql(pg_server, f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                 "LC_COLLATE 'C' LC_CTYPE 'C'")
    icu = make_url(db).set(database=name).render_as_string(hide_password=False)
    try:
        with pytest.raises(DataDirError, match="needs the C collation.*CREATE DATABASE"):
            open_store(icu, keys)
        assert _sql(icu, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    finally:
        drop_database(icu, server_url=pg_server)


def test_an_unreachable_server_or_missing_database_says_what_to_do(db: str, keys: Keyring):
    closed = make_url(db).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(DataDirError, match="Cannot reach the PostgreSQL store.*scripts/services.sh start postgres"):
        store_exists(closed)
    with pytest.raises(DataDirError, match="Cannot reach"):
        open_store(closed, keys)
    missing = make_url(db).set(database="no_such_db").render_as_string(hide_password=False)
    with pytest.raises(DataDirError, match="has no database 'no_such_db'.*CREATE DATABASE"):
        open_store(missing, keys)
    with pytest.raises(SettingsError, match="names no database"):
        open_store("postgresql+psycopg://vultus@127.0.0.1:5432", keys)
    # A password given in the URL is never shown in a message.
    with pytest.raises(DataDirError) as caught:
        open_store(make_url(closed).set(password="s3cret-pw").render_as_string(hide_password=False), keys)
    assert "s3cret-pw" not in str(caught.value)


def test_an_empty_database_is_new_and_an_opened_one_is_not(db: str, keys: Keyring):
    assert not store_exists(db)
    open_store(db, keys).close()
    assert store_exists(db)
