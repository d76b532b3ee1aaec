"""`vultus migrate` on the fake models: a gallery moved into another store and index arrives intact.

The deployment of the ``to_move`` fixture holds every kind of row (sources with their categories
and clustering, photos, a video appearance, named and forgotten people, a search, an erasure, an
objection, a restriction, an account, a calibration). It is moved into a second SQLite file and
FAISS folder (a real second backend), and into the in-memory store and index of vultus.testing;
the target is then opened as the deployment and must show the same things.
"""

from __future__ import annotations

import json
from pathlib import Path

import vultus
from vultus.calibration import calibration_of
from vultus.migration import TABLES, redact
from vultus.store.schema import metadata


def _targets(tmp_path: Path) -> tuple[str, str]:
    folder = tmp_path / "target"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'moved.db'}", f"faiss://{folder / 'index'}"


def _open(engine, store: str, index: str):
    return vultus.open(engine.data_dir, detector="fake", actor="unit-test", store={"url": store}, index={"url": index})


def _state(engine, fakes) -> dict:
    """What a user can see of a deployment (audit entries first: listing people adds some)."""
    audit = [e.as_dict() for e in engine.audit_entries()]
    search = engine.search(fakes.square_photo(["red"]), purpose="unit test", case="M-2", category="archive")
    return {
        "audit": audit,
        "search": [(c.face_id, round(c.similarity, 6), c.media, c.video_time, c.source) for c in search.candidates],
        "sources": [(s.id, s.name, s.purposes, s.image_count, s.face_count, s.legal_basis, s.created_at)
                    for s in engine.sources()],
        "clustering": [(c.source, c.enabled_at, c.enabled_by, c.note) for c in engine.people.clustering_sources()],
        "people": sorted((p["id"], p["name"], p["count"], sorted(f["face_id"] for f in p["faces"]))
                         for p in engine.people.list()),
        "requests": [r.as_dict() for r in engine.requests()],
        "suppressions": engine.suppressions(),
        "receipts": [r.as_dict() for r in engine.receipts()],
        "receipt bodies": [engine.receipt(r.id) for r in engine.receipts() if r.completed_at],
        "users": [(u.id, u.name, u.role, u.created_at) for u in engine.users()],
        "restricted": engine.store.restricted_face_ids().tolist(),
        "counts": engine.store.counts(),
        "calibration": calibration_of(engine.store, engine.gallery.embedder.model_id),
        "blobs": engine.store.blob_keys(),
    }


def test_migrate_knows_every_table_of_the_schema_in_an_order_its_foreign_keys_allow():
    # A table added to store/schema.py fails here until migration.TABLES says how it travels.
    assert sorted(TABLES) == sorted(metadata.tables) and len(TABLES) == len(set(TABLES))
    for position, name in enumerate(TABLES):
        for key in metadata.tables[name].foreign_keys:
            assert TABLES.index(key.column.table.name) <= position, f"{name} is copied before {key.column.table.name}"


