"""Purposes per source at the command line: `source add --purposes`, `source set`, `source list`,
on the fake models, in process."""

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
    assert "Nothing to change" in run("source", "set", "custody", code=1).output
    assert "No source is named 'nosuch'" in run("source", "set", "nosuch", "--purposes", "archive", code=1).output
    bad_add = run("source", "add", "x", "--basis", "consent", "--purpose", "p", "--retention", "1d",
                  "--purposes", "journalism,spying", code=1).output
    assert "'spying'" in bad_add
    assert json.loads(run("source", "list", "--json").stdout) == [
        {**json.loads(run("source", "list", "--json").stdout)[0], "purposes": ["investigation", "missing-persons"]}]
    audit = json.loads(run("audit", "list", "--action", "source.set", "--json").stdout)
    assert [(e["actor"], e["details"]["before"], e["details"]["after"]) for e in audit] == [
        ("cli-test", {"purposes": ["investigation"]}, {"purposes": ["investigation", "missing-persons"]})]
