"""A deployment on PostgreSQL + Milvus finds what one on SQLite + FAISS finds, and erases as it does.

Every identity folder of the shared faces is ingested into a SQLite + FAISS deployment, which
`vultus migrate` then copies into a fresh PostgreSQL database and a Milvus collection prefix of
the test's own. The leave-one-out search over the shared faces gives the same rank-1 and
recall@10 on both (acceptance 1 of the services issue), and every probe the same candidates.
Photos ingested straight into the services (through the Ray head) are found as on SQLite + FAISS. An
erasure by face leaves the person found by no search, their templates returned by no Milvus
query or search, and a receipt and an audit chain that verify (acceptance 2).

Needs VULTUS_TEST_STORE_URL, VULTUS_TEST_INDEX_URL and VULTUS_TEST_RAY_ADDRESS (``eval
"$(scripts/services.sh start postgres milvus ray)"``) and the shared photos (VULTUS_TEST_DATA).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import vultus
from vultus.errors import MigrationError
from vultus.evaluation import identity_photos, leave_one_out
from vultus.testing.milvus import collections_under, drop_prefix
from vultus.testing.postgres import drop_database, fresh_database

pytestmark = pytest.mark.services

SOURCE = "identities"


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory, faces_root: Path, pg_server: str, milvus_server: str):
    """The SQLite + FAISS deployment of every identity folder, and its copy on PostgreSQL + Milvus."""
    root = tmp_path_factory.mktemp("distributed")
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    store_url = fresh_database(pg_server, "dist_" + tag)
    index_url = f"{milvus_server.rstrip('/')}/d{tag}"
    lite = root / "lite"
    with vultus.open(lite, actor="setup") as engine:
        engine.add_source(SOURCE, basis="legitimate-interests", purpose="testing", retention="30d")
        summary = engine.ingest([faces_root / name for name in identity_photos(faces_root)], source=SOURCE, workers=2)
        report = engine.migrate(to_store=store_url, to_index=index_url)
    assert report.ok, [c for c in report.checks if not c.ok]
    # The key file and the blobs stay in a data directory: the copy gets a folder of its own.
    services = root / "services"
    shutil.copytree(lite, services)
    settings = {"store": {"url": store_url}, "index": {"url": index_url}}
    yield {"lite": lite, "services": services, "settings": settings, "summary": summary, "index_url": index_url}
    drop_prefix(index_url)
    drop_database(store_url, server_url=pg_server)


@pytest.fixture(scope="module")
def detect_once():
    """Each probe photo's faces found once for every search of this module.

    Detection is the same model on the same photo whichever store and index are behind it, and
    it is most of a search's time: four passes over the shared faces would take minutes.
    """
    from vultus.faces import pipeline

    original, seen = pipeline.FaceAnalyzer.analyze, {}

    def analyze(self, rgb):  # noqa: ANN001, ANN202
        picture = pipeline._picture(rgb)
        pixels = picture.reduced if picture.reduced is not None else picture.rgb
        key = (picture.width, picture.height, hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest())
        if key not in seen:
            seen[key] = original(self, rgb)
        return seen[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(pipeline.FaceAnalyzer, "analyze", analyze)
    yield
    patch.undo()


def _results(engine, photo: Path, source: str = SOURCE) -> list[tuple[str, float]]:  # noqa: ANN001 - Engine
    allowed = engine.store.get_source(source).purposes  # searched for a category the source allows, as leave_one_out is
    found = engine.search(photo, purpose="evaluation", case="DIST-1", threshold=0.0, top=10,
                          category=allowed[0] if allowed else None)
    return [(f"{Path(c.path).parent.name}/{Path(c.path).name}", round(c.similarity, 5))
            for c in found.candidates if c.source == source]


def test_the_leave_one_out_search_gives_the_same_rank1_and_recall_on_postgresql_and_milvus(
        deployments: dict, faces_root: Path, detect_once: None):
    with vultus.open(deployments["lite"]) as lite:
        expected = leave_one_out(lite, faces_root, source=SOURCE)
        # Every fourth photo's candidates compared one by one (the leave-one-out compares every probe's rank).
        probes = [p for files in identity_photos(faces_root).values() for p in files][::4]
        before = {p: _results(lite, p) for p in probes}
    with vultus.open(deployments["services"], **deployments["settings"]) as services:
        stats = services.stats()
        assert stats.faces == stats.index_vectors == deployments["summary"].faces > 0
        assert "milvus" in stats.index_kind
        got = leave_one_out(services, faces_root, source=SOURCE)
        # Approximate (HNSW) candidates are re-ranked by the store's exact templates: the same order
        # and similarities as the exact FAISS index, probe by probe.
        assert {p: _results(services, p) for p in probes} == before
    assert got.probes == expected.probes > 90
    assert (got.rank1_hits, got.recall_at_k, got.misses) == (expected.rank1_hits, expected.recall_at_k, expected.misses)
    assert got.rank1 >= 0.97 and got.recall_at_k >= 0.95


def test_photos_ingested_into_postgresql_and_milvus_are_found_as_on_sqlite_and_faiss(
        deployments: dict, faces_root: Path, ray_head: str):
    """Into the services through the Ray head, as a deployment beyond one machine ingests; on the
    process pool into SQLite + FAISS."""
    group = sorted((faces_root / "_group").iterdir())[:4]
    found = {}
    on_ray = {**deployments["settings"], "ingest_executor": "ray", "ray_address": ray_head}
    # A reader that opened the shared index before the ingest finds what the ingest added.
    with vultus.open(deployments["services"], actor="investigator", **deployments["settings"]) as reader:
        assert reader.search(group[0], purpose="evaluation", case="DIST-2").candidates is not None
        for name, settings in (("lite", {}), ("services", on_ray)):
            with vultus.open(deployments[name], actor="archivist", **settings) as engine:
                engine.add_source("events", basis="legitimate-interests", purpose="testing", retention="30d")
                summary = engine.ingest(group, source="events", workers=2)
                stats = engine.stats()
                assert stats.faces == stats.index_vectors
                found[name] = (summary.images, summary.faces, [_results(engine, p, "events") for p in group])
        assert [_results(reader, p, "events") for p in group] == found["services"][2]
    assert found["services"] == found["lite"]
    assert found["services"][1] >= 8 and all(found["services"][2])


def test_a_move_into_its_own_milvus_collections_written_otherwise_is_refused(deployments: dict, tmp_path: Path):
    own = deployments["index_url"]
    where = urlsplit(own)
    written_otherwise = f"milvus://someone:pw@{where.hostname}:{where.port}{where.path}/?ef=96"
    with vultus.open(deployments["services"], actor="dpo", **deployments["settings"]) as engine:
        with pytest.raises(MigrationError, match="this deployment's own index"):
            engine.migrate(to_store=f"sqlite:///{tmp_path / 'copy.db'}", to_index=written_otherwise)
    assert not (tmp_path / "copy.db").exists()


def test_erasure_by_face_on_postgresql_and_milvus_leaves_no_search_and_no_milvus_query_finding_the_person(
        deployments: dict, faces_root: Path):
    from pymilvus import Collection, connections

    person = "facerec_obama"
    photos = sorted((faces_root / person).iterdir())
    with vultus.open(deployments["services"], actor="dpo", **deployments["settings"]) as engine:
        others = {p: _results(engine, p) for p in sorted((faces_root / "facerec_biden").iterdir())}
        match = engine.match_person(photos[0])
        assert {Path(hit.original_path).parent.name for hit, _ in match.faces} == {person}
        face_ids = sorted(hit.face_id for hit, _ in match.faces)
        templates = np.concatenate([v for _, v in engine.store.face_vectors(face_ids)])
        receipt = engine.erase(match)
        assert set(receipt["removed_images"]) == {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}
        assert engine.check_receipt(receipt) == "a valid signature by this deployment's key"
        for probe in photos:
            assert not [name for name, _ in _results(engine, probe) if name.startswith(f"{person}/")]
        assert {p: _results(engine, p) for p in others} == others  # everyone else's results unchanged
        verified = engine.verify_audit()
        assert verified.ok and verified.checked == engine.store.audit_count()
    # Asked directly, Milvus has none of the person's templates: not by id, not by its own vector.
    names = collections_under(deployments["index_url"])
    assert len(names) == 1  # one model, one generation: no older copy left beside it
    using = next(alias for alias, _ in connections.list_connections() if alias.startswith("vultus-"))
    collection = Collection(names[0], using=using)
    assert collection.query(expr=f"id in {face_ids}", output_fields=["id"], consistency_level="Strong") == []
    hits = collection.search(templates, "vector", {"metric_type": "L2", "params": {"ef": 64}}, limit=10,
                             consistency_level="Strong")
    assert not {int(i) for row in hits for i in row.ids} & set(face_ids)
    assert len(templates) == len(face_ids) >= 3
