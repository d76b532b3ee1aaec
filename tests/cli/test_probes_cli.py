"""`vultus search` and the rights commands with several photos of one person, on real faces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vultus.cli import cli
from vultus.probes import MAX_PROBES


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    """A data directory with Obama and Biden ingested into 'news' (copied per test that changes it)."""
    folder = tmp_path_factory.mktemp("probes-cli") / "data"
    runner = CliRunner()
    for args in (["source", "add", "news", "--basis", "legitimate-interests", "--purpose", "archive", "--retention",
                  "365d"], ["ingest", str(faces_root / "facerec_obama"), str(faces_root / "facerec_biden"),
                            "--source", "news", "--workers", "1"]):
        result = runner.invoke(cli, ["--data", str(folder), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return folder


def _run(data: Path, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, ["--data", str(data), *args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _searches(data: Path) -> int:
    return len(json.loads(_run(data, "audit", "list", "--action", "search", "--json").stdout))


def test_search_with_two_photos_fuses_them_and_says_how_many_probe_faces(data: Path, faces_root: Path):
    one, three = faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_obama" / "3.jpg"
    result = _run(data, "search", str(one), str(three), "--purpose", "p", "--case", "C-1", "--json")
    found = json.loads(result.stdout)
    assert "Searched as one person with 2 probe faces" in result.stderr
    assert {Path(c["path"]).name for c in found} == {"1.jpg", "2.jpg", "3.jpg", "4.jpg"}
    assert all(len(c["probe_similarities"]) == 2 for c in found)
    # Each probe photo is its own best match: similarity 1 to itself, fused as the best.
    by_name = {Path(c["path"]).name: c for c in found}
    assert by_name["1.jpg"]["probe_similarities"][0] == pytest.approx(1.0, abs=0.01)
    assert by_name["3.jpg"]["probe_similarities"][1] == pytest.approx(1.0, abs=0.01)
    text = _run(data, "search", str(one), str(three), "--purpose", "p", "--case", "C-2").output
    assert "2 probe faces" in text and "by probe" in text
    entry = json.loads(_run(data, "audit", "list", "--action", "search", "--json").stdout)[-1]
    assert entry["details"]["probe_sha256s"] == [_sha(one), _sha(three)]
    assert entry["details"]["probe_sha256"] == _sha(one) and entry["details"]["probe_faces_used"] == 2


def test_search_errors_with_several_photos_name_the_photo_and_log_nothing(data: Path, faces_root: Path):
    obama = faces_root / "facerec_obama"
    before = _searches(data)
    noface = _run(data, "search", str(obama / "1.jpg"), str(faces_root / "_noface" / "017_0.jpg"),
                  "--purpose", "p", "--case", "c", ok=False)
    assert "017_0.jpg" in noface.output and "no face was found" in noface.output
    assert "Traceback" not in noface.output
    many = _run(data, "search", *[str(obama / f"{n}.jpg") for n in (1, 2, 3, 4, 1, 2)][:MAX_PROBES + 1],
                "--purpose", "p", "--case", "c", ok=False)
    assert f"at most {MAX_PROBES}" in many.output
    face = _run(data, "search", str(obama / "1.jpg"), str(obama / "2.jpg"), "--face", "1",
                "--purpose", "p", "--case", "c", ok=False)
    assert "--face 1 picks a face in one probe photo" in face.output
    assert _searches(data) == before


def test_erasure_with_photos_of_two_people_is_refused_naming_the_photo(data: Path, faces_root: Path):
    biden = faces_root / "facerec_biden" / "1.jpg"
    refused = _run(data, "erase", str(faces_root / "facerec_obama" / "1.jpg"), str(biden), "--yes", ok=False)
    assert str(biden) in refused.output and "does not match" in refused.output
    assert json.loads(_run(data, "stats", "--json").stdout)["images"] == 6


def test_access_and_erasure_with_two_photos_find_and_remove_every_photo(data: Path, faces_root: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    two, four = faces_root / "facerec_obama" / "2.jpg", faces_root / "facerec_obama" / "4.jpg"
    access = _run(copy, "access", str(two), str(four)).output
    assert "4 photo(s)" in access and "matching any of 2 probe faces" in access
    receipt = json.loads(_run(copy, "erase", str(two), str(four), "--yes", "--json").stdout)
    assert sorted(receipt["removed_images"]) == sorted(_sha(p) for p in (faces_root / "facerec_obama").iterdir())
    assert receipt["probe_sha256s"] == [_sha(two), _sha(four)]
    assert json.loads(_run(copy, "stats", "--json").stdout)["images"] == 2  # Biden's


def test_objection_with_two_photos_makes_one_suppression_entry_per_face(data: Path, faces_root: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    out = _run(copy, "object", str(faces_root / "facerec_biden" / "1.jpg"), str(faces_root / "facerec_biden" / "2.jpg"),
               "--yes").output
    assert "Suppression entries 1, 2 (one per probe face)" in out
    assert len(json.loads(_run(copy, "suppressions", "list", "--json").stdout)) == 2


def test_the_help_of_each_command_taking_photos_says_several_may_be_given():
    for command in ("search", "access", "erase", "object", "restrict"):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())  # as read, not as wrapped
        assert "PHOTO [PHOTO...]" in text, command
        assert "one PHOTO only" in text, command  # --face
