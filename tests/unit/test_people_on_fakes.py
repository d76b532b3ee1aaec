"""People groups on the fake models: clustering allowed per source, placing at ingest, full runs,
a user's corrections surviving runs, erasure, restriction, key rotation and the audit.

A coloured square is a person (:mod:`vultus.testing`); photos of one colour at different places
are different photos of the same person.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import numpy as np
import pytest

from vultus.errors import ClusteringOffError, PeopleError, UnknownPersonError, UnknownSourceError
from vultus.faces.clustering import centroid
from vultus.store import NewAppearance, NewFace, iso, utcnow


@pytest.fixture
def photos(write_photo, fakes):
    """``photos(*colours, start=0)``: one photo per colour, each square somewhere else (so each photo is new)."""
    made = [0]

    def make(*colours: str) -> list:
        paths = []
        for colour in colours:
            n = made[0]
            made[0] += 1
            paths.append(write_photo(f"{n:03d}-{colour}.jpg", [fakes.Square(colour, 20 + 7 * (n % 40), 30 + 5 * (n // 40))]))
        return paths

    return make


@pytest.fixture
def grouped(fake_engine, photos):
    """A deployment whose source 'test' groups its faces, with 3 red, 2 blue and 1 green photo, clustered."""
    fake_engine.people.set_clustering("test", enabled=True, note="DPIA 2026-04")
    fake_engine.ingest(photos("red", "red", "red", "blue", "blue", "green"), source="test", workers=1)
    fake_engine.people.cluster("test")
    return fake_engine


def _by_colour(engine) -> dict[str, dict]:
    """The people of 'test', keyed by the colour of their faces' photos (each person one colour, or 'mixed')."""
    found = {}
    for person in engine.people.list(source="test"):
        colours = {f["path"].rsplit("-", 1)[-1].removesuffix(".jpg") for f in person["faces"]}
        found[colours.pop() if len(colours) == 1 else "mixed"] = person
    return found


def _faces(person: dict) -> set[int]:
    return {f["face_id"] for f in person["faces"]}


def _actions(engine, action: str) -> list:
    return engine.audit_entries(action=action)


# -- clustering is allowed per source, recorded and audited ----------------------------------------


def test_clustering_is_off_by_default_and_nothing_is_grouped(fake_engine, photos):
    fake_engine.ingest(photos("red", "red"), source="test", workers=1)
    with pytest.raises(ClusteringOffError, match="source set test --clustering"):
        fake_engine.people.cluster("test")
    with pytest.raises(ClusteringOffError):
        fake_engine.people.list(source="test")
    assert fake_engine.people.list() == []
    with pytest.raises(UnknownSourceError):
        fake_engine.people.set_clustering("nope", enabled=True)


def test_turning_clustering_on_records_who_when_and_the_legal_basis(fake_engine):
    done = fake_engine.people.set_clustering("test", enabled=True, note="DPIA 2026-04")
    assert done == {"source": "test", "clustering": True, "changed": True}
    [record] = fake_engine.people.clustering_sources()
    assert (record.source, record.enabled_by, record.legal_basis, record.note) == (
        "test", "unit-test", "legitimate-interests", "DPIA 2026-04")
    [entry] = _actions(fake_engine, "people.clustering")
    assert entry.details["enabled"] is True and entry.details["legal_basis"] == "legitimate-interests"
    assert entry.details["note"] == "DPIA 2026-04"
    # Once on, on again changes nothing and logs nothing.
    assert fake_engine.people.set_clustering("test", enabled=True)["changed"] is False
    assert len(_actions(fake_engine, "people.clustering")) == 1


def test_a_source_registered_with_clustering_allows_it_in_the_same_step(fake_engine):
    fake_engine.add_source("events", basis="consent", purpose="photos of the day", retention="30d",
                           consent_ref="form-7", clustering=True, clustering_note="consent form says so")
    assert [c.source for c in fake_engine.people.clustering_sources()] == ["events"]
    [entry] = _actions(fake_engine, "people.clustering")
    assert entry.details["consent_ref"] == "form-7"


def test_a_note_with_control_characters_is_refused_and_nothing_is_recorded(fake_engine):
    with pytest.raises(PeopleError, match="control characters"):
        fake_engine.people.set_clustering("test", enabled=True, note="line one\nline two")
    assert fake_engine.people.clustering_sources() == []


# -- full runs and placing at ingest -----------------------------------------------------------


