"""Several probe photos of one person, on the fake models: fusion, several-probe rights, public requests.

The fake person is a colour: two probes of one person are two close shades of red, each
matching a gallery photo the other one misses, so what one probe alone finds and what both
find together differ, and the difference is what these tests assert.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vultus.errors import FaceChoiceError, NoFaceError, ProbeChoiceError

#: Two probes of one person (12 levels apart: their templates match at the rights threshold),
#: a gallery shade near each alone (20 levels from the other probe: beyond the match distance),
#: and someone else.
PROBE_A, PROBE_B = (210, 30, 30), (210, 42, 30)
NEAR_A, NEAR_B = (210, 22, 30), (210, 50, 30)
OTHER = (30, 50, 210)


def _png(fakes, *colours) -> bytes:
    # PNG: no JPEG noise moves the shades.
    return fakes.square_photo([fakes.Square(c, 40 + n * 200, 100, 150) for n, c in enumerate(colours)], format="PNG")


@pytest.fixture
def gallery(fake_engine, fakes, tmp_path):
    """near-a.png, near-b.png and other.png ingested into 'test'."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    for name, colour in (("near-a.png", NEAR_A), ("near-b.png", NEAR_B), ("other.png", OTHER)):
        (folder / name).write_bytes(_png(fakes, colour))
    fake_engine.ingest([folder], source="test", workers=1)
    return fake_engine


def _names(candidates) -> list[str]:
    return sorted(c.path.rsplit("/", 1)[-1] for c in candidates)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_shades_are_what_the_tests_assume(fakes):
    t = {c: fakes.colour_template(c) for c in (PROBE_A, PROBE_B, NEAR_A, NEAR_B)}
    match, rights = fakes.FAKE_SPEC.match_distance, fakes.FAKE_SPEC.rights_distance

    def dist(a, b):
        return float(np.linalg.norm(t[a] - t[b]))

    assert dist(PROBE_A, PROBE_B) < rights
    assert dist(PROBE_A, NEAR_A) < match < dist(PROBE_B, NEAR_A) and dist(PROBE_B, NEAR_B) < match < dist(PROBE_A, NEAR_B)


# -- fusion -----------------------------------------------------------------------------------


def test_fused_pairs_scores_each_face_by_its_best_probe_the_mean_or_the_better_of_both(fakes):
    from vultus.search import fused_pairs, mean_template

    rng = np.random.default_rng(7)
    stored = rng.normal(size=(40, fakes.FAKE_SPEC.dim)).astype(np.float32)
    index = fakes.MemoryIndex(fakes.FAKE_SPEC.dim)
    index.add(np.arange(1, 41, dtype=np.int64), stored)
    probes = stored[[3, 17]] + 0.05 * rng.normal(size=(2, fakes.FAKE_SPEC.dim)).astype(np.float32)
    to_each = np.linalg.norm(stored[:, None, :] - probes[None], axis=2)  # (faces, probes)
    to_mean = np.linalg.norm(stored - mean_template(probes), axis=1)
    for fusion, expected in (("max", to_each.min(axis=1)), ("mean", to_mean),
                             ("both", np.minimum(to_each.min(axis=1), to_mean))):
        pairs = fused_pairs(index, None, probes, 40, fusion)
        assert [i for _, i in pairs] == (np.argsort(expected, kind="stable") + 1).tolist()[:len(pairs)], fusion
        assert np.allclose([d for d, _ in pairs], np.sort(expected)[:len(pairs)], atol=1e-4), fusion
    # Each probe face's own nearest two are kept (the union), its own face first among them all.
    nearest = fused_pairs(index, None, probes, 2, "max")
    assert {i for _, i in nearest[:2]} == {4, 18} and 2 < len(nearest) <= 4
    with pytest.raises(ValueError):
        fused_pairs(index, None, probes, 5, "median")


def test_the_mean_template_keeps_the_probes_length(fakes):
    from vultus.search import mean_template

    unit = np.stack([fakes.colour_template(PROBE_A), fakes.colour_template(OTHER)])
    assert np.isclose(np.linalg.norm(mean_template(unit)), 1.0, atol=1e-5)
    assert np.allclose(mean_template(unit[:1]), unit[0], atol=1e-6)


