"""The MetadataStore contract, kept by every registered store backend and the in-memory fake.

Backends are read from the registry when the tests are collected (``vultus.testing``, which
registers ``memory://``, is imported in the fixture only, as in the index contract); each scheme needs a way
to name a fresh store in a test folder (``URLS``), so a new backend fails here until it is
given one and then keeps the same promises: transactions that commit or roll back whole,
audit entries inside them, sealed templates, physical deletion and a chain that verifies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.errors import SettingsError, UnknownSourceError
from vultus.store import (AuditAction, MetadataStore, NewAppearance, NewFace, iso, open_store, store_exists, store_schemes,
                          utcnow)

#: scheme -> a URL for a new store inside a folder.
URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda folder: f"sqlite:///{folder / 'contract.db'}",
    # A name of its own per test: an in-memory store lives as long as one is open.
    "memory": lambda folder: f"memory://contract_{abs(hash(folder))}",
    # A database of its own per test on the server VULTUS_TEST_STORE_URL names (dropped after).
    "postgresql+psycopg": lambda folder: _fresh_postgres(folder),
}
FAKE = "memory"
#: Backends on a server run only when the server is named (scripts/services.sh start prints it);
#: tests/services/ fails, not skips, without it.
ON_SERVERS = {"postgresql+psycopg": "VULTUS_TEST_STORE_URL"}


def _fresh_postgres(folder: Path) -> str:
    from vultus.testing.postgres import fresh_database

    return fresh_database(os.environ["VULTUS_TEST_STORE_URL"],
                          "contract_" + hashlib.sha256(str(folder).encode()).hexdigest()[:16])


def _schemes() -> list[str]:
    return sorted(s for s in {*store_schemes(), FAKE} if s not in ON_SERVERS or os.environ.get(ON_SERVERS[s]))


def test_every_registered_backend_is_covered_here():
    import vultus.testing  # noqa: F401 - registers memory://

    assert set(store_schemes()) <= set(URLS), "give the new store backend a URL in URLS"


@pytest.fixture(params=_schemes())
def url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == FAKE:
        import vultus.testing  # noqa: F401 - registers memory://
    made = URLS[request.param](tmp_path)
    yield made
    if request.param in ON_SERVERS:
        from vultus.testing.postgres import drop_database

        drop_database(made, server_url=os.environ[ON_SERVERS[request.param]])


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    return Keyring.open(tmp_path / "keys.json")


@pytest.fixture
def store(url: str, keys: Keyring):
    opened = open_store(url, keys)
    opened.add_source(name="s", controller="c", legal_basis="consent", purpose="p", retention_days=10, consent_ref=None)
    yield opened
    opened.close()


def _add_image(store: MetadataStore, sha: str, vectors: list[np.ndarray]) -> list[int]:
    faces = [NewFace(box=(0, 0, 10, 10), landmarks=[], det_score=1.0, embedding=v, model_id="m", crop_key=None)
             for v in vectors]
    return store.add_image(source_id=store.get_source("s").id, sha256=sha, original_path=f"/p/{sha}.jpg",
                           size_bytes=1, width=10, height=10, format="JPEG", ingested_at=iso(utcnow()),
                           expires_at="2999-01-01T00:00:00Z", blob_key=None, new_faces=faces)


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def _appearance(number: int, seeds: list[int], start: float, end: float) -> NewAppearance:
    faces = [NewFace(box=(n, 0, n + 10, 10), landmarks=[], det_score=0.9, embedding=_vector(seed), model_id="m",
                     crop_key=f"crops/vv/v_{number}_{n}.jpg") for n, seed in enumerate(seeds)]
    return NewAppearance(faces=faces, media_times=[start + n * 0.5 for n in range(len(seeds))], time_start=start,
                         time_end=end, seen_at=[start, (start + end) / 2, end], still_key=f"stills/vv/v_{number}.jpg")


def _add_video(store: MetadataStore, sha: str, appearances: list[NewAppearance]) -> list[int] | None:
    return store.add_video(source_id=store.get_source("s").id, sha256=sha, original_path=f"/v/{sha}.mp4",
                           size_bytes=1000, width=1280, height=720, duration=61.5, format="MP4",
                           ingested_at=iso(utcnow()), expires_at="2999-01-01T00:00:00Z", appearances=appearances)


def test_it_keeps_the_protocol_and_exists_once_opened(url: str, keys: Keyring):
    assert not store_exists(url)
    opened = open_store(url, keys)
    try:
        assert isinstance(opened, MetadataStore)
        assert store_exists(url)
        assert opened.counts()["faces"] == 0 and opened.verify_audit().ok
    finally:
        opened.close()


def test_templates_round_trip_sealed_and_hydrate_with_provenance(store: MetadataStore):
    ids = _add_image(store, "a" * 64, [_vector(1), _vector(2)])
    got_ids, vectors = next(store.face_vectors(ids))
    order = np.argsort(got_ids)
    assert got_ids[order].tolist() == sorted(ids)
    assert np.allclose(vectors[order][0], _vector(1), atol=1e-6)
    hit = store.hydrate(ids)[ids[0]]
    assert hit.sha256 == "a" * 64 and hit.source == "s" and hit.legal_basis == "consent"
    assert store.known_sha256(["a" * 64, "b" * 64]) == {"a" * 64}


def test_a_transaction_commits_its_writes_and_audit_entry_together_or_not_at_all(store: MetadataStore):
    ids = _add_image(store, "a" * 64, [_vector(1)])
    image_ids = store.images_of_faces(ids)
    entries = store.audit_count()
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            assert [r.sha256 for r in store.delete_images(image_ids)] == ["a" * 64]
            store.log(actor="t", action=AuditAction.ERASURE, details={"n": 1})
            1 / 0
    assert store.counts()["faces"] == 1 and store.audit_count() == entries  # rolled back, both
    with store.transaction():
        store.delete_images(image_ids)
        # Reads inside the block see its own writes.
        assert store.counts()["faces"] == 0
        with store.transaction():  # a nested block joins the outer one
            store.log(actor="t", action=AuditAction.ERASURE, details={"n": 2})
    assert store.counts()["faces"] == 0 and store.audit_count() == entries + 1
    assert store.hydrate(ids) == {}
    store.purge_deleted()
    assert store.verify_audit().ok


def test_restriction_and_requests_join_the_open_transaction(store: MetadataStore):
    ids = _add_image(store, "a" * 64, [_vector(1), _vector(2)])
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            request_id = store.registers.open_request(kind="restriction", received_at="2026-01-01T00:00:00Z",
                                                      due_at="2026-02-01T00:00:00Z", probe_sha256=None)
            assert store.set_restricted(ids[:1], True) == 1
            raise RuntimeError("boom")
    assert store.restricted_face_ids().size == 0 and store.registers.list_requests() == []
    with store.transaction():
        request_id = store.registers.open_request(kind="restriction", received_at="2026-01-01T00:00:00Z",
                                                  due_at="2026-02-01T00:00:00Z", probe_sha256=None)
        store.set_restricted(ids[:1], True)
        store.registers.complete_request(request_id, at="2026-01-02T00:00:00Z", outcome="1 faces restricted")
    assert store.restricted_face_ids().tolist() == ids[:1]
    assert store.searchable_face_ids().tolist() == ids[1:]
    assert store.registers.get_request(request_id).completed_at == "2026-01-02T00:00:00Z"


def test_steps_that_need_a_transaction_say_so_outside_one(store: MetadataStore):
    with pytest.raises(RuntimeError, match="store.transaction"):
        store.delete_images([1])


def test_meta_values_are_kept_and_replaced(store: MetadataStore):
    assert store.get_meta("k") is None
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.get_meta("k") == "2"


def test_an_unknown_scheme_is_a_settings_error_that_lists_the_known_ones(keys: Keyring):
    with pytest.raises(SettingsError, match="sqlite://"):
        open_store("mysql://localhost/vultus", keys)


def test_a_video_is_stored_with_its_appearances_and_hydrates_with_their_times(store: MetadataStore):
    ids = _add_video(store, "v" * 64, [_appearance(0, [1, 2], 3.0, 9.5), _appearance(1, [3], 20.0, 21.0)])
    assert ids is not None and len(ids) == 3
    hits = store.hydrate(ids)
    first, second, third = (hits[i] for i in ids)
    assert (first.media, first.is_video, first.duration, first.original_path) == ("video", True, 61.5, "/v/" + "v" * 64 + ".mp4")
    assert (first.appearance, first.media_time, first.time_start, first.time_end) == (0, 3.0, 3.0, 9.5)
    assert (second.appearance, second.media_time, second.still_key) == (0, 3.5, "stills/vv/v_0.jpg")
    assert first.seen_at == (3.0, 6.25, 9.5) and first.blob_key is None
    assert (third.appearance, third.time_start, third.time_end) == (1, 20.0, 21.0)
    got_ids, vectors = next(store.face_vectors([ids[2]]))
    assert np.allclose(vectors[0], _vector(3), atol=1e-6)
    assert {"stills/vv/v_0.jpg", "stills/vv/v_1.jpg", "crops/vv/v_0_1.jpg"} <= store.blob_keys()
    assert store.known_sha256(["v" * 64]) == {"v" * 64}
    # The same video again is skipped, storing nothing.
    assert _add_video(store, "v" * 64, [_appearance(0, [4], 1.0, 2.0)]) is None
    assert store.counts()["faces"] == 3
    [source] = store.list_sources()
    assert (source.image_count, source.face_count) == (1, 3)


def test_a_photo_hydrates_as_a_photo(store: MetadataStore):
    [face_id] = _add_image(store, "a" * 64, [_vector(1)])
    hit = store.hydrate([face_id])[face_id]
    assert (hit.media, hit.is_video, hit.appearance, hit.media_time, hit.still_key, hit.seen_at) == (
        "photo", False, None, None, None, ())
    assert store.appearance_faces([face_id]) == [face_id]


def test_video_faces_are_deleted_by_appearance_and_the_video_row_goes_with_the_last(store: MetadataStore):
    ids = _add_video(store, "v" * 64, [_appearance(0, [1, 2], 3.0, 9.5), _appearance(1, [3], 20.0, 21.0)])
    photo = _add_image(store, "a" * 64, [_vector(4)])
    assert ids is not None
    assert store.appearance_faces([ids[1]]) == ids[:2]
    with pytest.raises(RuntimeError, match="store.transaction"):
        store.delete_faces(ids[:1])
    with store.transaction():
        with pytest.raises(ValueError, match="photos"):
            store.delete_faces(photo)
        # One template of appearance 0 named: both of its rows go, appearance 1 stays.
        [removed] = store.delete_faces(ids[1:2])
    assert (removed.sha256, removed.source, removed.face_ids, removed.ranges) == ("v" * 64, "s", ids[:2], [(3.0, 9.5)])
    assert removed.still_keys == ["stills/vv/v_0.jpg"] and removed.crop_keys == ["crops/vv/v_0_0.jpg", "crops/vv/v_0_1.jpg"]
    assert not removed.image_removed
    assert set(store.hydrate(ids)) == {ids[2]} and store.known_sha256(["v" * 64]) == {"v" * 64}
    assert "stills/vv/v_0.jpg" not in store.blob_keys() and "stills/vv/v_1.jpg" in store.blob_keys()
    assert store.list_sources()[0].face_count == 2  # the photo's face and the video's last one
    with store.transaction():
        [last] = store.delete_faces(ids[2:])
    assert last.image_removed and last.ranges == [(20.0, 21.0)]
    assert store.known_sha256(["v" * 64]) == set() and set(store.hydrate(photo)) == set(photo)
    with store.transaction():
        assert store.delete_faces(ids) == []  # already gone: nothing to say


def test_deleting_a_video_whole_says_its_stills_and_time_ranges(store: MetadataStore):
    ids = _add_video(store, "v" * 64, [_appearance(0, [1, 2], 3.0, 9.5), _appearance(1, [3], 20.0, 21.0)])
    assert ids is not None
    [image_id] = store.images_of_faces(ids)
    assert store.expired_images("3000-01-01T00:00:00Z") == [image_id]
    with store.transaction():
        [removed] = store.delete_images([image_id])
    assert (removed.media, removed.sha256, sorted(removed.face_ids)) == ("video", "v" * 64, ids)
    assert removed.still_keys == ["stills/vv/v_0.jpg", "stills/vv/v_1.jpg"] and removed.blob_key is None
    assert removed.ranges == [(3.0, 9.5), (20.0, 21.0)]
    assert set(removed.blob_keys) == {"stills/vv/v_0.jpg", "stills/vv/v_1.jpg", "crops/vv/v_0_0.jpg",
                                      "crops/vv/v_0_1.jpg", "crops/vv/v_1_0.jpg"}
    assert store.counts()["faces"] == 0 and store.blob_keys() == set()


def test_blocks_on_two_stores_at_once_each_keep_their_own_transaction(url: str, keys: Keyring, tmp_path: Path):
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}", keys)
    first = open_store(url, keys)
    try:
        with pytest.raises(RuntimeError, match="inner"):
            with first.transaction():
                first.set_meta("k", "first")
                with other.transaction():
                    other.set_meta("k", "other")
                    # Each store's calls join its own block, not the innermost one.
                    assert first.get_meta("k") == "first" and other.get_meta("k") == "other"
                    raise RuntimeError("inner")
        assert first.get_meta("k") is None and other.get_meta("k") is None
    finally:
        first.close()
        other.close()


def test_a_source_keeps_its_search_categories_and_lists_its_searchable_faces(store: MetadataStore):
    assert store.get_source("s").purposes == ()  # registered without any: it allows nothing
    other = store.add_source(name="t", controller="c", legal_basis="consent", purpose="p", retention_days=10,
                             consent_ref=None, purposes=["investigation", "journalism", "investigation"])
    assert other.purposes == ("journalism", "investigation")  # once each, in the vocabulary's order
    assert {s.name: s.purposes for s in store.list_sources()} == {"s": (), "t": ("journalism", "investigation")}
    with store.transaction():
        changed = store.set_source_purposes("t", ["archive"])
        store.log(actor="a", action=AuditAction.SOURCE_SET, details={"name": "t"})
    assert changed.purposes == ("archive",) and store.get_source("t").purposes == ("archive",)
    with pytest.raises(RuntimeError, match="undone"):
        with store.transaction():
            store.set_source_purposes("t", ["event-delivery"])
            raise RuntimeError("undone")
    assert store.get_source("t").purposes == ("archive",)  # rolled back with its transaction
    with pytest.raises(UnknownSourceError):
        store.set_source_purposes("nosuch", ["archive"])
    # The faces of a set of sources, as a search's id filter lists them: never a restricted one.
    in_s = _add_image(store, "a" * 64, [_vector(1), _vector(2)])
    in_t = store.add_image(source_id=other.id, sha256="b" * 64, original_path="/p/b.jpg", size_bytes=1, width=10,
                           height=10, format="JPEG", ingested_at=iso(utcnow()), expires_at="2999-01-01T00:00:00Z",
                           blob_key=None, new_faces=[NewFace(box=(0, 0, 10, 10), landmarks=[], det_score=1.0,
                                                             embedding=_vector(3), model_id="m", crop_key=None)])
    assert sorted(store.source_face_ids([store.get_source("s").id]).tolist()) == sorted(in_s)
    assert store.source_face_ids([other.id]).tolist() == in_t
    assert store.source_face_ids([]).dtype == np.int64 and len(store.source_face_ids([])) == 0
    with store.transaction():
        store.set_restricted(in_s[:1], True)
    assert sorted(store.source_face_ids([store.get_source("s").id, other.id]).tolist()) == sorted(in_s[1:] + in_t)


def test_people_groups_keep_sealed_names_and_centroids_and_leave_with_their_faces(store: MetadataStore):
    source_id = store.get_source("s").id
    photo = _add_image(store, "a" * 64, [_vector(1), _vector(2)])
    video = _add_video(store, "v" * 64, [_appearance(0, [3, 4], 3.0, 9.5)])
    assert video is not None
    assert store.people.enable(source_id, at="2026-01-01T00:00:00Z", by="t", legal_basis="consent", note=None)
    with pytest.raises(ZeroDivisionError):
        with store.transaction():  # the groups' rows join the open transaction, and roll back with it
            rolled = store.people.create(source_id, at="2026-01-01T00:00:00Z")
            store.people.assign(rolled, photo, pinned=True)
            1 / 0
    assert store.people.list() == [] and store.people.people_of_faces(photo) == {}
    person = store.people.create(source_id, at="2026-01-01T00:00:00Z")
    store.people.assign(person, [*photo, *video], pinned=False)
    store.people.set_name(person, "Ann", at="2026-01-01T00:00:00Z")
    store.people.save_centroid(person, _vector(9), model_id="m", size=3, cover_face_id=photo[0])
    [record] = store.people.list(source_id)
    assert (record.name, record.size, record.cover_face_id, record.source) == ("Ann", 3, photo[0], "s")
    ids, centroids, sizes = store.people.centroids(source_id, "m")
    assert ids.tolist() == [person] and np.allclose(centroids[0], _vector(9), atol=1e-6) and sizes.tolist() == [3]
    assert store.people.stale() == []
    # Erasing the photo takes its faces out of the group in the same transaction (the cascade);
    # the group is then stale, with how many face rows it had and has.
    with store.transaction():
        store.delete_images(store.images_of_faces(photo))
    assert store.people.people_of_faces([*photo, *video]) == {video[0]: person, video[1]: person}
    assert store.people.stale() == [(person, 4, 2)]
    assert store.people.get(person).cover_face_id is None  # the cover face is gone with it
    with store.transaction():
        store.delete_faces(video)
    assert store.people.members([person]) == [] and store.people.stale() == [(person, 4, 0)]
    with store.transaction():
        counts = store.people.disable(source_id)
    assert counts == {"people": 1, "named": 1, "forgotten_faces": 0} and store.people.clustering() == []
