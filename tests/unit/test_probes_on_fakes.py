"""Several probe photos of one person, on the fake models: fusion and search.

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