def test_two_probes_find_the_photos_each_finds_alone_with_their_similarity_to_each(gallery, fakes):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    alone = gallery.search(a, purpose="unit test", case="P-1")
    assert _names(alone.candidates) == ["near-a.png"] and alone.probe_faces_used == 1
    assert alone.candidates[0].probe_similarities == [alone.candidates[0].similarity]
    both = gallery.search([a, b], purpose="unit test", case="P-2")
    assert _names(both.candidates) == ["near-a.png", "near-b.png"] and both.probe_faces_used == 2
    assert [p.sha256 for p in both.probes] == [_sha(a), _sha(b)] and both.unlike_probes == []
    for c in both.candidates:
        # One entry per probe face; the fused similarity is the best of them (fusion "max").
        assert len(c.probe_similarities) == 2 and c.similarity == pytest.approx(max(c.probe_similarities), abs=1e-3)
        near = c.path.endswith("near-a.png")
        assert (c.probe_similarities[0] > c.probe_similarities[1]) == near
        assert min(c.probe_similarities) < both.threshold <= max(c.probe_similarities)


def test_a_search_with_several_probes_is_logged_with_every_probe_hash(gallery, fakes):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    gallery.search([a, b], purpose="unit test", case="P-3")
    gallery.search(a, purpose="unit test", case="P-4")
    several, single = gallery.audit_entries(action="search")[-2:]
    assert several.details["probe_sha256s"] == [_sha(a), _sha(b)] and several.details["probe_faces_used"] == 2
    assert several.details["probe_sha256"] == _sha(a) and several.details["fusion"] == "max"
    assert len(several.details["candidates"]) == 2
    # The single-probe entry keeps its fields.
    assert single.details["probe_sha256"] == _sha(a) and single.details["probe_face"] == 1
    assert single.details["probe_sha256s"] == [_sha(a)] and "fusion" not in single.details


def test_a_probe_unlike_the_first_is_named_in_the_result(gallery, fakes):
    result = gallery.search([_png(fakes, PROBE_A), _png(fakes, OTHER)], purpose="unit test", case="P-5")
    assert result.unlike_probes == [2]
    assert _names(result.candidates) == ["near-a.png", "other.png"]


def test_a_probe_photo_with_no_face_is_named_and_nothing_is_logged_as_a_search(gallery, fakes):
    before = len(gallery.audit_entries(action="search"))
    with pytest.raises(NoFaceError, match="probe photo 2"):
        gallery.search([_png(fakes, PROBE_A), fakes.blank_photo()], purpose="unit test", case="P-6")
    assert len(gallery.audit_entries(action="search")) == before


def test_too_many_probes_the_same_photo_twice_and_face_with_several_are_refused(gallery, fakes, tmp_path):
    from vultus.probes import MAX_PROBES

    # Refused before any is read: these paths do not even exist.
    with pytest.raises(ProbeChoiceError, match=f"at most {MAX_PROBES}"):
        gallery.search([tmp_path / f"missing-{n}.jpg" for n in range(MAX_PROBES + 1)], purpose="u", case="P-7")
    a = _png(fakes, PROBE_A)
    with pytest.raises(ProbeChoiceError, match="probe photo 2 is the same photo as probe photo 1"):
        gallery.search([a, a], purpose="u", case="P-8")
    with pytest.raises(ProbeChoiceError, match="--face 1 picks a face in one probe photo"):
        gallery.search([a, _png(fakes, PROBE_B)], purpose="u", case="P-9", face=1)
    with pytest.raises(ProbeChoiceError, match="No probe photo"):
        gallery.search([], purpose="u", case="P-10")
    # --face still works with one photo.
    with pytest.raises(FaceChoiceError):
        gallery.search(a, purpose="u", case="P-11", face=2)


# -- rights -----------------------------------------------------------------------------------


def test_a_rights_match_with_two_probes_is_the_union_each_face_once_at_its_best(gallery, fakes):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    assert [h.original_path.rsplit("/", 1)[-1] for h, _ in gallery.match_person(a).faces] == ["near-a.png"]
    match = gallery.match_person([a, b])
    assert sorted(h.original_path.rsplit("/", 1)[-1] for h, _ in match.faces) == ["near-a.png", "near-b.png"]
    assert len({h.face_id for h, _ in match.faces}) == len(match.faces) == 2
    assert match.probe_sha256s == (_sha(a), _sha(b)) and match.probe_sha256 == _sha(a) and len(match.templates) == 2
    spec = fakes.FAKE_SPEC
    for hit, similarity in match.faces:
        best = max(spec.similarity(float(np.linalg.norm(t - hit_t))) for t in match.templates
                   for hit_t in [fakes.colour_template(NEAR_A if hit.original_path.endswith("near-a.png") else NEAR_B)])
        assert similarity == pytest.approx(best, abs=0.02)


def test_a_rights_request_with_a_photo_of_someone_else_is_refused_naming_it(gallery, fakes):
    with pytest.raises(ProbeChoiceError, match="probe photo 2.*does not match.*probe photo 1"):
        gallery.match_person([_png(fakes, PROBE_A), _png(fakes, OTHER)])
    assert gallery.requests() == []  # nothing was registered