def test_a_run_groups_each_colour_and_leaves_a_lone_face_unassigned(grouped):
    people = _by_colour(grouped)
    assert sorted(people) == ["blue", "red"]  # the single green face is too uncertain to group
    assert (people["red"]["count"], people["blue"]["count"]) == (3, 2)
    for person in people.values():
        assert person["name"] is None and person["cover"]["face_id"] in _faces(person)
        for face in person["faces"]:
            assert set(face) >= {"face_id", "path", "box"} and len(face["box"]) == 4
    [run] = _actions(grouped, "people.cluster")
    assert run.details["grouped"] == 5 and run.details["unassigned"] == 1 and run.details["people"] == 2


def test_the_centroid_is_sealed_and_is_the_mean_of_its_faces(grouped):
    red = _by_colour(grouped)["red"]
    source = grouped.store.get_source("test")
    ids, centroids, sizes = grouped.store.people.centroids(source.id, "fake-colour-v1")
    row = list(ids).index(red["id"])
    _, vectors = next(grouped.store.face_vectors(sorted(_faces(red))))
    assert np.allclose(centroids[row], centroid(vectors), atol=1e-6) and sizes[row] == 3
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        sealed = conn.execute("SELECT centroid FROM people WHERE id = ?", (red["id"],)).fetchone()[0]
    assert centroids[row].astype("<f4").tobytes() not in sealed


def test_ingest_places_a_new_face_into_the_nearest_person_and_leaves_others_unassigned(grouped, photos):
    red = _by_colour(grouped)["red"]
    grouped.ingest(photos("red", "magenta"), source="test", workers=1)
    after = _by_colour(grouped)
    assert after["red"]["id"] == red["id"] and after["red"]["count"] == 4
    assert "magenta" not in after  # near no one: left for a full run
    # The fixture's ingest came before any group existed: it placed none.
    first, placed = _actions(grouped, "people.place")
    assert (first.details["faces_placed"], first.details["left_unassigned"]) == (0, 6)
    assert placed.details == {"source": "test", "faces_placed": 1, "people": [red["id"]], "left_unassigned": 1}


def test_ingest_into_a_source_without_clustering_places_nothing(grouped, photos):
    grouped.add_source("other", basis="consent", purpose="p", retention="30d")
    before = len(_actions(grouped, "people.place"))
    grouped.ingest(photos("red"), source="other", workers=1)
    assert _by_colour(grouped)["red"]["count"] == 3 and len(_actions(grouped, "people.place")) == before


def test_a_second_run_changes_nothing_and_keeps_the_ids(grouped):
    before = {c: (p["id"], _faces(p)) for c, p in _by_colour(grouped).items()}
    figures = grouped.people.cluster("test")
    assert figures["faces_moved"] == 0 and figures["new_people"] == 0
    assert {c: (p["id"], _faces(p)) for c, p in _by_colour(grouped).items()} == before


def test_restricted_faces_are_left_out_of_runs_listings_and_centroids(grouped, fakes):
    red = _by_colour(grouped)["red"]
    match = grouped.match_person(fakes.square_photo([fakes.Square("red", 100, 100)]))
    grouped.restrict(match)
    assert "red" not in _by_colour(grouped)  # its faces are kept, but not processed
    figures = grouped.people.cluster("test")
    assert figures["left_out"]["restricted"] == 3
    grouped.restrict(grouped.match_person(fakes.square_photo([fakes.Square("red", 100, 100)])), lift=True)
    back = _by_colour(grouped)["red"]
    assert back["id"] == red["id"] and _faces(back) == _faces(red)


# -- a user's corrections survive runs (acceptance 3) ----------------------------------------------


def test_a_name_stays_with_its_faces_across_runs(grouped):
    red = _by_colour(grouped)["red"]
    named = grouped.people.name(red["id"], "  Ann Example ")
    assert named["name"] == "Ann Example" and all(f["pinned"] for f in named["faces"])
    grouped.people.cluster("test")
    after = _by_colour(grouped)["red"]
    assert (after["id"], after["name"], _faces(after)) == (red["id"], "Ann Example", _faces(red))
    [entry] = _actions(grouped, "people.name")
    assert entry.details == {"person_id": red["id"], "source": "test", "named": True, "had_name": False}
    dump = json.dumps([e.as_dict() for e in grouped.audit_entries()])
    assert "Ann Example" not in dump  # the audit log is kept for good; a name must be erasable
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        assert b"Ann Example" not in b"".join(r[0] for r in conn.execute("SELECT name FROM people WHERE name IS NOT NULL"))


def test_a_name_can_be_cleared(grouped):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    assert grouped.people.name(red["id"], None)["name"] is None
    assert grouped.people.show(red["id"])["name"] is None