def test_a_gallery_moves_into_another_sqlite_file_and_faiss_folder_intact(to_move, fakes, tmp_path):
    store_url, index_url = _targets(tmp_path)
    before = _state(to_move, fakes)
    assert before["people"] and before["requests"] and before["suppressions"] and before["receipt bodies"]
    assert before["restricted"] and before["calibration"] and before["counts"]["appearances"] == 2
    steps = []
    report = to_move.migrate(to_store=store_url, to_index=index_url, progress=lambda s, d, t: steps.append(s))
    assert report.ok and [c.name for c in report.checks if not c.ok] == []
    assert set(TABLES) | {"index", "verify"} == set(steps)
    searchable = before["counts"]["faces"] - len(before["restricted"])
    assert report.index_vectors == searchable and report.rows["faces"] == before["counts"]["faces"]
    # Audited on the source, after everything it had.
    moved_here = to_move.audit_entries()[-1]
    assert moved_here.action == "deployment.migrate" and moved_here.id == report.audit["source"]
    assert moved_here.details["side"] == "source" and moved_here.details["to"] == {"store": store_url, "index": index_url}
    assert to_move.verify_audit().ok
    source_audit = [e.as_dict() for e in to_move.audit_entries()][:-1]
    to_move.close()
    with _open(to_move, store_url, index_url) as target:
        entries = [e.as_dict() for e in target.audit_entries()]
        # Every entry verbatim, hashes included, then the move itself; the chain verifies there.
        assert entries[:-1] == source_audit and entries[-1]["action"] == "deployment.migrate"
        assert entries[-1]["id"] == report.audit["target"] and entries[-1]["details"]["side"] == "target"
        assert target.verify_audit().ok
        # The index was built in the target folder, not rebuilt on open.
        assert (tmp_path / "target" / "index" / "faces.faiss").is_file()
        assert target.stats().index_vectors == searchable
        after = _state(target, fakes)
        for key in before:
            if key != "audit":
                assert after[key] == before[key], key
        # Tokens and passwords travelled as their hashes, receipts as signed.
        assert target.authenticate(to_move.token).name == "dora"
        assert target.authenticate_password("dora", "a long enough password").name == "dora"
        assert {target.check_receipt(body) for body in after["receipt bodies"]} == {"a valid signature by this deployment's key"}
        # The objection is still honoured, an erasure still physical, new ids never reused.
        green = tmp_path / "green-again.jpg"
        green.write_bytes(fakes.square_photo([fakes.Square("green", 77, 77)]))
        assert target.ingest([green], source="test", workers=1).suppressed_faces == 1
        receipt = target.erase(target.match_person(fakes.square_photo(["cyan"])))
        assert receipt["faces_removed"] == 1
        cyan = target.search(fakes.square_photo(["cyan"]), purpose="unit test", case="M-3", category="journalism")
        assert cyan.candidates == []
        assert target.verify_audit().ok


def test_a_gallery_moves_into_the_memory_store_and_a_memory_index(to_move, fakes, tmp_path):
    from vultus.store import open_store

    keeper = open_store("memory://moved", to_move.keys)  # an in-memory store lives while one is open
    try:
        before = _state(to_move, fakes)
        folder = tmp_path / "memory-index"
        folder.mkdir()
        report = to_move.migrate(to_store="memory://moved", to_index=f"memory://{folder}")
        assert report.ok and (folder / "memory-index.npz").is_file()
        to_move.close()
        with _open(to_move, "memory://moved", f"memory://{folder}") as target:
            assert target.verify_audit().ok and target.audit_entries()[-1].action == "deployment.migrate"
            after = _state(target, fakes)
            assert {k: v for k, v in after.items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"}
    finally:
        keeper.close()


def test_the_checks_print_as_a_table_and_as_json(to_move, tmp_path):
    from click.testing import CliRunner

    from vultus.cli import cli

    to_move.close()
    store_url, index_url = _targets(tmp_path)
    out = CliRunner().invoke(cli, ["--data", str(to_move.data_dir), "--detector", "fake", "migrate", "--to-store",
                                   store_url, "--to-index", index_url, "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "rows: faces" in out.output and "audit chain" in out.output and "FAILED" not in out.output
    assert f"export VULTUS_STORE__URL='{store_url}'" in out.output
    assert f"export VULTUS_INDEX__URL='{index_url}'" in out.output
    again = tmp_path / "json"
    again.mkdir()
    out = CliRunner().invoke(cli, ["--data", str(to_move.data_dir), "--detector", "fake", "migrate", "--to-store",
                                   f"sqlite:///{again / 'j.db'}", "--to-index", f"faiss://{again / 'index'}", "--json",
                                   "--sample", "5"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["ok"] and summary["rows"]["faces"] > 0 and summary["audit"]["target"] == summary["audit"]["source"]
    searches = next(c for c in summary["checks"] if c["check"].startswith("searches"))
    assert searches["ok"] and "5 faces" in searches["check"]


def test_passwords_in_urls_are_never_printed_or_audited():
    assert redact("postgresql+psycopg://vultus:s3cret@db.example:5432/vultus") == \
        "postgresql+psycopg://vultus:***@db.example:5432/vultus"
    assert redact("milvus://127.0.0.1:19530") == "milvus://127.0.0.1:19530"