def test_an_erasure_with_two_probes_removes_both_photos_and_records_both_hashes(gallery, fakes):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    receipt = gallery.erase(gallery.match_person([a, b]))
    assert len(receipt["removed_images"]) == 2 and receipt["probe_sha256s"] == [_sha(a), _sha(b)]
    entry = gallery.audit_entries(action="erasure")[-1]
    assert entry.details["probe_sha256s"] == [_sha(a), _sha(b)] and entry.details["probe_sha256"] == _sha(a)
    assert [r.probe_sha256 for r in gallery.requests()] == [_sha(a)]
    assert _names(gallery.search([a, b], purpose="u", case="P-12").candidates) == []
    assert _names(gallery.search(_png(fakes, OTHER), purpose="u", case="P-13").candidates) == ["other.png"]


def test_an_objection_with_two_probes_keeps_a_suppression_entry_per_probe_face(gallery, fakes, tmp_path):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    receipt = gallery.object(gallery.match_person([a, b]))
    assert len(receipt["suppression_ids"]) == 2 and receipt["suppression_id"] == receipt["suppression_ids"][0]
    assert [s.id for s in gallery.suppressions()] == receipt["suppression_ids"]
    later = tmp_path / "later"
    later.mkdir()
    (later / "a-again.png").write_bytes(_png(fakes, NEAR_A, OTHER))
    (later / "b-again.png").write_bytes(_png(fakes, NEAR_B))
    summary = gallery.ingest([later], source="test", workers=1)
    # Each shade is skipped by the entry of the probe it matches; the other person is kept.
    assert summary.suppressed_faces == 2 and summary.images == 1 and summary.faces == 1


def test_restriction_with_two_probes_restricts_both_faces(gallery, fakes):
    match = gallery.match_person([_png(fakes, PROBE_A), _png(fakes, PROBE_B)])
    assert gallery.restrict(match)[1] == 2
    assert gallery.audit_entries(action="restriction")[-1].details["probe_sha256s"] == list(match.probe_sha256s)


def test_an_access_report_with_two_probes_lists_both_photos(gallery, fakes):
    report = gallery.access([_png(fakes, PROBE_A), _png(fakes, PROBE_B)])
    assert sorted(i["original_path"].rsplit("/", 1)[-1] for i in report["images"]) == ["near-a.png", "near-b.png"]
    assert report["probe_faces"] == 2


# -- public requests ----------------------------------------------------------------------------


def test_a_public_request_with_two_photos_seals_both_templates_and_its_erasure_finds_both(gallery, fakes):
    a, b = _png(fakes, PROBE_A), _png(fakes, PROBE_B)
    done = gallery.submit_public_request(kind="erasure", photo=[a, b], contact="me@example.org", client="c1")
    assert done["photos"] == 2
    _, sealed, _ = gallery.store.registers.public_request_template(done["request_id"])
    assert sealed.size == 2 * fakes.FAKE_SPEC.dim
    entry = gallery.audit_entries(action="request.public")[-1]
    assert entry.details["probe_sha256s"] == [_sha(a), _sha(b)]
    receipt = gallery.fulfil_request(done["request_id"])["result"]
    assert len(receipt["removed_images"]) == 2 and receipt["probe_sha256s"] == [_sha(a), _sha(b)]


def test_a_public_request_with_one_photo_is_sealed_as_before(gallery, fakes):
    a = _png(fakes, PROBE_A)
    done = gallery.submit_public_request(kind="access", photo=a, contact="me@example.org", client="c2")
    _, sealed, _ = gallery.store.registers.public_request_template(done["request_id"])
    assert sealed.shape == (fakes.FAKE_SPEC.dim,)
    report = gallery.fulfil_request(done["request_id"])["result"]
    assert [i["original_path"].rsplit("/", 1)[-1] for i in report["images"]] == ["near-a.png"]


def test_a_public_request_cannot_ask_for_two_people_at_once_and_the_attempt_counts(gallery, fakes):
    with pytest.raises(ProbeChoiceError, match="does not match"):
        gallery.submit_public_request(kind="access", photo=[_png(fakes, PROBE_A), _png(fakes, OTHER)],
                                      contact="me@example.org", client="c3")
    assert gallery.requests() == []
    from vultus.errors import RateLimitedError

    for _ in range(2):
        with pytest.raises(ProbeChoiceError):
            gallery.submit_public_request(kind="access", photo=[_png(fakes, PROBE_A), _png(fakes, OTHER)],
                                          contact="me@example.org", client="c3")
    with pytest.raises(RateLimitedError):
        gallery.submit_public_request(kind="access", photo=_png(fakes, PROBE_A), contact="me@example.org", client="c3")
