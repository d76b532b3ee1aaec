"""Purposes per source at the command line: `source add --purposes`, `source set`, `source list`,
`search --category`, on the fake models (a coloured square is a person), in process.

The same red person is in a newsroom's photos and in police custody's; a search for
journalism never returns custody's faces and names custody as left out, with what it allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vultus.cli import cli


@pytest.fixture
def fakes():
    import vultus.testing  # registers the fake detector and embedder, at run time

    return vultus.testing


@pytest.fixture
def run(tmp_path: Path, fakes):
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(cli, ["--data", str(tmp_path / "data"), "--detector", "fake", "--embedder", "fake",
                                     "--actor", "cli-test", *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


@pytest.fixture
def photos(tmp_path: Path, fakes) -> dict[str, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    made = {"news-red.jpg": (["red"], (640, 480)), "news-green.jpg": (["green"], (640, 480)),
            "custody-red.jpg": (["red"], (800, 600)), "custody-blue.jpg": (["blue"], (640, 480)),
            "probe.jpg": (["red"], (500, 400))}
    for name, (squares, size) in made.items():
        (folder / name).write_bytes(fakes.square_photo(squares, size=size))
    return {name: folder / name for name in made}


def _two_sources(run, photos) -> None:
    run("source", "add", "news", "--basis", "legitimate-interests", "--purpose", "newsroom", "--retention", "30d",
        "--purposes", "journalism,archive")
    run("source", "add", "custody", "--basis", "legal-obligation", "--purpose", "police custody photos",
        "--retention", "30d")
    run("ingest", str(photos["news-red.jpg"]), str(photos["news-green.jpg"]), "--source", "news", "--workers", "1",
        "--no-progress")
    run("ingest", str(photos["custody-red.jpg"]), str(photos["custody-blue.jpg"]), "--source", "custody",
        "--workers", "1", "--no-progress")


def test_a_source_without_purposes_gets_the_closest_category_and_says_so(run):
    out = run("source", "add", "custody", "--basis", "legal-obligation", "--purpose", "police custody photos",
              "--retention", "30d").output
    assert "Searchable for: investigation, the category closest to its purpose text" in out
    assert "vultus source set custody --purposes" in out
    given = run("source", "add", "news", "--basis", "consent", "--purpose", "p", "--retention", "1d",
                "--purposes", "archive", "--purposes", "journalism", "--json")
    assert json.loads(given.stdout)["purposes"] == ["journalism", "archive"] and "closest" not in given.output
    chosen = run("source", "add", "shoots", "--basis", "consent", "--purpose", "wedding photos", "--retention", "1d",
                 "--json")
    assert json.loads(chosen.stdout)["purposes"] == ["event-delivery"]
    assert "closest to its purpose text" in chosen.stderr
    listed = json.loads(run("source", "list", "--json").stdout)
    assert {s["name"]: s["purposes"] for s in listed} == {"custody": ["investigation"], "news": ["journalism", "archive"],
                                                          "shoots": ["event-delivery"]}
    table = run("source", "list").output
    assert "searchable for" in table and "journalism,archive" in table and "investigation" in table


def test_source_set_changes_the_categories_and_bad_ones_change_nothing(run):
    run("source", "add", "custody", "--basis", "legal-obligation", "--purpose", "police", "--retention", "30d")
    out = run("source", "set", "custody", "--purposes", "investigation,missing-persons").output
    assert "searchable for: investigation, missing-persons (was: investigation)" in out
    bad = run("source", "set", "custody", "--purposes", "gossip", code=1).output
    assert "'gossip'" in bad and "journalism, archive, investigation, missing-persons, event-delivery" in bad
    assert "Traceback" not in bad
    assert "Say what to change" in run("source", "set", "custody", code=2).output
    assert "No source is named 'nosuch'" in run("source", "set", "nosuch", "--purposes", "archive", code=1).output
    bad_add = run("source", "add", "x", "--basis", "consent", "--purpose", "p", "--retention", "1d",
                  "--purposes", "journalism,spying", code=1).output
    assert "'spying'" in bad_add
    assert json.loads(run("source", "list", "--json").stdout) == [
        {**json.loads(run("source", "list", "--json").stdout)[0], "purposes": ["investigation", "missing-persons"]}]
    audit = json.loads(run("audit", "list", "--action", "source.set", "--json").stdout)
    assert [(e["actor"], e["details"]["before"], e["details"]["after"]) for e in audit] == [
        ("cli-test", {"purposes": ["investigation"]}, {"purposes": ["investigation", "missing-persons"]})]


def test_a_search_for_journalism_never_returns_custody_and_names_it_left_out(run, photos):
    _two_sources(run, photos)
    probe = str(photos["probe.jpg"])
    out = run("search", probe, "--purpose", "verify a caption", "--case", "J-1", "--category", "journalism").output
    assert "Left out: custody (allows investigation; not journalism)." in out
    assert "Searched the sources that allow journalism: news." in out
    assert "news-red.jpg" in out and "custody-red.jpg" not in out
    result = run("search", probe, "--purpose", "verify a caption", "--case", "J-2", "--category", "Journalism",
                 "--json")
    found = json.loads(result.stdout)  # stdout stays the array of candidates
    assert [Path(c["path"]).name for c in found] == ["news-red.jpg"] and {c["source"] for c in found} == {"news"}
    assert "Left out: custody (allows investigation; not journalism)." in result.stderr
    police = json.loads(run("search", probe, "--purpose", "suspect", "--case", "I-1", "--category",
                            "investigation", "--json").stdout)
    assert [Path(c["path"]).name for c in police] == ["custody-red.jpg"]
    # No --category: the default, archive, which the newsroom allows and custody does not.
    default = run("search", probe, "--purpose", "p", "--case", "D-1").output
    assert "Left out: custody (allows investigation; not archive)." in default and "custody-red.jpg" not in default
    entries = json.loads(run("audit", "list", "--action", "search", "--json").stdout)
    assert [(e["details"]["category"], [x["source"] for x in e["details"]["left_out"]]) for e in entries] == [
        ("journalism", ["custody"]), ("journalism", ["custody"]), ("investigation", ["news"]), ("archive", ["custody"])]


def test_no_source_for_the_category_is_a_clear_empty_result_and_an_unknown_one_logs_nothing(run, photos):
    _two_sources(run, photos)
    probe = str(photos["probe.jpg"])
    out = run("search", probe, "--purpose", "deliver", "--case", "E-1", "--category", "event-delivery").output
    assert "No source may be searched for event-delivery, so nothing was searched." in out
    assert "custody (allows investigation; not event-delivery)" in out
    assert "news (allows journalism, archive; not event-delivery)" in out and "Traceback" not in out
    searches = len(json.loads(run("audit", "list", "--action", "search", "--json").stdout))
    assert searches == 1  # it was still a search, logged
    bad = run("search", probe, "--purpose", "p", "--case", "c", "--category", "surveillance", code=2).output
    assert "'surveillance' is not one of" in bad and "journalism" in bad and "Traceback" not in bad
    assert len(json.loads(run("audit", "list", "--action", "search", "--json").stdout)) == searches
    # A source that allows it but holds no face yet: searched, nothing found, and said so.
    run("source", "add", "shoots", "--basis", "consent", "--purpose", "p", "--retention", "1d",
        "--purposes", "event-delivery")
    empty = run("search", probe, "--purpose", "deliver", "--case", "E-2", "--category", "event-delivery").output
    assert "Searched the sources that allow event-delivery: shoots." in empty
    assert "among 0 indexed faces. The sources searched hold no face yet." in empty


def test_a_bad_default_category_is_named_with_its_variable(run, photos, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VULTUS_DEFAULT_CATEGORY", "surveillance")
    out = run("source", "list", code=1).output
    assert "VULTUS_DEFAULT_CATEGORY is 'surveillance'" in out and "journalism" in out
    monkeypatch.setenv("VULTUS_DEFAULT_CATEGORY", "investigation")
    _two_sources(run, photos)
    police = json.loads(run("search", str(photos["probe.jpg"]), "--purpose", "p", "--case", "c", "--json").stdout)
    assert [Path(c["path"]).name for c in police] == ["custody-red.jpg"]
