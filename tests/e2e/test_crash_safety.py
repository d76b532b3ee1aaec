"""Crash safety under kill -9: ingest workers die with their parent; an erasure cut short
is finished, receipt included, by the next command of any kind."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fastapi.testclient import TestClient

import vultus
from vultus.errors import UnknownReceiptError
from vultus.config import Settings
from vultus.crypto import Keyring
from vultus.index import IndexTarget, default_index_url, open_index
from vultus.rights import check_receipt
from vultus.server import create_app


def _vultus(data: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vultus", "--data", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid``, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _is_pool_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_of_an_ingest_leaves_no_worker_alive(tmp_path: Path, faces_root: Path):
    data = tmp_path / "data"
    folders = sorted(str(p) for p in faces_root.iterdir() if p.name.startswith("deepface_"))
    add = _vultus(data, "source", "add", "s", "--basis", "consent", "--purpose", "crash test", "--retention", "7d")
    assert add.wait(60) == 0, add.stdout.read()

    # Not a session of its own: a kill -9 of the parent alone, as an operator's `kill -9 PID` does.
    ingest = _vultus(data, "ingest", *folders, "--source", "s", "--workers", "2", "--no-progress")
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        # The spawn context also starts a resource tracker; the pool's workers run spawn_main.
        while len({pid for pid in workers if _is_pool_worker(pid)}) < 2:
            assert ingest.poll() is None, "the ingest ended before its workers were seen:\n" + ingest.stdout.read()
            assert time.monotonic() < deadline, "the ingest started no workers in time"
            workers = _children(ingest.pid)
            time.sleep(0.1)
        workers = _children(ingest.pid)  # the resource tracker too: nothing of the ingest may stay
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait(30)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived its killed ingest by 10 s"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


_KILLED_ERASURE = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timezone

    import vultus
    from vultus.store import BlobStore

    def die(self, key):  # the erasure is killed as it starts deleting files
        os.kill(os.getpid(), signal.SIGKILL)

    BlobStore.delete = die
    with vultus.open(sys.argv[1]) as engine:
        {call}
    print("not killed")
""")


