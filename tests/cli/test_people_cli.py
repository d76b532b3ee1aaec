"""`vultus source set` and `vultus people ...` in process with click's CliRunner, on the fake models.

A coloured square is a person (:mod:`vultus.testing`): these need neither dlib nor the shared photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vultus.cli import cli


@pytest.fixture
def run(tmp_path: Path):
    import vultus.testing  # noqa: F401 - registers the fake models the commands are run with

    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["--data", str(tmp_path / "data"), "--detector", "fake", "--embedder", "fake",
                                     "--actor", "archivist", *args], catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        if not ok:
            assert result.exit_code in (1, 2) and "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def photos(tmp_path: Path):
    from vultus.testing import Square, square_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    for n, colour in enumerate(["red", "red", "red", "blue", "blue", "green"]):
        (folder / f"{n}-{colour}.jpg").write_bytes(square_photo([Square(colour, 20 + 9 * n, 40)]))
    return folder


def _people(run) -> dict[str, dict]:
    found = {}
    for person in json.loads(run("people", "list", "--source", "news", "--json").stdout):
        colours = {f["path"].rsplit("-", 1)[-1].removesuffix(".jpg") for f in person["faces"]}
        found[colours.pop() if len(colours) == 1 else "mixed"] = person
    return found


def _faces(person: dict) -> set[int]:
    return {f["face_id"] for f in person["faces"]}


@pytest.fixture
def clustered(run, photos):
    run("source", "add", "news", "--basis", "legitimate-interests", "--purpose", "archive", "--retention", "365d",
        "--clustering", "--clustering-note", "DPIA 2026-04")
    run("ingest", str(photos), "--source", "news", "--workers", "1")
    out = run("people", "cluster", "--source", "news").output
    assert "Grouped 5 of 6 face(s)" in out and "into 2 people" in out and "1 left unassigned" in out
    return run


def test_source_add_and_set_switch_clustering_and_source_list_says_so(run):
    run("source", "add", "news", "--basis", "consent", "--purpose", "archive", "--retention", "30d")
    assert json.loads(run("source", "list", "--json").stdout)[0]["clustering"] is False
    out = run("source", "set", "news", "--clustering", "--clustering-note", "DPIA 9").output
    assert "now groups its faces" in out and "people cluster --source news" in out
    assert json.loads(run("source", "list", "--json").stdout)[0]["clustering"] is True
    assert "already allows" in run("source", "set", "news", "--clustering").output
    done = json.loads(run("source", "set", "news", "--no-clustering", "--json").stdout)
    # The source as `source list --json` shows it, with what the switch changed.
    assert done["name"] == "news" and done["clustering"] is False
    assert done["clustering_change"] == {"source": "news", "clustering": False, "changed": True,
                                         "deleted": {"people": 0, "named": 0, "forgotten_faces": 0}}
    assert "Say what to change" in run("source", "set", "news", ok=False).output
    assert "goes with --clustering" in run("source", "set", "news", "--no-clustering", "--clustering-note", "x",
                                           ok=False).output
    assert "No source is named 'nope'" in run("source", "set", "nope", "--clustering", ok=False).output
    entries = json.loads(run("audit", "list", "--action", "people.clustering", "--json").stdout)
    assert [(e["actor"], e["details"]["enabled"]) for e in entries] == [("archivist", True), ("archivist", False)]


def test_people_list_and_show_print_tables_and_json(clustered):
    run = clustered
    people = _people(run)
    assert sorted(people) == ["blue", "red"]
    table = run("people", "list").output
    assert table.splitlines()[0].split() == ["id", "name", "faces", "source", "cover"]
    shown = json.loads(run("people", "show", str(people["red"]["id"]), "--json").stdout)
    assert shown["count"] == 3 and {"face_id", "path", "box"} <= set(shown["faces"][0])
    text = run("people", "show", str(people["red"]["id"])).output
    assert f"Person {people['red']['id']} (no name) in source 'news': 3 face(s)" in text
    for face in shown["faces"]:
        assert str(face["face_id"]) in text and face["path"] in text


def test_rename_merge_split_and_forget_survive_a_rerun(clustered, photos):
    run = clustered
    people = _people(run)
    red, blue = people["red"], people["blue"]
    assert "is now 'Ann'" in run("people", "name", str(red["id"]), "Ann").output
    leaving = sorted(_faces(red))[0]
    new = json.loads(run("people", "split", str(red["id"]), "--faces", str(leaving), "--json").stdout)
    merged = json.loads(run("people", "merge", str(blue["id"]), str(new["id"]), "--json").stdout)
    assert merged["id"] == blue["id"] and merged["count"] == 3
    run("people", "cluster", "--source", "news")
    after = {p["id"]: p for p in json.loads(run("people", "list", "--json").stdout)}
    assert (after[red["id"]]["name"], _faces(after[red["id"]])) == ("Ann", _faces(red) - {leaving})
    assert _faces(after[blue["id"]]) == _faces(blue) | {leaving}
    out = run("people", "forget", str(blue["id"])).output
    assert f"Forgot person {blue['id']}" in out and "3 face(s) stay" in out
    run("people", "cluster", "--source", "news")
    assert set(p["id"] for p in json.loads(run("people", "list", "--json").stdout)) == {red["id"]}
    assert "has no name now" in run("people", "name", str(red["id"]), "--clear").output
    actions = [e["action"] for e in json.loads(run("audit", "list", "--json").stdout)]
    for action in ("people.name", "people.split", "people.merge", "people.forget", "people.cluster", "people.list"):
        assert action in actions
    assert "Ann" not in run("audit", "export").output


@pytest.mark.parametrize("args,message", [
    (("people", "show", "999"), "There is no person 999"),
    (("people", "show", "0"), "0 is not in the range x>=1"),
    (("people", "name", "RED"), "Give either a NAME or --clear"),
    (("people", "name", "RED", "Ann", "--clear"), "Give either a NAME or --clear"),
    (("people", "name", "RED", " "), "The name is empty"),
    (("people", "merge", "RED"), "at least two different person ids"),
    (("people", "merge", "RED", "999"), "There is no person 999"),
    (("people", "split", "RED"), "Missing option '--faces'"),
    (("people", "split", "RED", "--faces", "x1"), "'x1' is not a face id"),
    (("people", "split", "RED", "--faces", "BLUEFACE"), "not among person"),
    (("people", "cluster", "--source", "plain"), "does not allow grouping"),
    (("people", "list", "--source", "plain"), "source set plain --clustering"),
    (("people", "forget", "999"), "There is no person 999"),
])
def test_bad_input_is_one_clear_message_and_changes_nothing(clustered, args, message):
    run = clustered
    run("source", "add", "plain", "--basis", "consent", "--purpose", "p", "--retention", "30d")
    people = _people(run)
    swap = {"RED": str(people["red"]["id"]), "BLUEFACE": str(sorted(_faces(people["blue"]))[0])}
    result = run(*[swap.get(a, a) for a in args], ok=False)
    assert message in result.output
    assert {c: (p["id"], p["name"], _faces(p)) for c, p in _people(run).items()} == \
        {c: (p["id"], p["name"], _faces(p)) for c, p in people.items()}


def test_split_takes_ids_separated_by_commas_or_repeated(clustered):
    run = clustered
    red = _people(run)["red"]
    a, b, _ = sorted(_faces(red))
    one = json.loads(run("people", "split", str(red["id"]), "--faces", f"{a},{b}", "--json").stdout)
    assert _faces(one) == {a, b}
    back = json.loads(run("people", "merge", str(red["id"]), str(one["id"]), "--json").stdout)
    two = json.loads(run("people", "split", str(back["id"]), "--faces", str(a), "--faces", str(b), "--json").stdout)
    assert _faces(two) == {a, b}
