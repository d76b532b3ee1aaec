"""Erasure of a person and their people groups, on real faces (issue 15, acceptance 4).

Erasing a person removes their faces from every people group, the name given to a group of
only their faces, and every template derived from them (the group's centroid); a group that
keeps other faces keeps its name and gets its centroid made again from those. Nothing of the
erased name or centroid is left in the data directory, and access reports list the groups a
person's faces are in, with their names.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import vultus
from vultus.faces.clustering import centroid

KEPT = {"facerec_obama": ["1.jpg", "2.jpg", "3.jpg"], "deepface_jack": ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]}
#: Photos of the same people that were never ingested: the requesters' photos.
PROBES = {"facerec_obama": "4.jpg", "deepface_jack": "5.jpg"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    """A source that groups its faces, with 3 photos of Obama and 4 of Jack (two of them with someone
else too), clustered; built once."""
    data = tmp_path_factory.mktemp("people") / "data"
    with vultus.open(data, actor="archivist") as engine:
        engine.add_source("archive", basis="legitimate-interests", purpose="archive research", retention="365d",
                          clustering=True, clustering_note="DPIA 2026-04")
        engine.ingest([faces_root / who / name for who, names in KEPT.items() for name in names], source="archive",
                      workers=1)
        engine.people.cluster("archive")
    return data


@pytest.fixture
def engine(prepared: Path, tmp_path: Path):
    copy = Path(shutil.copytree(prepared, tmp_path / "data"))
    with vultus.open(copy, actor="dpo") as opened:
        yield opened


def _group_of(engine, faces_root: Path, who: str) -> dict:
    """The one group that holds the faces the requester's photo matches, and only those (what the
    clustering must give; the photos also show other people, who are grouped apart)."""
    matched = {hit.face_id for hit, _ in engine.match_person(faces_root / who / PROBES[who]).faces}
    assert len(matched) == len(KEPT[who])
    groups = [p for p in engine.people.list(source="archive") if _faces(p) & matched]
    assert len(groups) == 1, f"{who}'s faces are in {len(groups)} groups: {groups}"
    assert _faces(groups[0]) == matched
    return groups[0]


def _faces(group: dict) -> set[int]:
    return {f["face_id"] for f in group["faces"]}


def _sealed(engine, person_id: int) -> tuple[bytes | None, bytes]:
    with sqlite3.connect(engine.data_dir / "vultus.db") as conn:
        return conn.execute("SELECT name, centroid FROM people WHERE id = ?", (person_id,)).fetchone()


def _files_with(data: Path, needle: bytes) -> list[Path]:
    return [p for p in data.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _erase(engine, faces_root: Path, who: str) -> dict:
    return engine.erase(engine.match_person(faces_root / who / PROBES[who]))


def test_erasing_a_person_deletes_their_group_its_name_and_centroid_and_leaves_no_copy(engine, faces_root: Path):
    obama, jack = _group_of(engine, faces_root, "facerec_obama"), _group_of(engine, faces_root, "deepface_jack")
    engine.people.name(obama["id"], "Barack Obama")
    engine.people.name(jack["id"], "Jack")
    name, middle = _sealed(engine, obama["id"])
    jack_before = _sealed(engine, jack["id"])
    assert _files_with(engine.data_dir, name) and _files_with(engine.data_dir, middle)

    receipt = _erase(engine, faces_root, "facerec_obama")

    assert receipt["people_groups"] == {"updated": 0, "deleted": 1, "names_erased": 1}
    with sqlite3.connect(engine.data_dir / "vultus.db") as conn:
        ids = ",".join(map(str, _faces(obama)))
        assert conn.execute(f"SELECT count(*) FROM person_faces WHERE face_id IN ({ids})").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM people WHERE id = ?", (obama["id"],)).fetchone() == (0,)
    assert jack["id"] in [p["id"] for p in engine.people.list()]
    # Jack's group is untouched: same faces, name, and the very same sealed centroid.
    assert _faces(engine.people.show(jack["id"])) == _faces(jack) and _sealed(engine, jack["id"]) == jack_before
    assert not _files_with(engine.data_dir, name) and not _files_with(engine.data_dir, middle)
    assert not _files_with(engine.data_dir, b"Barack Obama")
    assert "Barack Obama" not in json.dumps([e.as_dict() for e in engine.audit_entries()])
    again = engine.access(faces_root / "facerec_obama" / PROBES["facerec_obama"])
    assert again["images"] == [] and again["people"] == []
    assert engine.verify_audit().ok


def test_a_named_group_that_keeps_other_faces_keeps_its_name_and_its_centroid_is_made_again(engine, faces_root: Path):
    obama, jack = _group_of(engine, faces_root, "facerec_obama"), _group_of(engine, faces_root, "deepface_jack")
    # A user merged Obama's faces into Jack's group by mistake (3 of its 7 faces), and named it.
    merged = engine.people.merge([jack["id"], obama["id"]])
    engine.people.name(merged["id"], "Jack")
    _, mixed = _sealed(engine, jack["id"])

    receipt = _erase(engine, faces_root, "facerec_obama")

    assert receipt["people_groups"] == {"updated": 1, "deleted": 0, "names_erased": 0}
    after = engine.people.show(jack["id"])
    assert (after["name"], _faces(after)) == ("Jack", _faces(jack))
    _, vectors = next(engine.store.face_vectors(sorted(_faces(jack))))
    ids, centroids, sizes = engine.store.people.centroids(engine.store.get_source("archive").id, engine.analyzer.model_id)
    row = list(ids).index(jack["id"])
    assert obama["id"] not in ids and sizes[row] == len(KEPT["deepface_jack"])
    assert np.allclose(centroids[row], centroid(vectors), atol=1e-6)
    assert not _files_with(engine.data_dir, mixed)  # the centroid made with Obama's templates is gone


def test_an_access_report_lists_the_groups_of_the_persons_faces_with_their_names(engine, faces_root: Path):
    jack = _group_of(engine, faces_root, "deepface_jack")
    engine.people.name(jack["id"], "Jack")
    report = engine.access(faces_root / "deepface_jack" / PROBES["deepface_jack"])
    [group] = report["people"]
    assert (group["person_id"], group["source"], group["name"], group["faces_in_group"]) == (jack["id"], "archive", "Jack", 4)
    assert set(group["face_ids"]) == _faces(jack)
