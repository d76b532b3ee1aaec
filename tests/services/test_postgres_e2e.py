"""A deployment on PostgreSQL finds what one on SQLite finds, and erases as it does, on real faces.

The same photos of a few shared identities are ingested into a SQLite deployment and into one
whose store is PostgreSQL (``store={"url": ...}``), both with a FAISS index. Every photo, as a
probe, gets the same candidates from both (paths and similarities; ids may differ). An erasure
by face on PostgreSQL leaves the person unfound, the rows gone from the database (and VACUUMed),
and a receipt and audit chain that verify.

Needs VULTUS_TEST_STORE_URL (``eval "$(scripts/services.sh start postgres)"``) and the shared
photos (VULTUS_TEST_DATA).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import vultus
from vultus.testing.postgres import drop_database, fresh_database

pytestmark = pytest.mark.services

PEOPLE = ["facerec_obama", "facerec_biden", "deepface_jack", "deepface_sundar", "facerec_kit_harington"]


@pytest.fixture(scope="module")
def pg_url(pg_server: str, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("pg-e2e")
    made = fresh_database(pg_server, "e2e_" + hashlib.sha256(str(folder).encode()).hexdigest()[:16])
    yield made
    drop_database(made, server_url=pg_server)


@pytest.fixture(scope="module")
def galleries(tmp_path_factory: pytest.TempPathFactory, faces_root: Path, pg_url: str) -> dict[str, dict]:
    """The same photos ingested into a SQLite deployment and a PostgreSQL one (FAISS index both)."""
    root = tmp_path_factory.mktemp("stores")
    made = {}
    for name, store in (("sqlite", {}), ("postgresql", {"store": {"url": pg_url}})):
        data = root / name
        with vultus.open(data, actor="setup", **store) as engine:
            engine.add_source("news", basis="legitimate-interests", purpose="archive research", retention="365d")
            summary = engine.ingest([faces_root / p for p in PEOPLE], source="news", workers=2)
        made[name] = {"data": data, "settings": store, "summary": summary}
    return made


def _photos(faces_root: Path, person: str) -> list[Path]:
    return sorted((faces_root / person).iterdir())


def _results(engine, photo: Path) -> list[tuple[str, float]]:
    found = engine.search(photo, purpose="archive research", case="PG-1").candidates
    return [(c.path, round(c.similarity, 5)) for c in found]


def test_postgresql_gives_the_same_search_results_as_sqlite(galleries: dict, faces_root: Path):
    lite, pg = galleries["sqlite"], galleries["postgresql"]
    assert (pg["summary"].images, pg["summary"].faces) == (lite["summary"].images, lite["summary"].faces) > (0, 0)
    probes = [photo for person in PEOPLE for photo in _photos(faces_root, person)]
    with vultus.open(lite["data"]) as a, vultus.open(pg["data"], **pg["settings"]) as b:
        assert a.stats().faces == b.stats().faces == b.stats().index_vectors
        for probe in probes:
            assert _results(b, probe) == _results(a, probe), probe
        # Each probe finds its own person first, on both.
        assert all(_results(b, p) and Path(_results(b, p)[0][0]).parent.name == p.parent.name for p in probes)


def test_erasure_by_face_on_postgresql_leaves_the_person_unfound_and_the_audit_verifying(
        galleries: dict, faces_root: Path, pg_url: str):
    pg = galleries["postgresql"]
    obama = _photos(faces_root, "facerec_obama")
    removed = {hashlib.sha256(p.read_bytes()).hexdigest() for p in obama}
    with vultus.open(pg["data"], actor="dpo", **pg["settings"]) as engine:
        others = {p: _results(engine, p) for person in PEOPLE[1:] for p in _photos(faces_root, person)}
        match = engine.match_person(obama[0])
        assert {Path(hit.original_path).parent.name for hit, _ in match.faces} == {"facerec_obama"}
        receipt = engine.erase(match)
        assert set(receipt["removed_images"]) == removed
        assert engine.check_receipt(receipt) == "a valid signature by this deployment's key"
        for probe in obama[1:]:
            assert not [path for path, _ in _results(engine, probe) if "facerec_obama" in path]
        assert {p: _results(engine, p) for p in others} == others  # everyone else's results unchanged
        verified = engine.verify_audit()
        assert verified.ok and verified.checked == engine.store.audit_count()
    db = create_engine(make_url(pg_url), poolclass=NullPool)
    try:
        with db.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM images WHERE sha256 = ANY(:s)"), {"s": sorted(removed)}).scalar()
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
            dead = conn.execute(text("SELECT dead_tuple_count FROM pgstattuple('faces')")).scalar()
            conn.commit()
    finally:
        db.dispose()
    assert left == 0 and dead == 0  # the rows are gone, and VACUUM took their dead tuples


def test_vultus_migrate_moves_the_sqlite_gallery_into_postgresql_with_the_same_results(
        galleries: dict, faces_root: Path, pg_server: str, tmp_path: Path):
    """`vultus migrate` from the SQLite deployment into a fresh PostgreSQL database and a new FAISS
    folder: every check passes, the target finds what the source finds, and its chain verifies.
    (It once failed there: a streamed read joined to the move's transaction made PostgreSQL run
    the move's audit entry through a server-side cursor.)"""
    lite = galleries["sqlite"]
    target = fresh_database(pg_server, "moved_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16])
    index = f"faiss://{tmp_path / 'moved-index'}"
    try:
        probes = [photo for person in PEOPLE for photo in _photos(faces_root, person)[:2]]
        with vultus.open(lite["data"], actor="dpo") as engine:
            before = [_results(engine, probe) for probe in probes]
            report = engine.migrate(to_store=target, to_index=index)
        assert report.ok and [c.name for c in report.checks if not c.ok] == []
        with vultus.open(lite["data"], actor="dpo", store={"url": target}, index={"url": index}) as moved:
            assert moved.stats().faces == moved.stats().index_vectors == report.index_vectors > 0
            assert moved.audit_entries()[-1].action == "deployment.migrate"
            assert [_results(moved, probe) for probe in probes] == before
            assert moved.verify_audit().ok
            # Every table's ids went on from the copied ones: a new source does not collide with a copied
            # row (sources, whose SQLite ids have no AUTOINCREMENT, once did).
            moved.add_source("after-the-move", basis="legitimate-interests", purpose="archive research",
                             retention="365d")
            assert {s.name for s in moved.store.list_sources()} == {"news", "after-the-move"}
    finally:
        drop_database(target, server_url=pg_server)
