"""Crash safety: kill -9 in the middle of an ingest, run it again, lose and duplicate nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import vultus
from vultus.crypto import Keyring
from vultus.index import IndexTarget, default_index_url, open_index


def _vultus(data: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vultus", "--data", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs,
    )


def _stored_images(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_mid_ingest_then_rerun_loses_and_duplicates_nothing(tmp_path: Path, faces_root: Path):
    data = tmp_path / "data"
    folders = sorted(str(p) for p in faces_root.iterdir() if p.name.startswith("deepface_"))
    photos = [p for folder in folders for p in Path(folder).iterdir()]
    expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}
    assert len(expected) > 40

    add = _vultus(data, "source", "add", "s", "--basis", "consent", "--purpose", "crash test", "--retention", "7d")
    assert add.wait(60) == 0, add.stdout.read()

    ingest_args = ("ingest", *folders, "--source", "s", "--workers", "2", "--no-progress")
    first = _vultus(data, *ingest_args)
    deadline = time.monotonic() + 240
    while _stored_images(data / "vultus.db") < 10:
        assert first.poll() is None, "the ingest ended before it could be killed:\n" + first.stdout.read()
        assert time.monotonic() < deadline, "the ingest stored nothing in time"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the whole job, workers included, as kill -9 would
    first.wait(30)
    stored_at_kill = _stored_images(data / "vultus.db")
    assert 10 <= stored_at_kill < len(expected), "the kill must land in the middle of the ingest"

    second = _vultus(data, *ingest_args)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert "Already indexed (skipped): " in output

    with sqlite3.connect(data / "vultus.db") as conn:
        shas = [row[0] for row in conn.execute("SELECT sha256 FROM images")]
        face_ids = sorted(row[0] for row in conn.execute("SELECT id FROM faces"))
        blob_keys = {row[0] for row in conn.execute("SELECT blob_key FROM images WHERE blob_key IS NOT NULL")}
        blob_keys |= {row[0] for row in conn.execute("SELECT crop_key FROM faces WHERE crop_key IS NOT NULL")}
    assert len(shas) == len(set(shas)), "an image was stored twice"
    assert set(shas) == expected, "an image was lost"
    # The index file on disk holds exactly the store's faces.
    on_disk = open_index(IndexTarget(default_index_url(data), 128, Keyring.open(data / "keys.json", create=False)))
    assert sorted(on_disk.ids().tolist()) == face_ids
    # Every referenced blob exists, and no blob or temporary file is left unreferenced.
    files = {str(p.relative_to(data / "blobs")) for p in (data / "blobs").rglob("*") if p.is_file()}
    assert files == blob_keys
    with vultus.open(data) as engine:
        stats = engine.stats()
        assert stats.index_vectors == stats.faces == len(face_ids)
        hit = engine.search(photos[0], purpose="p", case="c", top=1, threshold=0.0).candidates[0]
        assert np.isclose(hit.similarity, 1.0, atol=1e-3)