def test_a_merge_stays_merged_across_runs_and_keeps_the_first_id_and_the_name(grouped):
    people = _by_colour(grouped)
    grouped.people.name(people["blue"]["id"], "Bo")
    merged = grouped.people.merge([people["red"]["id"], people["blue"]["id"]])
    assert merged["id"] == people["red"]["id"] and merged["count"] == 5 and merged["name"] == "Bo"
    with pytest.raises(UnknownPersonError):
        grouped.people.show(people["blue"]["id"])
    grouped.people.cluster("test")
    [only] = grouped.people.list(source="test")
    assert only["id"] == people["red"]["id"] and _faces(only) == _faces(people["red"]) | _faces(people["blue"])
    [entry] = _actions(grouped, "people.merge")
    assert entry.details["merged"] == [people["blue"]["id"]] and entry.details["names_dropped"] == 0


def test_a_split_stays_split_across_runs(grouped):
    red = _by_colour(grouped)["red"]
    leaving = sorted(_faces(red))[:1]
    new = grouped.people.split(red["id"], leaving)
    assert _faces(new) == set(leaving) and new["id"] != red["id"]
    grouped.people.cluster("test")
    kept = grouped.people.show(red["id"])
    assert _faces(kept) == _faces(red) - set(leaving)
    assert _faces(grouped.people.show(new["id"])) == set(leaving)
    [entry] = _actions(grouped, "people.split")
    assert entry.details == {"person_id": red["id"], "new_person_id": new["id"], "source": "test", "faces": 1}


def test_forgotten_faces_stay_in_the_gallery_and_are_not_regrouped(grouped, photos):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    done = grouped.people.forget(red["id"])
    assert done == {"forgotten": red["id"], "source": "test", "faces": 3}
    with pytest.raises(UnknownPersonError):
        grouped.people.show(red["id"])
    figures = grouped.people.cluster("test")
    assert figures["left_out"]["forgotten"] == 3 and "red" not in _by_colour(grouped)
    assert grouped.stats().faces == 6  # the faces themselves are kept
    # New photos of the same person form a group of their own at the next run, without the forgotten ones.
    grouped.ingest(photos("red", "red"), source="test", workers=1)
    grouped.people.cluster("test")
    again = _by_colour(grouped)["red"]
    assert again["count"] == 2 and not _faces(again) & _faces(red) and again["name"] is None


def test_turning_clustering_off_deletes_the_people_and_on_again_starts_afresh(grouped):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    grouped.people.forget(_by_colour(grouped)["blue"]["id"])
    done = grouped.people.set_clustering("test", enabled=False)
    assert done["deleted"] == {"people": 1, "named": 1, "forgotten_faces": 2}
    assert grouped.people.list() == []
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM forgotten_faces").fetchone() == (0,)
    grouped.people.set_clustering("test", enabled=True)
    grouped.people.cluster("test")
    assert sorted(_by_colour(grouped)) == ["blue", "red"]
    assert [e.details["enabled"] for e in _actions(grouped, "people.clustering")] == [True, False, True]


# -- refusals: clear, and nothing changed -----------------------------------------------------------


def test_bad_corrections_are_refused_clearly_and_change_nothing(grouped, fakes):
    people = _by_colour(grouped)
    red, blue = people["red"]["id"], people["blue"]["id"]
    before = {c: (p["id"], p["name"], _faces(p)) for c, p in _by_colour(grouped).items()}
    with pytest.raises(UnknownPersonError, match="no person 999"):
        grouped.people.show(999)
    with pytest.raises(UnknownPersonError):
        grouped.people.merge([red, 999])
    with pytest.raises(PeopleError, match="at least two"):
        grouped.people.merge([red, red])
    with pytest.raises(PeopleError, match="empty"):
        grouped.people.name(red, "   ")
    with pytest.raises(PeopleError, match="control characters"):
        grouped.people.name(red, "Ann\tB")
    with pytest.raises(PeopleError, match="at most 200"):
        grouped.people.name(red, "A" * 201)
    with pytest.raises(PeopleError, match=f"not among person {red}'s faces"):
        grouped.people.split(red, sorted(_faces(people["blue"])))
    with pytest.raises(PeopleError, match="every face"):
        grouped.people.split(red, sorted(_faces(people["red"])))
    with pytest.raises(PeopleError, match="Name the faces"):
        grouped.people.split(red, [])
    assert {c: (p["id"], p["name"], _faces(p)) for c, p in _by_colour(grouped).items()} == before
    assert not _actions(grouped, "people.merge") and not _actions(grouped, "people.split")
    assert blue


