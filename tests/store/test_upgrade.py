"""A data directory made by the last release before migrations opens, searches and erases after the upgrade.

The old release is the source of commit RELEASE, taken from this repository's history with
``git archive`` and run in a subprocess, so the directory is exactly what its users have.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import vultus
from vultus.store.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]

#: The last commit whose Vultus wrote databases without Alembic revisions (schema version 3).
RELEASE = "1606944"

KEPT = {"facerec_obama": ["1.jpg", "2.jpg", "3.jpg"], "facerec_biden": ["1.jpg", "2.jpg"],
        "deepface_jack": ["1.jpg", "2.jpg", "3.jpg"]}
#: Photos of ingested people that the old release never saw, used as probes.
PROBES = {"facerec_obama": "4.jpg", "deepface_jack": "5.jpg"}


def _release_source(into: Path) -> Path:
    """The old release's ``src`` folder, extracted from git into ``into``."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{RELEASE}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(
            f"Commit {RELEASE} (the release before migrations) is not in {REPO}'s git history, and "
            f"this test builds its data directory with it: use a full clone (git fetch --unshallow). "
            f"git said: {found.stderr.strip()}",
            pytrace=False,
        )
    archive = into / "release.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", RELEASE, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _old_vultus(src: Path, data: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTUS_")}
    env.update(PYTHONPATH=str(src), VULTUS_DATA=str(data))
    out = subprocess.run([sys.executable, "-m", "vultus", *args], cwd=src.parent, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"the old release failed: vultus {' '.join(args)}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def old_data(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    """A data directory as the old release leaves it: a source, 8 photos of 3 people, a search."""
    root = tmp_path_factory.mktemp("release")
    src = _release_source(root)
    data = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTUS_")}
    where = subprocess.run([sys.executable, "-c", "import vultus.store.repository as r; print(r.__file__)"],
                           env={**env, "PYTHONPATH": str(src)}, cwd=root, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(src), "the subprocess did not run the old release"
    _old_vultus(src, data, "source", "add", "archive", "--basis", "legitimate-interests",
                "--purpose", "finding witnesses", "--retention", "30d")
    photos = [str(faces_root / person / name) for person, names in KEPT.items() for name in names]
    _old_vultus(src, data, "ingest", *photos, "--source", "archive", "--workers", "1", "--no-progress")
    _old_vultus(src, data, "search", str(faces_root / "deepface_jack" / PROBES["deepface_jack"]),
                "--purpose", "finding witnesses", "--case", "OLD-1")
    with sqlite3.connect(data / "vultus.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "alembic_version" not in tables and "faces" in tables, "the old release's database is not pre-migration"
    return data


@pytest.fixture
def data(old_data: Path, tmp_path: Path) -> Path:
    """A copy of the old release's data directory, for one test to change."""
    return Path(shutil.copytree(old_data, tmp_path / "data"))


def _rows(db: Path) -> dict[str, list]:
    with sqlite3.connect(db) as conn:
        return {
            "sources": conn.execute("SELECT id, name, legal_basis, purpose, retention_days FROM sources").fetchall(),
            "images": conn.execute("SELECT id, sha256, source_id, original_path, face_count, blob_key "
                                   "FROM images ORDER BY id").fetchall(),
            "faces": conn.execute("SELECT id, image_id, box_left, box_top, embedding, model_id "
                                  "FROM faces ORDER BY id").fetchall(),
            "audit": conn.execute("SELECT id, action, hash FROM audit ORDER BY id").fetchall(),
        }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_old_database_is_stamped_with_its_rows_intact(data: Path, faces_root: Path):
    before = _rows(data / "vultus.db")
    assert len(before["images"]) == 8 and len(before["faces"]) >= 8
    with vultus.open(data) as engine:
        [source] = engine.sources()
        assert (source.name, source.image_count) == ("archive", 8)
        assert source.face_count == len(before["faces"])
        assert engine.stats().faces == len(before["faces"])
        assert engine.verify_audit().ok
    assert _rows(data / "vultus.db") == before
    with sqlite3.connect(data / "vultus.db") as conn:
        # Stamped as the baseline (3), then upgraded through the later revisions.
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_VERSION,)]
        # Revision 4 (video): everything the old release stored is a photo.
        assert conn.execute("SELECT media, duration, count(*) FROM images GROUP BY media, duration").fetchall() == [
            ("photo", None, len(before["images"]))]
        assert conn.execute("SELECT count(*) FROM faces WHERE appearance IS NOT NULL OR media_time IS NOT NULL "
                            "OR still_key IS NOT NULL").fetchone() == (0,)
        # Revision 5 (purposes): the source registered "finding witnesses" may be searched for
        # the category closest to that text, investigation.
        assert conn.execute("SELECT s.name, p.category FROM source_purposes p JOIN sources s ON s.id = p.source_id"
                            ).fetchall() == [("archive", "investigation")]
    stored = {row[1] for row in before["images"]}
    assert stored == {_sha(faces_root / person / name) for person, names in KEPT.items() for name in names}


def test_the_upgraded_directory_searches_and_erases(data: Path, faces_root: Path):
    obama = [faces_root / "facerec_obama" / name for name in KEPT["facerec_obama"]]
    probe = faces_root / "facerec_obama" / PROBES["facerec_obama"]
    jack = faces_root / "deepface_jack" / PROBES["deepface_jack"]
    with vultus.open(data, actor="dpo") as engine:
        # The old release searched every source for anything; after the upgrade a search for the
        # default category (archive) leaves the investigation source out, and says so.
        default = engine.search(probe, purpose="p", case="NEW-0")
        assert default.candidates == [] and default.category == "archive"
        assert [(e.source, e.allows) for e in default.left_out] == [("archive", ("investigation",))]
        found = {c.image_sha256 for c in engine.search(probe, purpose="p", case="NEW-1",
                                                       category="investigation").candidates}
        assert found == {_sha(p) for p in obama}
        receipt = engine.erase(engine.match_person(probe))  # rights requests cover every source
        assert set(receipt["removed_images"]) == {_sha(p) for p in obama}
        assert engine.check_receipt(receipt) == "a valid signature by this deployment's key"
        assert not engine.search(probe, purpose="p", case="NEW-2", category="investigation").candidates
        found = engine.search(jack, purpose="p", case="NEW-3", category="investigation").candidates
        paths = [Path(c.path).parent.name for c in found]
        assert paths and set(paths) == {"deepface_jack"}
        assert {c.media for c in found} == {"photo"} and {c.video_time for c in found} == {None}
        verification = engine.verify_audit()
        assert verification.ok, verification
        assert engine.sources()[0].image_count == 5