def _kill_part_way(tmp_path: Path, data: Path, call: str, *args: str) -> None:
    program = tmp_path / "killed.py"
    program.write_text(_KILLED_ERASURE.format(call=call))
    run = subprocess.run([sys.executable, str(program), str(data), *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr


def _index_ids(data: Path) -> set[int]:
    index = open_index(IndexTarget(default_index_url(data), 128, Keyring.open(data / "keys.json", create=False)))
    return set(index.ids().tolist())


def _cli(data: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "vultus", "--data", str(data), *args], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_an_erasure_killed_part_way_is_finished_by_the_next_read_command(tmp_path: Path, faces_root: Path):
    data = tmp_path / "data"
    probe = faces_root / "deepface_jack" / sorted(os.listdir(faces_root / "deepface_jack"))[0]
    with vultus.open(data) as engine:
        engine.add_source("s", basis="consent", purpose="crash test", retention="30d")
        engine.ingest([faces_root / "deepface_jack", faces_root / "deepface_mark"], source="s", workers=1)
        match = engine.match_person(probe)
        erased_shas = set(match.image_sha256s)
        everyone = set(engine.store.searchable_face_ids().tolist())
        # Whole photos are erased: every face in them goes, bystanders' included.
        in_erased = [hit for hit in engine.store.hydrate(sorted(everyone)).values() if hit.sha256 in erased_shas]
        erased_faces = {hit.face_id for hit in in_erased}
        erased_blobs = {hit.blob_key for hit in in_erased} | {hit.crop_key for hit in in_erased}
    assert erased_faces and everyone - erased_faces, "the probe must match some photos, not all"
    assert erased_faces <= _index_ids(data)

    _kill_part_way(tmp_path, data, "engine.erase(engine.match_person(sys.argv[2]))", str(probe))
    # The rows went (they commit first); the kill came before any file was deleted.
    with sqlite3.connect(data / "vultus.db") as conn:
        left = {row[0] for row in conn.execute("SELECT sha256 FROM images")}
    assert not left & erased_shas
    assert all((data / "blobs" / key).exists() for key in erased_blobs)
    # The intent names files and face ids and what the receipt will list; no template, no image.
    with sqlite3.connect(data / "vultus.db") as conn:
        [(pending, fields, completed)] = conn.execute("SELECT pending, receipt, completed_at FROM erasures").fetchall()
    assert completed is None and set(json.loads(pending)) == {"blob_keys", "face_ids"}
    assert set(json.loads(pending)["face_ids"]) == erased_faces
    assert set(json.loads(fields)) == {"receipt", "version", "kind", "request_id", "removed_images", "faces_removed",
                                        "probe_sha256s"}

    _cli(data, "stats")  # a read command, not a writer

    assert not [key for key in erased_blobs if (data / "blobs" / key).exists()], "an erased photo's file is left"
    assert not _index_ids(data) & erased_faces, "an erased face is left in the index file"
    assert _index_ids(data) == everyone - erased_faces
    listing = json.loads(_cli(data, "receipt", "list", "--json"))
    assert [(r["kind"], r["completed_at"] is not None) for r in listing] == [("erasure", True)]
    receipt = json.loads(_cli(data, "receipt", "show", str(listing[0]["id"])))
    assert set(receipt["removed_images"]) == erased_shas
    assert receipt["faces_removed"] == len(erased_faces)
    assert receipt["kind"] == "erasure" and receipt["request_id"] == listing[0]["request_id"]
    assert check_receipt(receipt, keys=Keyring.open(data / "keys.json", create=False)) == (
        "a valid signature by this deployment's key")
    assert "chain and signed head intact" in _cli(data, "audit", "verify")


def test_a_purge_killed_part_way_is_finished_when_the_server_starts(tmp_path: Path, faces_root: Path):
    data = tmp_path / "data"
    with vultus.open(data) as engine:
        engine.add_source("s", basis="consent", purpose="crash test", retention="1d")
        engine.ingest([faces_root / "facerec_obama"], source="s", workers=1)
        shas = {row.sha256 for row in engine.store.hydrate(engine.store.searchable_face_ids().tolist()).values()}
        _, dpo = engine.add_user("dpo-1", role="dpo")
    assert shas and _index_ids(data)

    _kill_part_way(tmp_path, data, "engine.purge(now=datetime(2100, 1, 1, tzinfo=timezone.utc))")
    assert (data / "blobs" / "images").is_dir() and any((data / "blobs" / "images").rglob("*.jpg"))

    app = create_app(Settings.from_env(data_dir=data))
    try:
        assert not [p for p in (data / "blobs").rglob("*") if p.is_file()], "a purged photo's file is left"
        assert not _index_ids(data)
        client = TestClient(app)
        auth = {"Authorization": f"Bearer {dpo}"}
        listing = client.get("/v1/receipts", headers=auth).json()
        assert [(r["kind"], r["images_removed"]) for r in listing] == [("purge", len(shas))]
        receipt = client.get(f"/v1/receipts/{listing[0]['id']}", headers=auth).json()
        assert set(receipt["removed_images"]) == shas and receipt["expired_by"] == "2100-01-01T00:00:00Z"
        assert client.post("/v1/receipts/verify", headers=auth, json=receipt).json()["valid"] is True
        assert client.get("/v1/receipts/99", headers=auth).json()["error"]["code"] == "unknown_receipt"
        assert client.get("/v1/receipts/99999999999999999999", headers=auth).status_code == 422
    finally:
        app.state.engine.close()


def test_a_pending_erasure_is_left_alone_while_another_process_writes(tmp_path: Path, faces_root: Path):
    data = tmp_path / "data"
    probe = faces_root / "facerec_biden" / "1.jpg"
    with vultus.open(data) as engine:
        engine.add_source("s", basis="consent", purpose="crash test", retention="30d")
        engine.ingest([faces_root / "facerec_biden", faces_root / "facerec_obama"], source="s", workers=1)
        before = engine.stats().images
    _kill_part_way(tmp_path, data, "engine.erase(engine.match_person(sys.argv[2]))", str(probe))
    files_after_kill = sorted(p for p in (data / "blobs").rglob("*") if p.is_file())

    # Another writer holds the lock (its own pending erasure would look the same): a reader
    # neither waits nor touches it, and says the receipt is not ready yet.
    lock = os.open(data / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with vultus.open(data) as engine:
            stats = engine.stats()
            assert stats.images < before and stats.index_vectors == stats.faces  # the person is gone
            [pending] = engine.receipts()
            assert pending.completed_at is None and pending.kind == "erasure"
            try:
                engine.receipt(pending.id)
            except UnknownReceiptError as exc:
                assert "not finished" in str(exc)
            else:
                raise AssertionError("a pending erasure gave a receipt")
        assert sorted(p for p in (data / "blobs").rglob("*") if p.is_file()) == files_after_kill
    finally:
        os.close(lock)  # releases the lock

    with vultus.open(data) as engine:
        [done] = engine.receipts()
        assert done.completed_at is not None
        assert engine.check_receipt(engine.receipt(done.id)) == "a valid signature by this deployment's key"
    assert len([p for p in (data / "blobs").rglob("*") if p.is_file()]) < len(files_after_kill)
