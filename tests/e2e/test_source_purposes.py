"""Purposes per source on real faces (COMPLIANCE.md 3; issue 15, acceptance 5).

Two sources hold photos of the same person: a newsroom (journalism, archive) and a police
custody collection (investigation). A search for journalism with another photo of the person
never returns custody's photos of them, however similar, and names custody as left out; a
search for investigation finds custody's and not the newsroom's; rights requests cover both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli

#: Photos of Jack and Obama split between the two sources; the last of Jack's is the probe.
NEWS = {"deepface_jack": ["1.jpg", "2.jpg"], "facerec_obama": ["1.jpg", "2.jpg"]}
CUSTODY = {"deepface_jack": ["3.jpg", "4.jpg"], "facerec_biden": ["1.jpg", "2.jpg"]}
PROBE = ("deepface_jack", "5.jpg")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    data = tmp_path_factory.mktemp("purposes") / "data"
    with vultus.open(data, actor="setup") as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="picture desk", retention="365d",
                          purposes="journalism,archive")
        engine.add_source("custody", basis="legal-obligation", purpose="police custody photographs",
                          retention="365d")
        for source, photos in (("news", NEWS), ("custody", CUSTODY)):
            engine.ingest([faces_root / person / name for person, names in photos.items() for name in names],
                          source=source, workers=1)
    return data


def _paths(faces_root: Path, photos: dict[str, list[str]], person: str) -> set[str]:
    return {str(faces_root / person / name) for name in photos.get(person, [])}


def test_a_search_for_journalism_never_returns_the_custody_photos_of_the_same_person(data: Path, faces_root: Path):
    probe = faces_root.joinpath(*PROBE)
    with vultus.open(data, actor="investigator") as engine:
        assert {s.name: s.purposes for s in engine.sources()} == {"custody": ("investigation",),
                                                                  "news": ("journalism", "archive")}
        # At threshold 0 and top 20 every face searched is ranked: all of the newsroom's, none of custody's.
        press = engine.search(probe, purpose="verify a caption", case="E2E-1", category="journalism", top=20,
                              threshold=0.0)
        news_faces = engine.store.source_face_ids([engine.store.get_source("news").id]).tolist()
        assert {c.face_id for c in press.candidates} == set(news_faces) and {c.source for c in press.candidates} == {"news"}
        assert {c.path for c in press.candidates[:2]} == _paths(faces_root, NEWS, "deepface_jack")
        assert not {c.path for c in press.candidates} & _paths(faces_root, CUSTODY, "deepface_jack")
        assert [(e.source, e.allows) for e in press.left_out] == [("custody", ("investigation",))]
        police = engine.search(probe, purpose="identify a suspect", case="E2E-2", category="investigation")
        assert {c.path for c in police.candidates} == _paths(faces_root, CUSTODY, "deepface_jack")
        assert [e.source for e in police.left_out] == ["news"]
        # The person is in both: the rights of the person in the photos cover every source.
        match = engine.match_person(probe)
        held = {hit.original_path for hit, _ in match.faces}
        assert _paths(faces_root, NEWS, "deepface_jack") | _paths(faces_root, CUSTODY, "deepface_jack") <= held


def test_the_command_line_names_the_source_left_out(data: Path, faces_root: Path):
    runner = CliRunner()
    probe = str(faces_root.joinpath(*PROBE))
    out = runner.invoke(cli, ["--data", str(data), "search", probe, "--purpose", "verify a caption", "--case",
                              "E2E-3", "--category", "journalism"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "Left out: custody (allows investigation; not journalism)." in out.output
    assert "deepface_jack/1.jpg" in out.output and "deepface_jack/3.jpg" not in out.output
    as_json = runner.invoke(cli, ["--data", str(data), "search", probe, "--purpose", "verify a caption", "--case",
                                  "E2E-4", "--category", "journalism", "--json"], catch_exceptions=False)
    assert {c["source"] for c in json.loads(as_json.stdout)} == {"news"}
    assert "Left out: custody" in as_json.stderr
