"""Rights by face, retention, audit and encryption: the regulators' findings, as tests."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli
from vultus.rights import due_date
from vultus.store import utcnow

PEOPLE = ["facerec_obama", "facerec_biden", "facerec_kit_harington", "facerec_rose_leslie", "deepface_jack", "deepface_sundar"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    """A data directory with six people ingested, built once and copied for each test."""
    data = tmp_path_factory.mktemp("rights") / "data"
    with vultus.open(data, actor="setup") as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive research", retention="365d")
        engine.ingest([faces_root / p for p in PEOPLE], source="news", workers=2)
    return data


@pytest.fixture
def data(prepared: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(prepared, copy)
    return copy


def _photos(faces_root: Path, person: str) -> list[Path]:
    return sorted((faces_root / person).iterdir())


def _found(engine, photo: Path) -> list[str]:
    return sorted(c.path for c in engine.search(photo, purpose="test", case="T-1").candidates)


def _files(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if p.is_file()]


def _appears_anywhere(data: Path, needle: bytes) -> list[Path]:
    return [p for p in _files(data) if needle in p.read_bytes()]


def test_erasure_by_face_removes_the_person_for_good_and_nothing_else(data: Path, faces_root: Path):
    obama = _photos(faces_root, "facerec_obama")
    with vultus.open(data, actor="dpo") as engine:
        before = {p: _found(engine, p) for person in PEOPLE[1:] for p in _photos(faces_root, person)}
        match = engine.match_person(obama[0])
        assert {Path(hit.original_path).parent.name for hit, _ in match.faces} == {"facerec_obama"}
        receipt = engine.erase(match)
        removed = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in obama}
        assert set(receipt["removed_images"]) == set(removed)
        assert engine.check_receipt(receipt) == "a valid signature by this deployment's key"
        # A search with each *other* photo of the person finds none of their photos.
        for probe in obama[1:]:
            assert not [p for p in _found(engine, probe) if "facerec_obama" in p]
        # Other people's results are unchanged.
        assert {p: _found(engine, p) for p in before} == before
        stats = engine.stats()
        assert stats.faces == stats.index_vectors
    # The removed photos' bytes and their sha256-named blobs are nowhere in the data directory.
    for digest, photo in removed.items():
        assert _appears_anywhere(data, photo.read_bytes()[1000:1512]) == []
        assert not [p for p in _files(data) if digest in p.name]


def test_objection_blocks_the_face_from_future_ingest(data: Path, faces_root: Path):
    runner = CliRunner()
    obama = faces_root / "facerec_obama"
    out = runner.invoke(cli, ["--data", str(data), "object", str(obama / "2.jpg"), "--yes"])
    assert out.exit_code == 0, out.output
    assert "Suppression entry 1" in out.output
    again = runner.invoke(
        cli, ["--data", str(data), "ingest", str(obama), str(faces_root / "facerec_biden"), "--source", "news",
              "--workers", "1", "--json"],
    )
    summary = json.loads(again.stdout)
    assert summary["images"] == 0 and summary["suppressed_photos"] == 4 and summary["suppressed_faces"] == 4
    assert summary["duplicates"] == 2  # Biden's photos were never erased
    text = runner.invoke(cli, ["--data", str(data), "ingest", str(obama), "--source", "news", "--workers", "1"])
    assert "Skipped 4 face(s) of people who objected" in text.output
    # A group photo keeps the other person's face; the objector's is neither indexed nor visible.
    with vultus.open(data) as engine:
        group = engine.ingest([faces_root / "_group" / "facerec_two_people.jpg"], source="news", workers=1)
        assert group.images == 1 and group.faces == 1 and group.suppressed_faces == 1
        assert not [p for p in _found(engine, obama / "3.jpg") if "facerec_obama" in p or "two_people" in p]
        assert any("two_people" in p for p in _found(engine, faces_root / "facerec_biden" / "1.jpg"))
        listed = engine.suppressions()
        assert [(e.id, e.withdrawn_at) for e in listed] == [(1, None)]
        # Withdrawing the entry erases its template: the person's photos can be ingested again.
        assert engine.withdraw_suppression(1)
        assert engine.ingest([obama], source="news", workers=1).images == 4
    with sqlite3.connect(data / "vultus.db") as conn:
        assert conn.execute("SELECT template FROM suppressions").fetchone()[0] is None


def test_access_report_lists_every_photo_search_finds_and_the_searches(data: Path, faces_root: Path, tmp_path: Path):
    probe = faces_root / "facerec_obama" / "2.jpg"
    with vultus.open(data, actor="investigator") as engine:
        searched = engine.search(probe, purpose="find a witness", case="CASE-9")
        found_by_search = {c.image_sha256 for c in searched.candidates}
        engine.search(faces_root / "facerec_biden" / "1.jpg", purpose="other", case="CASE-10")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["--data", str(data), "--actor", "dpo", "access",
                                      str(faces_root / "facerec_obama" / "4.jpg"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("data:image/jpeg;base64,") == 4 and "find a witness" in html and "CASE-10" not in html
    as_json = tmp_path / "report.json"
    CliRunner().invoke(cli, ["--data", str(data), "access", str(faces_root / "facerec_obama" / "4.jpg"), "--out", str(as_json)])
    report = json.loads(as_json.read_text())
    held = {image["image_sha256"] for image in report["images"]}
    assert found_by_search <= held and len(held) == 4
    assert all(i["legal_basis"] == "legitimate-interests" and i["expires_at"] > i["ingested_at"] for i in report["images"])
    assert [(s["purpose"], s["case"], s["actor"]) for s in report["searches"]] == [("find a witness", "CASE-9", "investigator")]
    with vultus.open(data) as engine:
        kinds = [(r.kind, r.completed_at is not None) for r in engine.requests()]
        assert kinds == [("access", True), ("access", True)]


def test_restricted_faces_are_kept_but_never_searched(data: Path, faces_root: Path):
    biden = _photos(faces_root, "facerec_biden")
    with vultus.open(data) as engine:
        request_id, changed = engine.restrict(engine.match_person(biden[0]))
        assert changed == 2
        assert _found(engine, biden[1]) == []
        report = engine.access(biden[1])
        assert len(report["images"]) == 2 and all(f["restricted"] for i in report["images"] for f in i["faces"])
        assert engine.stats().restricted_faces == 2
        engine.restrict(engine.match_person(biden[0]), lift=True)
        assert len(_found(engine, biden[1])) == 2


def _audit_rows(data: Path) -> list:
    with sqlite3.connect(data / "vultus.db") as conn:
        return conn.execute("SELECT id, at, actor, action, details, prev_hash, hash FROM audit ORDER BY id").fetchall()


def _verify(data: Path):
    return CliRunner().invoke(cli, ["--data", str(data), "audit", "verify"])


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate"])
def test_audit_verify_finds_the_tampered_row(data: Path, faces_root: Path, tamper: str):
    with vultus.open(data, actor="analyst") as engine:
        for n in range(3):
            engine.search(faces_root / "deepface_jack" / f"{n + 1}.jpg", purpose=f"p{n}", case="C")
    ok = _verify(data)
    assert ok.exit_code == 0 and "verifies" in ok.output
    rows = _audit_rows(data)
    target = rows[2][0]
    conn = sqlite3.connect(data / "vultus.db")
    if tamper == "edit":
        conn.execute("UPDATE audit SET details = replace(details, 'p0', 'px') WHERE id = ?", (target,))
    elif tamper == "delete":
        conn.execute("DELETE FROM audit WHERE id = ?", (target,))
    elif tamper == "reorder":
        a, b = rows[2], rows[3]
        conn.execute("UPDATE audit SET at=?, actor=?, action=?, details=?, prev_hash=?, hash=? WHERE id=?", (*b[1:], a[0]))
        conn.execute("UPDATE audit SET at=?, actor=?, action=?, details=?, prev_hash=?, hash=? WHERE id=?", (*a[1:], b[0]))
    else:
        target = rows[-1][0]
        conn.execute("DELETE FROM audit WHERE id = ?", (target,))
    conn.commit()
    conn.close()
    failed = _verify(data)
    assert failed.exit_code == 1
    assert f"fails verification at entry {target}:" in failed.output


def test_audit_records_who_did_what_and_exports_json_lines(data: Path, faces_root: Path):
    runner = CliRunner()
    probe = str(faces_root / "deepface_sundar" / "1.jpg")
    result = runner.invoke(cli, ["--data", str(data), "--actor", "alice", "search", probe, "--purpose", "p", "--case", "K-1"])
    assert result.exit_code == 0, result.output
    lines = runner.invoke(cli, ["--data", str(data), "audit", "export", "--since", "2000-01-01"]).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["action"] for e in entries] == ["source.add", "ingest", "search"]
    search = entries[-1]
    assert search["actor"] == "alice" and search["details"]["case"] == "K-1"
    assert search["details"]["probe_sha256"] == hashlib.sha256(Path(probe).read_bytes()).hexdigest()
    assert len(search["details"]["candidates"]) == 2
    assert runner.invoke(cli, ["--data", str(data), "audit", "export", "--until", "2000-01-01"]).stdout == ""
    listed = runner.invoke(cli, ["--data", str(data), "audit", "list", "--action", "search"]).output
    assert "alice" in listed and "source.add" not in listed


def test_photos_and_templates_are_encrypted_at_rest_and_survive_key_rotation(data: Path, faces_root: Path):
    photo = faces_root / "deepface_jack" / "2.jpg"
    with vultus.open(data) as engine:
        vectors = np.concatenate([v for _, v in engine.store.face_vectors()])
        keys_before = set(engine.keys.keys)
    template = vectors[0].astype("<f4").tobytes()
    assert _appears_anywhere(data, photo.read_bytes()[2000:2512]) == []
    assert _appears_anywhere(data, template) == []
    assert _appears_anywhere(data, template[:64]) == []
    result = CliRunner().invoke(cli, ["--data", str(data), "keys", "rotate"])
    assert result.exit_code == 0, result.output
    with vultus.open(data) as engine:
        assert set(engine.keys.keys).isdisjoint(keys_before)
        assert len(_found(engine, photo)) == 5
        assert engine.blobs.get(engine.blobs.keys()[0])[:2] in (b"\xff\xd8", b"\x89P")
        assert engine.verify_audit().ok
    assert _appears_anywhere(data, template) == []


def test_purge_removes_exactly_the_expired_images_with_a_receipt(data: Path, faces_root: Path, tmp_path: Path):
    runner = CliRunner()
    base = ["--data", str(data)]
    assert runner.invoke(cli, [*base, "source", "add", "event", "--basis", "consent", "--purpose", "one event",
                               "--retention", "2d", "--consent-ref", "forms/2026"]).exit_code == 0
    assert runner.invoke(cli, [*base, "ingest", str(faces_root / "deepface_elon"), "--source", "event", "--workers", "1"]).exit_code == 0
    later = (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    receipt_file = tmp_path / "purge.json"
    out = runner.invoke(cli, [*base, "purge", "--now", later, "--receipt", str(receipt_file)])
    assert out.exit_code == 0, out.output
    receipt = json.loads(receipt_file.read_text())
    elon = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (faces_root / "deepface_elon").iterdir()}
    assert set(receipt["removed_images"]) == elon and receipt["kind"] == "purge"
    with vultus.open(data) as engine:
        stats = engine.stats()
        assert stats.images == sum(len(_photos(faces_root, p)) for p in PEOPLE)
        assert stats.index_vectors == stats.faces
    assert "valid signature" in runner.invoke(cli, [*base, "receipt", "verify", str(receipt_file)]).output
    receipt["removed_images"] = receipt["removed_images"][1:]
    receipt_file.write_text(json.dumps(receipt))
    bad = runner.invoke(cli, [*base, "receipt", "verify", str(receipt_file)])
    assert bad.exit_code == 1 and "altered or forged" in bad.output
    nothing = json.loads(runner.invoke(cli, [*base, "purge", "--json"]).stdout)
    assert nothing["removed_images"] == []


def test_the_requesters_photo_is_never_written(data: Path, faces_root: Path, tmp_path: Path):
    probe = faces_root / "deepface_sundar" / "2.jpg"
    needle = probe.read_bytes()[500:1012]
    runner = CliRunner()
    base = ["--data", str(data)]
    for command in (["access", str(probe)], ["erase", str(probe), "--yes"], ["object", str(probe), "--yes"]):
        result = runner.invoke(cli, [*base, *command])
        assert result.exit_code == 0, result.output
        assert _appears_anywhere(data, needle) == []
    with vultus.open(data) as engine:
        assert [r.probe_sha256 for r in engine.requests()] == [hashlib.sha256(probe.read_bytes()).hexdigest()] * 3


def test_requests_are_due_one_month_later_and_overdue_ones_are_listed(data: Path, faces_root: Path):
    from datetime import datetime, timezone

    assert due_date(datetime(2026, 1, 31, tzinfo=timezone.utc)) == datetime(2026, 2, 28, tzinfo=timezone.utc)
    assert due_date(datetime(2026, 12, 5, tzinfo=timezone.utc)) == datetime(2027, 1, 5, tzinfo=timezone.utc)
    with vultus.open(data) as engine:
        with engine.store.transaction():
            engine.store.registers.open_request(kind="erasure", received_at="2020-01-01T00:00:00Z",
                                                due_at="2020-02-01T00:00:00Z", probe_sha256=None)
        engine.access(faces_root / "deepface_jack" / "1.jpg")
        assert [r.kind for r in engine.requests(overdue=True)] == ["erasure"]
    out = CliRunner().invoke(cli, ["--data", str(data), "requests", "--overdue"]).output
    assert "erasure" in out and "OPEN" in out and "access" not in out


def test_a_personal_deployment_may_relax_the_purpose_and_says_so(data: Path, faces_root: Path, monkeypatch):
    monkeypatch.setenv("VULTUS_PURPOSE_REQUIRED", "0")
    runner = CliRunner()
    out = runner.invoke(cli, ["--data", str(data), "search", str(faces_root / "deepface_jack" / "1.jpg")])
    assert out.exit_code == 0, out.output
    assert "OPTIONAL" in runner.invoke(cli, ["--data", str(data), "stats"]).output


def test_a_key_file_outside_the_data_directory_is_required_to_read_it(tmp_path: Path, faces_root: Path):
    from vultus.errors import KeyFileError

    keys = tmp_path / "secrets" / "keys.json"
    keys.parent.mkdir()
    runner = CliRunner()
    base = ["--data", str(tmp_path / "d"), "--key-file", str(keys)]
    assert runner.invoke(cli, [*base, "source", "add", "s", "--basis", "consent", "--purpose", "p", "--retention", "1d"]).exit_code == 0
    assert runner.invoke(cli, [*base, "ingest", str(faces_root / "deepface_jack"), "--source", "s", "--workers", "1"]).exit_code == 0
    assert not (tmp_path / "d" / "keys.json").exists() and keys.stat().st_mode & 0o777 == 0o600
    # Without its key file the data directory is not opened, and no new key is made.
    with pytest.raises(KeyFileError, match="--key-file"):
        vultus.open(tmp_path / "d")
    assert not (tmp_path / "d" / "keys.json").exists()
    # Another deployment's key file is refused before anything is written with it.
    vultus.open(tmp_path / "other").close()
    with pytest.raises(KeyFileError, match="belongs to another deployment"):
        vultus.open(tmp_path / "d", key_file=tmp_path / "other" / "keys.json")
    with vultus.open(tmp_path / "d", key_file=keys) as engine:
        assert len(engine.search(faces_root / "deepface_jack" / "1.jpg", purpose="p", case="c").candidates) == 5


def test_a_request_about_someone_not_held_is_still_answered_and_registered(data: Path, faces_root: Path):
    runner = CliRunner()
    # Not held, and like no one held (best similarity 0.58; Einstein's portrait, used before,
    # comes to 0.682 with a blurred bystander the CNN detector finds in deepface_jack/3.jpg,
    # just above the deliberately inclusive rights threshold of 0.675).
    probe = str(faces_root / "deepface_angelina" / "1.jpg")
    out = runner.invoke(cli, ["--data", str(data), "erase", probe, "--json"])
    assert out.exit_code == 0, out.output
    receipt = json.loads(out.stdout)
    assert receipt["removed_images"] == [] and receipt["kind"] == "erasure"
    noface = runner.invoke(cli, ["--data", str(data), "access", str(faces_root / "_noface" / "017_0.jpg")])
    assert noface.exit_code == 1 and "no face was found" in noface.output
    with vultus.open(data) as engine:
        assert [(r.kind, r.outcome) for r in engine.requests()] == [("erasure", "0 photos erased")]


def test_an_objector_s_face_is_screened_even_when_too_small_to_index(data_dir: Path, faces_root: Path):
    import vultus

    obama = faces_root / "facerec_obama"
    with vultus.open(data_dir) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="p", retention="30d")
        engine.ingest([obama / "1.jpg"], source="news", workers=1)
        engine.object(engine.match_person(obama / "2.jpg"))
    # Every face now fails the quality gate, yet the objector's is still recognised, so the
    # photo is left out as one showing only them, not stored as "no face".
    with vultus.open(data_dir, min_face_size=5000) as engine:
        summary = engine.ingest([obama / "3.jpg", faces_root / "facerec_biden" / "1.jpg"], source="news", workers=1)
        assert summary.suppressed_faces == 1 and summary.suppressed_photos == 1
        assert summary.low_quality["too_small"] == 2 and summary.no_face == 1 and summary.faces == 0
        assert engine.stats().images == 1  # only biden's photo, recorded with no indexable face
