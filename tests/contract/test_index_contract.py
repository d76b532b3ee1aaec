"""The VectorIndex contract, kept by every registered index backend and by the in-memory fake.

Backends are read from the registry when the tests are collected; each scheme needs a way
to name a fresh index in a test folder (``BACKENDS``), so a new backend fails here until it
is given one and then keeps the same promises. ``vultus.testing`` (whose ``memory`` scheme
is the fake) is imported inside fixtures only: importing it registers the fake models and
index, which suites parametrised over the registries at collection (tests/test_models.py)
must not see.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.errors import IndexCorruptError, SettingsError
from vultus.index import (
    Capabilities,
    IdFilter,
    LockedIndex,
    IndexTarget,
    Resizable,
    VectorIndex,
    index_backend,
    index_schemes,
    open_index as open_at,
)

DIM = 16
#: The scheme of vultus.testing's MemoryIndex, registered when vultus.testing is imported.
FAKE = "memory"


@dataclass(frozen=True)
class Backend:
    """How the suite reaches one backend."""

    #: A URL for a new index inside a folder (a server backend: its test server, a fresh collection).
    url: Callable[[Path], str]
    #: It keeps its index in files in that folder, which the tests read for leftover bytes.
    files: bool


def _milvus(folder: Path) -> str:
    # Collections of their own per test (a prefix from the folder) on the server
    # VULTUS_TEST_INDEX_URL names; dropped after the test.
    return f"{os.environ['VULTUS_TEST_INDEX_URL'].rstrip('/')}/t{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}"


BACKENDS: dict[str, Backend] = {
    "faiss": Backend(lambda folder: f"faiss://{folder}", files=True),
    FAKE: Backend(lambda folder: f"memory://{folder}", files=True),
    "milvus": Backend(_milvus, files=False),
}
#: Backends on a server run only when the server is named (scripts/services.sh start prints it);
#: tests/services/ fails, not skips, without it.
ON_SERVERS = {"milvus": "VULTUS_TEST_INDEX_URL"}


def test_every_registered_backend_is_covered_here():
    import vultus.testing  # noqa: F401 - its scheme is one of them

    assert set(index_schemes()) <= set(BACKENDS), "give the new index backend a URL in BACKENDS"


class Subject:
    """The backend under test: ``subject(folder=None, dim=DIM, cipher=None, fresh=False)`` opens it."""

    def __init__(self, scheme: str, root: Path):
        self.scheme, self.root, self.backend = scheme, root, BACKENDS[scheme]
        self.folder = root / "index"

    def target(self, folder: Path | None = None, dim: int = DIM, cipher: Keyring | None = None) -> IndexTarget:
        return IndexTarget(self.backend.url(folder or self.folder), dim, cipher, model_id="contract-model")

    def __call__(self, folder: Path | None = None, dim: int = DIM, cipher: Keyring | None = None, *,
                 fresh: bool = False) -> VectorIndex:
        return open_at(self.target(folder, dim, cipher), fresh=fresh)

    def stored(self, folder: Path | None = None) -> bytes:
        """Everything the index's files hold (it keeps files only where ``files`` says so)."""
        folder = folder or self.folder
        return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()) if folder.is_dir() else b""


def _schemes() -> list[str]:
    return sorted(s for s in {*index_schemes(), FAKE} if s not in ON_SERVERS or os.environ.get(ON_SERVERS[s]))


