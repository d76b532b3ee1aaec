"""The MetadataStore contract, kept by every registered store backend and the in-memory fake.

Backends are read from the registry when the tests are collected (``vultus.testing``, which
registers ``memory://``, is imported in the fixture only, as in the index contract); each scheme needs a way
to name a fresh store in a test folder (``URLS``), so a new backend fails here until it is
given one and then keeps the same promises: transactions that commit or roll back whole,
audit entries inside them, sealed templates, physical deletion and a chain that verifies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vultus.crypto import Keyring
from vultus.errors import SettingsError
from vultus.store import AuditAction, MetadataStore, NewFace, iso, open_store, store_exists, store_schemes, utcnow

#: scheme -> a URL for a new store inside a folder.
URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda folder: f"sqlite:///{folder / 'contract.db'}",
    # A name of its own per test: an in-memory store lives as long as one is open.
    "memory": lambda folder: f"memory://contract_{abs(hash(folder))}",
}
FAKE = "memory"


def test_every_registered_backend_is_covered_here():
    import vultus.testing  # noqa: F401 - registers memory://

    assert set(store_schemes()) <= set(URLS), "give the new store backend a URL in URLS"


@pytest.fixture(params=sorted({*store_schemes(), FAKE}))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == FAKE:
        import vultus.testing  # noqa: F401 - registers memory://
    return URLS[request.param](tmp_path)


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
