"""The VectorIndex contract, kept by every registered index backend and by the in-memory fake.

Backends are read from the registry when the tests are collected, so a new one is held to
the same promises without a line here. ``vultus.testing`` is imported inside fixtures only:
importing it registers the fake models, which suites parametrised over the model registry
at collection (tests/test_models.py) must not see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.errors import IndexCorruptError
from vultus.index import Capabilities, VectorIndex, create_index, index_names

FAKE = "memory (vultus.testing)"
BACKENDS = [*index_names(), FAKE]
DIM = 16

Opener = Callable[..., VectorIndex]


@pytest.fixture(params=BACKENDS)
def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``open_index(path=None, dim=DIM, cipher=None)``: the backend under test, opened at ``path``."""
    name = request.param

    def opener(path: Path | None = None, dim: int = DIM, cipher: Keyring | None = None) -> VectorIndex:
        path = path or tmp_path / "faces.idx"
        if name == FAKE:
            from vultus.testing import MemoryIndex

            return MemoryIndex.open(path, dim, cipher)
        return create_index(name, path, dim, cipher)

    return opener


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def _ids(count: int) -> np.ndarray:
    # Sparse, unordered ids as the store hands out after deletions: never positions.
    return (np.arange(count, dtype=np.int64) * 7 + 1000)[::-1].copy()


def _exact(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances, kind="stable")
    return distances[order], ids[order]


def test_it_keeps_the_protocol_and_starts_empty(open_index: Opener):
    index = open_index()
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM and len(index) == 0 and index.ids().tolist() == []
    assert isinstance(index.capabilities, Capabilities) and index.capabilities.description
    distances, ids = index.search(_vectors(2), 5)
    assert ids.shape[0] == 2 and (ids == -1).all()  # padded, never a made-up neighbour
    assert np.isinf(distances).all()
    near, near_ids = index.range_search(_vectors(1)[0], 10.0)
    assert len(near) == len(near_ids) == 0
    assert index.file_size() == 0


def test_search_returns_the_nearest_first_with_their_ids_and_euclidean_distances(open_index: Opener):
    index = open_index()
    vectors, ids = _vectors(200), _ids(200)
    index.add(ids, vectors)
    assert len(index) == 200 and sorted(index.ids().tolist()) == sorted(ids.tolist())
    queries = vectors[[3, 50, 199]] + 0.01 * _vectors(3, seed=1)
    distances, found = index.search(queries, 5)
    assert distances.shape == found.shape == (3, 5)
    for query, row_d, row_i in zip(queries, distances, found):
        want_d, want_i = _exact(vectors, ids, query)
        assert row_i.tolist() == want_i[:5].tolist()
        assert np.allclose(row_d, want_d[:5], rtol=1e-4, atol=1e-5)  # Euclidean, not squared
        assert (np.diff(row_d) >= 0).all()
    # A stored vector is its own nearest neighbour, at distance 0.
    d, i = index.search(vectors[7:8], 1)
    assert i[0][0] == ids[7] and d[0][0] == pytest.approx(0.0, abs=1e-3)


def test_search_asks_for_no_more_than_the_index_holds(open_index: Opener):
    index = open_index()
    index.add(_ids(3), _vectors(3))
    distances, ids = index.search(_vectors(1, seed=2), 10)
    assert ids.shape == (1, 3) and sorted(ids[0].tolist()) == sorted(_ids(3).tolist())


def test_range_search_finds_every_vector_within_the_radius_nearest_first(open_index: Opener):
    index = open_index()
    vectors, ids = _vectors(100), _ids(100)
    index.add(ids, vectors)
    query = vectors[10]
    want_d, want_i = _exact(vectors, ids, query)
    radius = float((want_d[8] + want_d[9]) / 2)  # nine inside, with room for rounding
    distances, found = index.range_search(query, radius)
    assert found.tolist() == want_i[:9].tolist()
    assert np.allclose(distances, want_d[:9], rtol=1e-4, atol=1e-5)
    assert found.dtype == np.int64


