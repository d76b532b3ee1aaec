"""The command line, end to end on real photos, in process with click's CliRunner."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli


@pytest.fixture
def run(data_dir: Path):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["--data", str(data_dir), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    return invoke


def _add_source(run, name: str = "news") -> None:
    run("source", "add", name, "--basis", "legitimate-interests", "--purpose", "archive research",
        "--retention", "365d", "--controller", "Example News Ltd")


def test_source_add_and_list(run):
    _add_source(run)
    listed = json.loads(run("source", "list", "--json").stdout)
    assert listed[0]["name"] == "news" and listed[0]["legal_basis"] == "legitimate-interests"
    assert listed[0]["retention_days"] == 365 and listed[0]["controller"] == "Example News Ltd"
    assert "news" in run("source", "list").output
    bad = run("source", "add", "x", "--basis", "because", "--purpose", "p", "--retention", "1d", ok=False)
    assert "legitimate-interests" in bad.output
    dup = run("source", "add", "news", "--basis", "consent", "--purpose", "p", "--retention", "1d", ok=False)
    assert "already exists" in dup.output


def test_ingest_reports_faces_no_faces_and_refusals(run, faces_root: Path):
    _add_source(run)
    out = run("ingest", str(faces_root / "_formats"), str(faces_root / "_invalid"),
              str(faces_root / "_noface"), "--source", "news", "--workers", "1", "--json").stdout
    summary = json.loads(out)
    assert summary["images"] == 6 and summary["faces"] == 6
    assert summary["no_face"] == 2 and summary["duplicates"] == 0
    reasons = {Path(r["path"]).name: r["reason"] for r in summary["refused"]}
    assert set(reasons) == {"empty.png", "corrupted.png", "truncated.jpg"}
    assert "plain text" in reasons["empty.png"]
    assert "damaged" in reasons["corrupted.png"]
    assert "truncated" in reasons["truncated.jpg"]
    # Running it again finds everything already indexed and stores nothing new.
    again = json.loads(run("ingest", str(faces_root / "_formats"), "--source", "news", "--workers", "1", "--json").stdout)
    assert again["images"] == 0 and again["duplicates"] == 6
    stats = json.loads(run("stats", "--json").stdout)
    assert stats["faces"] == 6 and stats["index_vectors"] == 6 and stats["images"] == 8


def test_ingest_and_search_with_worker_processes(run, faces_root: Path):
    _add_source(run)
    out = run("ingest", str(faces_root / "facerec_obama"), str(faces_root / "facerec_biden"),
              "--source", "news", "--workers", "2").output
    assert "Indexed 6 photos with 6 faces" in out
    found = json.loads(run("search", str(faces_root / "_variants" / "facerec_obama_small.jpg"),
                           "--purpose", "verification", "--case", "CASE-1", "--json").output)
    assert found, "the small Obama photo should find the indexed Obama photos"
    assert {"path", "similarity", "source", "box"} <= set(found[0])
    assert all("facerec_obama" in c["path"] for c in found)
    assert len(found) == 4
    assert found == sorted(found, key=lambda c: -c["similarity"])
    text = run("search", str(faces_root / "facerec_biden" / "1.jpg"), "--purpose", "p", "--case", "c").output
    assert "not identifications" in text and "facerec_biden/2.jpg" in text


def test_search_with_several_faces_uses_the_largest_and_says_so(run, faces_root: Path):
    _add_source(run)
    run("ingest", str(faces_root / "facerec_obama"), str(faces_root / "facerec_biden"), "--source", "news", "--workers", "1")
    group = str(faces_root / "_group" / "facerec_two_people.jpg")
    first = run("search", group, "--purpose", "p", "--case", "c").output
    assert "The probe has 2 faces; searched with face 1" in first
    by_face = {}
    for n in (1, 2):
        found = json.loads(run("search", group, "--purpose", "p", "--case", "c", "--face", str(n), "--json").stdout)
        by_face[n] = {Path(c["path"]).parent.name for c in found}
    assert by_face[1] != by_face[2] and by_face[1] | by_face[2] == {"facerec_obama", "facerec_biden"}
    bad = run("search", group, "--purpose", "p", "--case", "c", "--face", "3", ok=False)
    assert "has 2 faces" in bad.output


def test_search_errors_are_clear(run, faces_root: Path):
    _add_source(run)
    noface = run("search", str(faces_root / "_noface" / "017_0.jpg"), "--purpose", "p", "--case", "c", ok=False)
    assert "no face was found" in noface.output
    invalid = run("search", str(faces_root / "_invalid" / "truncated.jpg"), "--purpose", "p", "--case", "c", ok=False)
    assert "truncated" in invalid.output
    missing = run("search", "/no/such/photo.jpg", "--purpose", "p", "--case", "c", ok=False)
    assert "does not exist" in missing.output
    blank = run("search", str(faces_root / "_formats" / "einstein.png"), "--purpose", " ", "--case", "c", ok=False)
    assert "--purpose" in blank.output
    no_purpose = run("search", str(faces_root / "_formats" / "einstein.png"), ok=False)
    assert "--purpose" in no_purpose.output


def test_urls_are_refused_without_any_connection(run, monkeypatch, data_dir: Path):
    _add_source(run)

    def no_network(*args, **kwargs):
        raise AssertionError("Vultus tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = run("ingest", "https://example.org/people/", "--source", "news", ok=False).output
    assert "no crawler" in out and "EU AI Act" in out
    assert json.loads(run("stats", "--json").stdout)["images"] == 0


def test_ingest_without_a_registered_source_stores_nothing(run, faces_root: Path, data_dir: Path):
    out = run("ingest", str(faces_root / "_formats"), "--source", "nobody", "--workers", "1", ok=False).output
    assert "No source is named 'nobody'" in out and "vultus source add" in out
    stats = json.loads(run("stats", "--json").stdout)
    assert stats["images"] == 0 and stats["faces"] == 0
    assert not (data_dir / "blobs").exists()


def test_missing_paths_are_refused_before_anything_is_stored(run, faces_root: Path):
    _add_source(run)
    out = run("ingest", str(faces_root / "_formats"), "/no/such/folder", "--source", "news", ok=False).output
    assert "Not found: /no/such/folder" in out
    assert json.loads(run("stats", "--json").stdout)["images"] == 0


def test_searching_with_another_model_is_refused(run, faces_root: Path, data_dir: Path):
    _add_source(run)
    run("ingest", str(faces_root / "_formats" / "einstein.png"), "--source", "news", "--workers", "1")
    # Pretend the gallery was built by another embedder.
    conn = sqlite3.connect(data_dir / "vultus.db")
    conn.execute("UPDATE faces SET model_id = 'other-model-v9'")
    conn.commit()
    conn.close()
    out = run("search", str(faces_root / "_formats" / "einstein.jpeg"), "--purpose", "p", "--case", "c", ok=False).output
    assert "other-model-v9" in out and "dlib-resnet-v1" in out
    out = run("ingest", str(faces_root / "_formats" / "einstein.jpeg"), "--source", "news", ok=False).output
    assert "cannot be compared" in out


def test_reindex_rebuilds_a_deleted_or_corrupt_index(run, faces_root: Path, data_dir: Path):
    _add_source(run)
    run("ingest", str(faces_root / "facerec_obama"), "--source", "news", "--workers", "1")
    index_file = data_dir / "index" / "faces.faiss"
    index_file.write_bytes(b"broken")
    out = run("search", str(faces_root / "facerec_obama" / "1.jpg"), "--purpose", "p", "--case", "c", ok=False).output
    assert "vultus reindex" in out
    assert "4 face templates" in run("reindex").output
    found = json.loads(run("search", str(faces_root / "facerec_obama" / "1.jpg"), "--purpose", "p", "--case", "c", "--json").stdout)
    assert len(found) == 4
    index_file.unlink()
    # A missing index is rebuilt from the store on open: the store is the source of truth.
    found = json.loads(run("search", str(faces_root / "facerec_obama" / "2.jpg"), "--purpose", "p", "--case", "c", "--json").stdout)
    assert len(found) == 4


def test_help_lists_every_command(run):
    out = run("--help").output
    for command in ("source", "ingest", "search", "stats", "reindex"):
        assert command in out


def test_global_options_fall_back_to_the_environment_and_win_over_it(tmp_path: Path):
    runner = CliRunner()
    from_env, from_option = tmp_path / "from-env", tmp_path / "from-option"
    assert runner.invoke(cli, ["source", "list"], env={"VULTUS_DATA": str(from_env)}).exit_code == 0
    assert from_env.is_dir()
    result = runner.invoke(cli, ["--data", str(from_option), "source", "list"], env={"VULTUS_DATA": str(tmp_path / "x")})
    assert result.exit_code == 0 and from_option.is_dir() and not (tmp_path / "x").exists()
    bad = runner.invoke(cli, ["--data", str(from_option), "source", "list"], env={"VULTUS_WORKERS": "many"})
    assert bad.exit_code == 1 and "VULTUS_WORKERS='many' is not a valid int" in bad.output
    assert "Traceback" not in bad.output


def test_stored_copies_carry_no_location(run, faces_root: Path, data_dir: Path, tmp_path: Path):
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    photo = tmp_path / "geotagged.jpg"
    Image.open(faces_root / "_formats" / "einstein.png").convert("RGB").save(photo, "JPEG", exif=exif.tobytes())
    assert Image.open(photo).getexif().get_ifd(0x8825)
    _add_source(run)
    run("ingest", str(photo), "--source", "news", "--workers", "1")
    copies = list((data_dir / "blobs" / "images").rglob("*.jpg"))
    assert len(copies) == 1
    with vultus.open(data_dir) as engine:
        stored = engine.blobs.get(str(copies[0].relative_to(data_dir / "blobs")))
    assert Image.open(io.BytesIO(stored)).getexif().get_ifd(0x8825) == {}
    assert stored != photo.read_bytes()


def test_quality_gate_leaves_out_small_and_low_scoring_faces_and_counts_them(
    run, faces_root: Path, monkeypatch: pytest.MonkeyPatch
):
    from vultus.faces import FaceAnalyzer
    from vultus.media import decode_image

    group = faces_root / "_group" / "014_5.jpg"
    from vultus.config import Settings

    found = FaceAnalyzer.from_names(Settings().detector, "dlib-resnet-v1").detect(
        decode_image(group.read_bytes(), name="g", max_pixels=10**9).rgb
    )
    smallest = min(min(d.box.width, d.box.height) for d in found)
    _add_source(run)
    # Just above the smallest face: exactly the faces under it are left out.
    monkeypatch.setenv("VULTUS_MIN_FACE_SIZE", str(smallest + 1))
    summary = json.loads(run("ingest", str(group), "--source", "news", "--workers", "1", "--json").stdout)
    small = sum(1 for d in found if min(d.box.width, d.box.height) <= smallest)
    assert summary["low_quality"] == {"too_small": small}
    assert summary["faces"] == len(found) - small
    monkeypatch.setenv("VULTUS_MIN_FACE_SIZE", "32")
    monkeypatch.setenv("VULTUS_MIN_DETECTOR_SCORE", "100")
    out = run("ingest", str(faces_root / "_formats" / "einstein.png"), "--source", "news", "--workers", "1").output
    assert "Faces not indexed by the quality gate: 1 below the minimum detector score" in out
    assert "No face found: 1." in out
    monkeypatch.setenv("VULTUS_MIN_FACE_SIZE", "12")
    out = run("stats", ok=False).output
    assert "min_face_size must be at least 20" in out


def test_ingest_that_crosses_the_ivf_threshold_says_so(run, faces_root: Path, monkeypatch: pytest.MonkeyPatch):
    from vultus.index import faiss_index

    # The real minimums (10,000 faces, 64 lists) need far more photos than the shared set.
    monkeypatch.setattr(faiss_index, "MIN_IVF", 1)
    monkeypatch.setattr(faiss_index, "MIN_LISTS", 8)
    monkeypatch.setenv("VULTUS_IVF_THRESHOLD", "20")
    _add_source(run)
    first = run("ingest", str(faces_root / "_group"), "--source", "news", "--workers", "1", "--json")
    summary = json.loads(first.stdout)
    assert summary["faces"] > 20 and summary["index_rebuilt"] == "ivf" and summary["index_seconds"] >= 0
    assert f"Building the large-gallery (IVF) index for {summary['faces']:,} faces" in first.stderr
    assert json.loads(run("stats", "--json").stdout)["index_kind"].startswith("ivf")
    # Nothing to rebuild: no notice, and the summary says so.
    second = run("ingest", str(faces_root / "_noface"), "--source", "news", "--workers", "1")
    assert "index" not in second.stderr and "rebuilt" not in second.stdout
    # A threshold of 0 (always exact) turns the index back into exact search.
    monkeypatch.setenv("VULTUS_IVF_THRESHOLD", "0")
    third = run("ingest", str(faces_root / "facerec_obama"), "--source", "news", "--workers", "1")
    assert "Returning to exact search" in third.stderr
    assert "The index was rebuilt as an exact index" in third.stdout
    assert json.loads(run("stats", "--json").stdout)["index_kind"] == "exact"
