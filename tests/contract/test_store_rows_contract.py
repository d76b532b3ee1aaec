"""The bulk part of the MetadataStore contract (`vultus migrate`), kept by every store backend.

Whole tables read as stored, written back with their ids inside a transaction only (so a move
cut short leaves nothing), counted, and the ids each table gave out carried over. The backends
and their URLs are those of ``test_store_contract.py``; a second store of the same backend is
made in a folder of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_store_contract import FAKE, ON_SERVERS, URLS, _add_image, _add_video, _appearance, _schemes, _vector

from vultus.crypto import Keyring
from vultus.store import AuditAction, MetadataStore, open_store
from vultus.store.schema import metadata


@pytest.fixture(params=_schemes())
def url(request: pytest.FixtureRequest, tmp_path: Path):
    """A new store of each backend, as in test_store_contract.py (one on a server only when it is named)."""
    if request.param == FAKE:
        import vultus.testing  # noqa: F401 - registers memory://
    made = URLS[request.param](tmp_path)
    yield made
    if request.param in ON_SERVERS:
        from vultus.testing.postgres import drop_database

        drop_database(made, server_url=os.environ[ON_SERVERS[request.param]])
        drop_database(URLS[request.param](tmp_path / "other"), server_url=os.environ[ON_SERVERS[request.param]])


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    return Keyring.open(tmp_path / "keys.json")


@pytest.fixture
def stores(url: str, keys: Keyring, tmp_path: Path):
    """(a store with a source, a photo's two faces, a video of two, the newest photo erased, audit entries; an empty one)."""
    full = open_store(url, keys)
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    empty = open_store(URLS[url.split("://", 1)[0]](other_folder), keys)
    full.add_source(name="s", controller="c", legal_basis="consent", purpose="p", retention_days=10, consent_ref=None,
                    purposes=["archive"])
    _add_image(full, "a" * 64, [_vector(1), _vector(2)])
    _add_video(full, "c" * 64, [_appearance(0, [4, 5], 1.0, 3.0)])
    doomed = _add_image(full, "b" * 64, [_vector(3)])
    with full.transaction():
        full.delete_images(full.images_of_faces(doomed))  # the highest photo id is gone, its id not to be reused
        full.log(actor="t", action=AuditAction.ERASURE, details={"faces": doomed})
    full.log(actor="t", action=AuditAction.SEARCH,
             details={"candidates": [{"image_sha256": "a" * 64, "face_id": 1}]})
    full.set_meta("calibration:m", '{"threshold": 0.5}')
    yield full, empty
    full.close()
    empty.close()


def _rows(store: MetadataStore, table: str) -> list[dict]:
    return [row for part in store.export_rows(table, chunk=2) for row in part]


def test_counts_cover_every_table_and_a_new_store_holds_only_its_schema_facts(stores):
    full, empty = stores
    counts = empty.row_counts()
    assert set(counts) == set(metadata.tables)
    assert {name for name, n in counts.items() if n} <= {"meta"}
    assert {row["key"] for row in _rows(empty, "meta")} <= {"schema_version", "audit_head"}
    filled = full.row_counts()
    assert filled["images"] == 2 and filled["faces"] == 4 and filled["audit"] == 2 and filled["search_hits"] == 1


def test_rows_copied_with_their_ids_are_the_same_rows_and_their_templates_still_open(stores):
    full, empty = stores
    with empty.transaction():
        for table in (t.name for t in metadata.sorted_tables):
            if table == "meta":
                for row in _rows(full, "meta"):
                    empty.set_meta(row["key"], row["value"])
            else:
                assert empty.import_rows(table, _rows(full, table)) == full.row_counts()[table]
    for table in metadata.tables:
        assert _rows(empty, table) == _rows(full, table), table
    ids, vectors = next(empty.face_vectors())
    assert np.allclose(vectors[ids.tolist().index(1)], _vector(1), atol=1e-6)
    # The chain and its keyed head came along: it verifies there as it does here.
    assert empty.verify_audit().ok and empty.verify_audit().checked == 2
    assert [e.id for e in empty.searches_hitting(["a" * 64])] == [2]
    assert empty.list_sources()[0].purposes == ("archive",)


def test_rows_are_written_only_inside_a_transaction_and_go_with_its_rollback(stores):
    full, empty = stores
    with pytest.raises(RuntimeError, match="transaction"):
        empty.import_rows("sources", _rows(full, "sources"))
    with pytest.raises(KeyboardInterrupt):
        with empty.transaction():
            empty.import_rows("sources", _rows(full, "sources"))
            empty.import_rows("images", _rows(full, "images"))
            raise KeyboardInterrupt
    assert {name for name, n in empty.row_counts().items() if n} <= {"meta"}


def test_unknown_tables_and_columns_are_refused(stores):
    full, empty = stores
    with pytest.raises(ValueError, match="no table"):
        list(full.export_rows("nope"))
    with empty.transaction():
        with pytest.raises(ValueError, match="no column"):
            empty.import_rows("sources", [{**_rows(full, "sources")[0], "extra": 1}])


def test_the_ids_a_table_gave_out_are_carried_over_and_never_given_again(stores):
    full, empty = stores
    sequences = full.id_sequences()
    # The erased photo and its face had the highest ids: the tables gave out more than they hold.
    assert sequences["images"] == 3 > max(r["id"] for r in _rows(full, "images"))
    assert sequences["faces"] == 5 > max(r["id"] for r in _rows(full, "faces"))
    with empty.transaction():
        for table in ("sources", "images", "faces"):
            empty.import_rows(table, _rows(full, table))
        empty.set_id_sequences(sequences)
        empty.set_id_sequences({"images": 1})  # never lowers
    assert empty.id_sequences()["images"] == 3 and empty.id_sequences()["faces"] == 5
    [face_id] = _add_image(empty, "d" * 64, [_vector(9)])
    assert face_id == 6 and max(r["id"] for r in _rows(empty, "images")) == 4
