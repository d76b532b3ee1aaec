"""What the Milvus index promises beyond the index contract: an erasure is physical in its segments.

The contract checks that a removed face comes back from no query and no search; Milvus hides a
deleted row at once, so that alone would pass without a compaction. Here the segments Milvus
keeps on disk (its persistent segment info) must hold exactly the faces that remain, also when
the delete was made by another process (or by this one before a crash) and when the face was
stored a moment before its erasure. Needs VULTUS_TEST_INDEX_URL (``eval "$(scripts/services.sh
start milvus)"``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from vultus.errors import IndexUnavailableError, SettingsError
from vultus.index import IndexTarget, open_index
from vultus.testing.milvus import drop_prefix

pytestmark = pytest.mark.services

DIM = 16


@pytest.fixture
def url(tmp_path: Path, milvus_server: str):
    made = f"{milvus_server.rstrip('/')}/m{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]}"
    yield made
    drop_prefix(made)


def _open(url: str, **kwargs):  # noqa: ANN202 - a MilvusIndex
    return open_index(IndexTarget(url, DIM, None, "milvus-test-model"), **kwargs)


def _stored_rows(index) -> int:  # noqa: ANN001
    """Rows in the segments Milvus has persisted for the index's collection (deleted ones count until compacted)."""
    from pymilvus import connections

    segments = connections._fetch_handler(index._using).get_persistent_segment_infos(index._base)
    return sum(s.num_rows for s in segments)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_an_erasure_whose_delete_another_process_made_is_still_compacted(url: str):
    first = _open(url)
    ids = np.arange(100, 150, dtype=np.int64)
    first.add(ids, _vectors(50))
    first.flush()
    assert first.remove(ids[:5]) == 5  # ... and the process stops before its flush
    second = _open(url)
    assert second.remove(ids[:5]) == 0  # already gone from every query
    second.flush()
    assert len(second) == 45 and _stored_rows(second) == 45  # rewritten without them, not only hidden
    assert not set(second.ids().tolist()) & set(ids[:5].tolist())


def test_a_face_erased_just_after_it_was_stored_is_gone_from_the_segments(url: str):
    index = _open(url)
    index.add(np.arange(1, 31, dtype=np.int64), _vectors(30, seed=1))
    index.flush()
    index.add(np.array([99], dtype=np.int64), _vectors(1, seed=2))
    assert index.remove(np.array([99], dtype=np.int64)) == 1
    index.flush()
    assert _stored_rows(index) == 30 and 99 not in index.ids()


def test_a_reader_opening_before_the_first_build_lands_leaves_that_build_alone(url: str):
    """`vultus migrate` fills a first generation that no alias points at yet; a `vultus serve`
    opened meanwhile must not replace it with an empty one (it used to drop it)."""
    build = _open(url, fresh=True)
    ids = np.arange(1, 41, dtype=np.int64)
    vectors = _vectors(40, seed=3)
    build.add(ids, vectors)
    reader = _open(url)
    assert len(reader) == 0  # nothing is published yet
    build.flush()
    after = _open(url)
    assert len(after) == 40 and sorted(after.ids().tolist()) == ids.tolist()
    _, found = after.search(vectors[:1], 1)
    assert found[0, 0] == 1
    assert sorted(reader.ids().tolist()) == ids.tolist()  # the reader follows the alias to the build


def test_a_rights_search_finds_every_face_within_the_radius(url: str):
    """Exhaustive, not HNSW's own range search: a person's rights reach every face of theirs."""
    index = _open(url)
    vectors = _vectors(300, seed=3)
    ids = np.arange(1000, 1300, dtype=np.int64)
    index.add(ids, vectors)
    query = vectors[7]
    distances = np.linalg.norm(vectors - query, axis=1)
    radius = float(np.sort(distances)[40])
    found_d, found = index.range_search(query, radius)
    assert sorted(found.tolist()) == sorted(ids[distances <= radius].tolist())
    assert (np.diff(found_d) >= 0).all()


def test_bad_urls_and_an_absent_server_are_said_plainly(url: str):
    with pytest.raises(SettingsError, match="ef"):
        _open(url + "?ef=zero")
    with pytest.raises(SettingsError, match="prefix"):
        _open("milvus://127.0.0.1:1/9bad")
    with pytest.raises(SettingsError, match="prefix"):  # would overlap with the collections of prefix "vultus"
        _open("milvus://127.0.0.1:1/vultus_x")
    with pytest.raises(IndexUnavailableError, match="did not answer"):
        _open("milvus://127.0.0.1:1/vultus")