def test_people_of_two_sources_cannot_be_merged(grouped, photos):
    grouped.add_source("other", basis="consent", purpose="p", retention="30d", clustering=True)
    grouped.ingest(photos("red", "red"), source="other", workers=1)
    grouped.people.cluster("other")
    [theirs] = grouped.people.list(source="other")
    ours = _by_colour(grouped)["red"]
    with pytest.raises(PeopleError, match="different sources.*inside one source"):
        grouped.people.merge([ours["id"], theirs["id"]])
    assert grouped.people.show(theirs["id"])["count"] == 2


# -- erasure (acceptance 4) ------------------------------------------------------------------------


def test_erasing_a_person_removes_their_group_its_name_and_centroid(grouped, fakes):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    receipt = grouped.erase(grouped.match_person(fakes.square_photo([fakes.Square("red", 100, 100)])))
    assert receipt["people_groups"] == {"updated": 0, "deleted": 1, "names_erased": 1}
    with pytest.raises(UnknownPersonError):
        grouped.people.show(red["id"])
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        assert conn.execute("SELECT count(*) FROM person_faces WHERE face_id IN (%s)" %
                            ",".join(map(str, _faces(red)))).fetchone() == (0,)
    assert sorted(_by_colour(grouped)) == ["blue"]
    [entry] = _actions(grouped, "erasure")
    assert entry.details["people_groups"]["names_erased"] == 1


def test_a_group_that_loses_some_faces_gets_its_centroid_made_again(grouped, fakes, photos):
    # A stray green face merged into the blue person by a user: erasing green leaves blue's faces.
    people = _by_colour(grouped)
    grouped.ingest(photos("green"), source="test", workers=1)
    grouped.people.cluster("test")
    green = _by_colour(grouped)["green"]
    merged = grouped.people.merge([people["blue"]["id"], green["id"]])
    grouped.people.name(merged["id"], "Bo")
    receipt = grouped.erase(grouped.match_person(fakes.square_photo([fakes.Square("green", 100, 100)])))
    assert receipt["people_groups"] == {"updated": 1, "deleted": 0, "names_erased": 1}  # 2 of 4 faces: half
    after = grouped.people.show(merged["id"])
    assert _faces(after) == _faces(people["blue"]) and after["name"] is None
    source = grouped.store.get_source("test")
    ids, centroids, _ = grouped.store.people.centroids(source.id, "fake-colour-v1")
    _, vectors = next(grouped.store.face_vectors(sorted(_faces(after))))
    assert np.allclose(centroids[list(ids).index(merged["id"])], centroid(vectors), atol=1e-6)


def test_a_named_group_keeps_its_name_when_a_stray_face_of_someone_else_is_erased(grouped, fakes):
    people = _by_colour(grouped)
    merged = grouped.people.merge([people["red"]["id"], people["blue"]["id"]])  # 3 red, 2 blue
    grouped.people.name(merged["id"], "Ann")
    receipt = grouped.erase(grouped.match_person(fakes.square_photo([fakes.Square("blue", 100, 100)])))
    assert receipt["people_groups"]["names_erased"] == 0
    assert grouped.people.show(merged["id"])["name"] == "Ann"


def test_a_purge_deletes_the_groups_it_empties_and_a_named_group_that_keeps_faces_keeps_its_name(grouped):
    people = _by_colour(grouped)
    red, blue = people["red"], people["blue"]
    grouped.people.name(red["id"], "Ann")
    grouped.people.name(blue["id"], "Bo")
    # Two of the red photos and both blue ones were ingested long ago: they expire first.
    early = sorted(_faces(red))[:2] + sorted(_faces(blue))
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        conn.execute("UPDATE images SET expires_at = '2000-01-01T00:00:00Z' WHERE id IN "
                     f"(SELECT image_id FROM faces WHERE id IN ({','.join(map(str, early))}))")
    receipt = grouped.purge()
    assert receipt["people_groups"] == {"updated": 1, "deleted": 1, "names_erased": 1}
    [left] = grouped.people.list(source="test")
    assert (left["id"], left["name"], _faces(left)) == (red["id"], "Ann", _faces(red) - set(early))


def test_nothing_of_an_erased_name_or_centroid_is_left_in_the_data_directory(grouped, fakes):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        name, middle = conn.execute("SELECT name, centroid FROM people WHERE id = ?", (red["id"],)).fetchone()
    files = [p for p in grouped.data_dir.rglob("*") if p.is_file()]
    assert any(name in p.read_bytes() for p in files) and any(middle in p.read_bytes() for p in files)
    grouped.erase(grouped.match_person(fakes.square_photo([fakes.Square("red", 100, 100)])))
    for path in grouped.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert name not in data and middle not in data, path