@pytest.fixture(params=_schemes())
def open_index(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == FAKE:
        import vultus.testing  # noqa: F401 - registers the fake's scheme, at run time, not at collection
    subject = Subject(request.param, tmp_path)
    yield subject
    if request.param == "milvus":
        from vultus.testing.milvus import drop_prefix

        drop_prefix(subject.target().url)


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def _ids(count: int) -> np.ndarray:
    # Sparse, unordered ids as the store hands out after deletions: never positions.
    return (np.arange(count, dtype=np.int64) * 7 + 1000)[::-1].copy()


def _exact(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances, kind="stable")
    return distances[order], ids[order]


def test_it_keeps_the_protocol_and_starts_empty(open_index: Subject):
    index = open_index()
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM and len(index) == 0 and index.ids().tolist() == []
    assert isinstance(index.capabilities, Capabilities) and index.capabilities.description
    distances, ids = index.search(_vectors(2), 5)
    assert ids.shape[0] == 2 and (ids == -1).all()  # padded, never a made-up neighbour
    assert np.isinf(distances).all()
    near, near_ids = index.range_search(_vectors(1)[0], 10.0)
    assert len(near) == len(near_ids) == 0
    if open_index.backend.files:
        assert index.size_on_disk() == 0
    else:
        assert index.size_on_disk() in (0, None)


def test_its_url_names_its_backend_and_an_unknown_scheme_names_the_known_ones(open_index: Subject):
    target = open_index.target()
    assert index_backend(target.url) is index_backend(target.url.replace(open_index.scheme, open_index.scheme.upper(), 1))
    with pytest.raises(SettingsError, match=f"{open_index.scheme}://") as error:
        open_at(IndexTarget("nosuch://" + str(open_index.folder), DIM))
    assert "VULTUS_INDEX__URL" in str(error.value) and "faiss://" in str(error.value)
    with pytest.raises(SettingsError, match="No vector index handles"):
        index_backend(str(open_index.folder))  # a bare path has no scheme


def test_search_returns_the_nearest_first_with_their_ids_and_euclidean_distances(open_index: Subject):
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


def test_search_asks_for_no_more_than_the_index_holds(open_index: Subject):
    index = open_index()
    index.add(_ids(3), _vectors(3))
    distances, ids = index.search(_vectors(1, seed=2), 10)
    assert ids.shape == (1, 3) and sorted(ids[0].tolist()) == sorted(_ids(3).tolist())


@pytest.mark.parametrize("exclude", [False, True])
def test_a_filtered_search_returns_only_the_ids_let_through_nearest_first(open_index: Subject, exclude: bool):
    """A search for a purpose covers only its sources' faces: listed, or all but those listed."""
    index = open_index()
    vectors, ids = _vectors(200), _ids(200)
    index.add(ids, vectors)
    listed = ids[::3]  # every third face, and ids no index holds
    id_filter = IdFilter(np.concatenate([listed, [5, 999_999]]), exclude=exclude)
    let = ~np.isin(ids, listed) if exclude else np.isin(ids, listed)
    queries = vectors[[0, 1, 2, 100]] + 0.01 * _vectors(4, seed=4)
    distances, found = index.search(queries, 5, id_filter)
    assert found.shape == (4, 5)
    for query, row_d, row_i in zip(queries, distances, found):
        want_d, want_i = _exact(vectors[let], ids[let], query)
        assert row_i.tolist() == want_i[:5].tolist()  # the nearest of those let through, none other
        assert np.allclose(row_d, want_d[:5], rtol=1e-4, atol=1e-5)
    # The same through the lock the gallery wraps indexes in.
    import threading

    locked = LockedIndex(index, threading.RLock())
    assert (locked.search(queries, 5, id_filter)[1] == found).all()
    assert (locked.search(queries, 5)[1] == index.search(queries, 5)[1]).all()  # no filter: everything


def test_a_filter_that_lets_few_through_pads_and_one_that_lets_none_through_finds_nothing(open_index: Subject):
    index = open_index()
    vectors, ids = _vectors(50), _ids(50)
    index.add(ids, vectors)
    distances, found = index.search(vectors[:2], 10, IdFilter(ids[:3]))
    assert found.shape == (2, 10)
    assert [sorted(row[row >= 0].tolist()) for row in found] == [sorted(ids[:3].tolist())] * 2
    assert (found[:, 3:] == -1).all() and np.isinf(distances[:, 3:]).all()  # padded, never another face
    assert found[0][0] == ids[0] and found[1][0] == ids[1]
    nothing_d, nothing = index.search(vectors[:1], 5, IdFilter(np.zeros(0, dtype=np.int64)))
    assert (nothing == -1).all() and np.isinf(nothing_d).all()
    everyone_else = index.search(vectors[:1], 5, IdFilter(ids, exclude=True))[1]
    assert (everyone_else == -1).all()
    # Removed ids stay out of filtered searches too.
    index.remove(ids[:1])
    assert ids[0] not in index.search(vectors[:1], 5, IdFilter(ids[:3]))[1]


def test_range_search_finds_every_vector_within_the_radius_nearest_first(open_index: Subject):
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


def test_removal_is_physical_and_counts_what_was_present(open_index: Subject, tmp_path: Path):
    folder = tmp_path / "removal"
    index = open_index(folder)
    assert index.capabilities.physical_removal  # erasure receipts promise it
    vectors, ids = _vectors(20), _ids(20)
    marked = np.full(DIM, 12345.678, dtype=np.float32)  # a template whose bytes are easy to find
    vectors[4] = marked
    index.add(ids, vectors)
    index.flush()
    if open_index.backend.files:
        assert marked.tobytes() in open_index.stored(folder)
    assert index.remove(np.array([ids[4], ids[5], 424242], dtype=np.int64)) == 2
    assert index.remove(np.zeros(0, dtype=np.int64)) == 0
    assert len(index) == 18 and ids[4] not in index.ids() and ids[5] not in index.ids()
    _, found = index.search(marked[None, :], 18)
    assert ids[4] not in found and ids[5] not in found
    index.flush()
    if open_index.backend.files:
        assert marked.tobytes() not in open_index.stored(folder)  # gone from the files, not just hidden
    if index.capabilities.persistent:
        # Flushed, the removal holds for the index opened again: the vector does not come back.
        again = open_index(folder)
        assert ids[4] not in again.ids() and len(again) == 18
        _, found = again.search(marked[None, :], 18)
        assert ids[4] not in found and ids[5] not in found
    # A removed id may be added again (reindexing a face that was restricted and released).
    index.add(ids[4:5], vectors[4:5])
    assert index.search(marked[None, :], 1)[1][0][0] == ids[4]


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_flushed_index_reopens_with_the_same_contents(open_index: Subject, tmp_path: Path, encrypted: bool):
    folder = tmp_path / "saved"
    keys = Keyring.open(tmp_path / "keys.json") if encrypted else None
    index = open_index(folder, cipher=keys)
    vectors, ids = _vectors(30), _ids(30)
    index.add(ids, vectors)
    index.flush()
    if open_index.backend.files:
        assert index.size_on_disk() == len(open_index.stored(folder)) > 0
        assert not list(folder.glob(".tmp-*"))  # written atomically, through a temporary file
        if encrypted:
            assert vectors[0].tobytes() not in open_index.stored(folder)
    again = open_index(folder, cipher=keys)
    if not index.capabilities.persistent:
        assert len(again) == 0  # a rebuilt index says so: it starts empty
        return
    assert sorted(again.ids().tolist()) == sorted(ids.tolist())
    before, after = index.search(vectors[:4], 3), again.search(vectors[:4], 3)
    assert (before[1] == after[1]).all() and np.allclose(before[0], after[0])


def test_a_fresh_index_replaces_the_stored_one_only_when_flushed(open_index: Subject):
    index = open_index()
    index.add(_ids(10), _vectors(10))
    index.flush()
    fresh = open_index(fresh=True)
    assert len(fresh) == 0
    fresh.add(_ids(3), _vectors(3, seed=5))
    stored = open_index()
    if stored.capabilities.persistent:
        assert len(stored) == 10  # a rebuild cut short here leaves the old index in place
    fresh.flush()
    again = open_index()
    assert sorted(again.ids().tolist()) == (sorted(_ids(3).tolist()) if again.capabilities.persistent else [])


def test_dropping_deletes_what_is_stored_and_may_find_nothing(open_index: Subject):
    backend = index_backend(open_index.target().url)
    backend.drop(open_index.target())  # nothing there yet
    index = open_index()
    marked = np.full((1, DIM), 4321.5, dtype=np.float32)
    index.add(_ids(1), marked)
    index.flush()
    backend.drop(open_index.target())
    assert len(open_index()) == 0
    if open_index.backend.files:
        assert marked.tobytes() not in open_index.stored()


def test_sweeping_after_a_crash_keeps_the_flushed_index(open_index: Subject):
    index = open_index()
    index.add(_ids(5), _vectors(5))
    index.flush()
    index_backend(open_index.target().url).sweep(open_index.target().url)
    if index.capabilities.persistent:
        assert sorted(open_index().ids().tolist()) == sorted(_ids(5).tolist())


def test_an_unreadable_or_mismatched_file_says_how_to_rebuild(open_index: Subject, tmp_path: Path):
    folder = tmp_path / "other-dim"
    index = open_index(folder)
    index.add(_ids(2), _vectors(2))
    index.flush()
    if index.capabilities.persistent:
        with pytest.raises(IndexCorruptError, match="vultus reindex"):
            open_index(folder, dim=DIM * 2)
        # A fresh index does not read what is stored, so a rebuild opens even over a bad copy.
        assert len(open_index(folder, dim=DIM * 2, fresh=True)) == 0
    if open_index.backend.files:
        for path in [p for p in folder.rglob("*") if p.is_file()]:
            path.write_bytes(b"not an index")
        with pytest.raises(IndexCorruptError, match="vultus reindex"):
            open_index(folder)


def test_a_small_index_keeps_its_structure(open_index: Subject):
    index = open_index()
    index.add(_ids(10), _vectors(10))
    if not isinstance(index, Resizable):
        return  # one structure at every size: the gallery never asks it to refit
    assert index.plan_size(5) is None and index.plan_size(0) is None
    assert index.fit_size(5, lambda: (_ids(10), _vectors(10))) is False
    assert len(index) == 10


def test_the_fake_without_a_path_lives_in_memory_only(tmp_path: Path):
    from vultus.testing import MemoryIndex

    index = MemoryIndex(DIM)
    index.add(_ids(3), _vectors(3))
    index.flush()
    assert index.size_on_disk() is None and not list(tmp_path.iterdir())
    assert not index.capabilities.persistent and not isinstance(index, Resizable)
    with pytest.raises(ValueError):
        index.add(_ids(1), _vectors(1))  # ids must not be present yet
    # As a backend, memory:// is the same: nothing kept, so it is rebuilt from the store at each open.
    opened = open_at(IndexTarget("memory://", DIM))
    assert isinstance(opened, MemoryIndex) and not opened.capabilities.persistent and opened.size_on_disk() is None
    with pytest.raises(SettingsError, match="memory://"):
        open_at(IndexTarget("memory://somehost/x", DIM))


def test_an_index_that_says_it_is_exact_gives_exact_distances_and_one_that_keeps_a_file_saves_it(
        open_index: Subject):
    """Use cases rely on the declared capabilities alone (no re-ranking when exact, kept when persistent)."""
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
        index.flush()
        assert len(open_index()) == 300
        if open_index.backend.files:
            assert index.size_on_disk() > 0