def test_removal_is_physical_and_counts_what_was_present(open_index: Opener, tmp_path: Path):
    path = tmp_path / "removal.idx"
    index = open_index(path)
    vectors, ids = _vectors(20), _ids(20)
    marked = np.full(DIM, 12345.678, dtype=np.float32)  # a template whose bytes are easy to find
    vectors[4] = marked
    index.add(ids, vectors)
    index.save()
    assert marked.tobytes() in path.read_bytes()
    assert index.remove(np.array([ids[4], ids[5], 424242], dtype=np.int64)) == 2
    assert index.remove(np.zeros(0, dtype=np.int64)) == 0
    assert len(index) == 18 and ids[4] not in index.ids() and ids[5] not in index.ids()
    _, found = index.search(marked[None, :], 18)
    assert ids[4] not in found and ids[5] not in found
    index.save()
    assert marked.tobytes() not in path.read_bytes()  # gone from the file, not just hidden
    # A removed id may be added again (reindexing a face that was restricted and released).
    index.add(ids[4:5], vectors[4:5])
    assert index.search(marked[None, :], 1)[1][0][0] == ids[4]


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_saved_index_reopens_with_the_same_contents(open_index: Opener, tmp_path: Path, encrypted: bool):
    path = tmp_path / "saved.idx"
    keys = Keyring.open(tmp_path / "keys.json") if encrypted else None
    index = open_index(path, cipher=keys)
    vectors, ids = _vectors(30), _ids(30)
    index.add(ids, vectors)
    index.save()
    assert index.file_size() == path.stat().st_size > 0
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically, through a temporary file
    if encrypted:
        assert vectors[0].tobytes() not in path.read_bytes()
    again = open_index(path, cipher=keys)
    assert sorted(again.ids().tolist()) == sorted(ids.tolist())
    before, after = index.search(vectors[:4], 3), again.search(vectors[:4], 3)
    assert (before[1] == after[1]).all() and np.allclose(before[0], after[0])


def test_an_unreadable_or_mismatched_file_says_how_to_rebuild(open_index: Opener, tmp_path: Path):
    garbage = tmp_path / "garbage.idx"
    garbage.write_bytes(b"not an index")
    with pytest.raises(IndexCorruptError, match="vultus reindex"):
        open_index(garbage)
    path = tmp_path / "other-dim.idx"
    index = open_index(path)
    index.add(_ids(2), _vectors(2))
    index.save()
    with pytest.raises(IndexCorruptError, match="vultus reindex"):
        open_index(path, dim=DIM * 2)


def test_a_small_index_keeps_its_structure(open_index: Opener):
    index = open_index()
    index.add(_ids(10), _vectors(10))
    assert index.plan_size(5) is None and index.plan_size(0) is None
    assert index.fit_size(5, lambda: (_ids(10), _vectors(10))) is False
    assert len(index) == 10


def test_the_fake_without_a_path_lives_in_memory_only(tmp_path: Path):
    from vultus.testing import MemoryIndex

    index = MemoryIndex(DIM)
    index.add(_ids(3), _vectors(3))
    index.save()
    assert index.file_size() == 0 and not list(tmp_path.iterdir())
    with pytest.raises(ValueError):
        index.add(_ids(1), _vectors(1))  # ids must not be present yet


def test_an_index_that_says_it_is_exact_gives_exact_distances_and_one_that_keeps_a_file_saves_it(open_index: Opener):
    """Use cases rely on the declared capabilities alone (no re-ranking when exact, a file when persistent)."""
    index = open_index()
    vectors, ids = _vectors(300), _ids(300)
    index.add(ids, vectors)
    capabilities = index.capabilities
    if capabilities.exact:
        query = vectors[7] + 0.05 * _vectors(1, seed=3)[0]
        distances, found = index.search(query[None, :], 10)
        want_d, want_i = _exact(vectors, ids, query)
        assert found[0].tolist() == want_i[:10].tolist()
        assert np.allclose(distances[0], want_d[:10], atol=1e-4)
    if capabilities.persistent:
        index.save()
        assert index.file_size() > 0