def test_an_access_report_lists_the_groups_of_the_persons_faces_with_their_names(grouped, fakes):
    from vultus.report import access_report_html

    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann <Example>")
    report = grouped.access(fakes.square_photo([fakes.Square("red", 100, 100)]))
    assert report["people"] == [{"person_id": red["id"], "source": "test", "name": "Ann <Example>",
                                 "face_ids": sorted(_faces(red)), "faces_in_group": 3}]
    html = access_report_html(report)
    assert "Ann &lt;Example&gt;" in html and "Groups of faces taken to be one person (1)" in html
    assert _actions(grouped, "access")[-1].details["people_groups"] == 1


# -- video appearances: one item, whatever its rows -------------------------------------------------


def _store_video(engine, fakes) -> list[int]:
    """A video with a red appearance of two templates and a red appearance of one; their face ids."""
    appearances = []
    for number, shifts in ((0, [0, 5]), (1, [3])):
        box = (40, 60, 136, 156)
        faces = [NewFace(box, (), 0.99, fakes.colour_template(np.asarray(fakes.PALETTE["red"]) + s),
                         fakes.FAKE_SPEC.model_id, None) for s in shifts]
        appearances.append(NewAppearance(faces=faces, media_times=[2.0 + number + 0.5 * n for n in range(len(faces))],
                                         time_start=2.0 + number, time_end=3.0 + number, seen_at=[2.0 + number],
                                         still_key=None))
    now = utcnow()
    ids = engine.store.add_video(
        source_id=engine.store.get_source("test").id, sha256="ab" * 32, original_path="/footage/red.mp4",
        size_bytes=10, width=640, height=480, duration=10.0, format="MP4", ingested_at=iso(now),
        expires_at=iso(now + timedelta(days=30)), appearances=appearances)
    return ids


def test_a_video_appearance_is_grouped_listed_and_split_whole(grouped, fakes):
    ids = _store_video(grouped, fakes)
    grouped.people.cluster("test")
    red = next(p for p in grouped.people.list(source="test") if any(f["media"] == "video" for f in p["faces"]))
    video = [f for f in red["faces"] if f["media"] == "video"]
    assert [f["face_ids"] for f in video] == [ids[:2], ids[2:]]  # each appearance once, with all its rows
    assert red["count"] == 5 and video[0]["time_start"] == 2.0
    new = grouped.people.split(red["id"], [ids[1]])  # the second row of appearance 0
    assert [f["face_ids"] for f in new["faces"]] == [ids[:2]]
    with sqlite3.connect(grouped.data_dir / "vultus.db") as conn:
        rows = dict(conn.execute("SELECT face_id, person_id FROM person_faces WHERE face_id IN (?, ?)", ids[:2]))
    assert rows == {ids[0]: new["id"], ids[1]: new["id"]}


def test_ingest_places_a_video_appearance_into_the_nearest_person(grouped, tmp_path):
    import vultus.testing.media as fake_media

    red = _by_colour(grouped)["red"]
    clip = tmp_path / "clip.frames"
    clip.write_bytes(fake_media.frames_file([[], ["red"], ["red"], [], ["yellow"]]))
    with fake_media.fake_frames_decoder():
        summary = grouped.ingest([clip], source="test", workers=1)
    assert summary.appearances == 2
    after = grouped.people.show(red["id"])
    [video] = [f for f in after["faces"] if f["media"] == "video"]
    assert video["path"].endswith("clip.frames") and after["count"] == 4
    assert _actions(grouped, "people.place")[-1].details["left_unassigned"] == 1  # yellow is near no one


# -- keys and the audit ------------------------------------------------------------------------------


def test_a_key_rotation_reseals_names_and_centroids(grouped):
    red = _by_colour(grouped)["red"]
    grouped.people.name(red["id"], "Ann")
    done = grouped.rotate_keys()
    assert done["people"] == 2
    assert grouped.people.show(red["id"])["name"] == "Ann"
    assert len(grouped.store.people.centroids(grouped.store.get_source("test").id, "fake-colour-v1")[0]) == 2


def test_every_listing_and_change_is_audited_and_the_chain_verifies(grouped):
    red = _by_colour(grouped)["red"]
    grouped.people.show(red["id"])
    grouped.people.list()
    lists = _actions(grouped, "people.list")
    assert [e.details["source"] for e in lists] == ["test", None]
    assert _actions(grouped, "people.show")[-1].details == {"person_id": red["id"], "source": "test", "faces": 3}
    assert grouped.verify_audit().ok
