"""Attacks and faults on keys, the public page, the ingest root and storage errors (issue 11).

Each test here failed on the code before its fix: rotation that dropped the key of open
public requests or ran beside a server, a daily limit that concurrent or failed requests
slipped past, unkeyed hashes of requesters' addresses, symbolic links out of the ingest
root, tracebacks for a full disk and a damaged key file, a wrong key taken for a corrupt
index (and the index deleted), and loose permissions left as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import vultus
from vultus.cli import cli
from vultus.crypto import Keyring
from vultus.errors import DataDirInUseError, RateLimitedError, VultusError
from vultus.store.schema import public_attempts, requests

PHOTO = ("facerec_obama", "1.jpg")


def _ingest(data: Path, faces_root: Path, *folders: str) -> None:
    with vultus.open(data) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
        engine.ingest([faces_root / f for f in folders], source="news", workers=1)


@pytest.fixture
def data(tmp_path: Path, faces_root: Path) -> Path:
    folder = tmp_path / "data"
    _ingest(folder, faces_root, "facerec_obama", "facerec_biden")
    return folder


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# -- 1. keys -------------------------------------------------------------------------------------


def test_rotation_reseals_open_public_requests_which_can_then_be_carried_out(data: Path, faces_root: Path):
    with vultus.open(data) as engine:
        sent = engine.submit_public_request(kind="erasure", photo=(faces_root / "facerec_biden" / "1.jpg").read_bytes(),
                                            contact="joe@example.org", client="192.0.2.1")
        old_keys = set(engine.keys.keys)
    code, out = _invoke("--data", str(data), "keys", "rotate")
    assert code == 0, out
    assert "1 open public request(s)" in out
    with vultus.open(data) as engine:
        assert set(engine.keys.keys).isdisjoint(old_keys)
        done = engine.fulfil_request(sent["request_id"])
        assert done["contact"] == "joe@example.org" and len(done["result"]["removed_images"]) == 2


def test_rotation_is_refused_while_another_process_has_the_data_directory_open(data: Path):
    key_file = data / "keys.json"
    before = key_file.read_bytes()
    server = vultus.open(data)  # stands for `vultus serve`: its own open file, its own lock
    try:
        code, out = _invoke("--data", str(data), "keys", "rotate")
        assert code == 1 and "POST /v1/keys/rotate" in out and "Traceback" not in out
        assert key_file.read_bytes() == before
        with pytest.raises(DataDirInUseError):
            vultus.open(data).rotate_keys()
        # The open deployment itself may rotate (that is what the server's route does) ...
        assert server.rotate_keys()["templates"] > 0
    finally:
        server.close()
    # ... and everything stays readable by the next process.
    with vultus.open(data) as engine:
        assert engine.stats().index_vectors == engine.stats().faces > 0


def test_an_interrupted_rotation_is_audited_keeps_both_keys_and_resumes(data: Path, monkeypatch):
    def killed(self):  # noqa: ANN001 - the process dies just before the old key is dropped
        raise KeyboardInterrupt

    with vultus.open(data) as engine:
        monkeypatch.setattr(Keyring, "finish_rotation", killed)
        with pytest.raises(KeyboardInterrupt):
            engine.rotate_keys()
        monkeypatch.undo()
        rotations = engine.audit_entries(action="keys.rotate")
        assert len(rotations) == 1 and rotations[0].details["dropped_keys"]
    with vultus.open(data) as engine:
        assert len(engine.keys.keys) == 2
        assert any("interrupted" in n for n in engine.notices)
    code, out = _invoke("--data", str(data), "keys", "rotate")
    assert code == 0 and "Finished the interrupted rotation" in out, out
    with vultus.open(data) as engine:
        assert len(engine.keys.keys) == 1 and engine.verify_audit().ok
        assert engine.stats().index_vectors == engine.stats().faces > 0


# -- 4. the public page's limit --------------------------------------------------------------------


def test_concurrent_public_requests_from_one_client_get_only_the_daily_limit(data: Path, faces_root: Path):
    photo = (faces_root / "facerec_obama" / "2.jpg").read_bytes()
    outcomes: list[str] = []
    with vultus.open(data) as engine:
        engine.analyzer  # noqa: B018 - loaded once, before the threads race

        def send(number: int) -> None:
            try:
                engine.submit_public_request(kind="access", photo=photo, contact=f"p{number}@example.org",
                                             client="198.51.100.9")
                outcomes.append("accepted")
            except RateLimitedError:
                outcomes.append("limited")

        threads = [threading.Thread(target=send, args=(n,)) for n in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["accepted"] * 3 + ["limited"] * 7
        assert sum(1 for r in engine.requests() if r.origin == "public") == 3


def test_refused_public_requests_count_toward_the_limit(data: Path, faces_root: Path):
    noface = (faces_root / "_noface" / "017_0.jpg").read_bytes()
    with vultus.open(data) as engine:
        for _ in range(3):
            with pytest.raises(VultusError) as failed:
                engine.submit_public_request(kind="access", photo=noface, contact="eve@example.org", client="203.0.113.5")
            assert not isinstance(failed.value, RateLimitedError)
        with pytest.raises(RateLimitedError):
            engine.submit_public_request(kind="access", photo=(faces_root / "facerec_obama" / "2.jpg").read_bytes(),
                                         contact="other@example.org", client="203.0.113.5")
        # Refused attempts do not block the address they named (anyone can name anyone's).
        engine.submit_public_request(kind="access", photo=(faces_root / "facerec_obama" / "2.jpg").read_bytes(),
                                     contact="eve@example.org", client="198.51.100.77")


def test_requester_hashes_are_keyed_and_erased_once_the_request_is_carried_out(data: Path, faces_root: Path):
    contact, client = "kim@example.org", "192.0.2.44"
    with vultus.open(data) as engine:
        sent = engine.submit_public_request(kind="access", photo=(faces_root / "facerec_obama" / "2.jpg").read_bytes(),
                                            contact=contact, client=client)
        plain = {hashlib.sha256(contact.encode()).hexdigest(), hashlib.sha256(client.encode()).hexdigest()}
        with engine.store.engine.connect() as conn:
            stored = {v for row in conn.execute(select(public_attempts.c.contact_hash, public_attempts.c.client_hash))
                      for v in row}
            stored |= {v for row in conn.execute(select(requests.c.contact_hash, requests.c.client_hash)) for v in row}
        assert stored - {None} and not (stored & plain)
        engine.fulfil_request(sent["request_id"])
        with engine.store.engine.connect() as conn:
            assert conn.execute(select(public_attempts)).all() == []
            row = conn.execute(select(requests.c.contact_hash, requests.c.client_hash, requests.c.template)
                               .where(requests.c.id == sent["request_id"])).one()
        assert tuple(row) == (None, None, None)
    # Nothing in the data directory holds the plain hash of the address.
    needle = hashlib.sha256(contact.encode()).hexdigest().encode()
    assert not [p for p in data.rglob("*") if p.is_file() and needle in p.read_bytes()]


# -- 6. the ingest root ----------------------------------------------------------------------------


def test_a_symbolic_link_out_of_the_ingest_root_is_refused_unread(tmp_path: Path, faces_root: Path):
    root = tmp_path / "root"
    (root / "batch").mkdir(parents=True)
    shutil.copy(faces_root / "facerec_obama" / "1.jpg", root / "batch" / "inside.jpg")
    outside = tmp_path / "private" / "secret.jpg"
    outside.parent.mkdir()
    shutil.copy(faces_root / "facerec_biden" / "1.jpg", outside)
    (root / "batch" / "link.jpg").symlink_to(outside)
    (root / "batch" / "dirlink").symlink_to(outside.parent, target_is_directory=True)
    with vultus.open(tmp_path / "data") as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
        summary = engine.ingest([root / "batch"], source="news", workers=1, root=root)
        assert summary.images == 1
        assert [Path(p).name for p, _ in summary.refused] == ["link.jpg"]
        assert "outside the ingest root" in summary.refused[0][1]
        stored = [hit.original_path for hit in engine.store.hydrate(engine.store.searchable_face_ids().tolist()).values()]
        assert [Path(p).name for p in stored] == ["inside.jpg"]


# -- 8. errors -------------------------------------------------------------------------------------


def _swap_aes_key(key_file: Path) -> None:
    raw = json.loads(key_file.read_text())
    raw["keys"] = {k: base64.b64encode(os.urandom(32)).decode() for k in raw["keys"]}
    key_file.write_text(json.dumps(raw))


def test_a_wrong_aes_key_is_named_as_such_and_reindex_destroys_nothing(data: Path, faces_root: Path):
    index = data / "index" / "faces.faiss"
    before = index.read_bytes()
    _swap_aes_key(data / "keys.json")
    probe = str(faces_root / "facerec_obama" / "2.jpg")
    for args in (["search", probe, "--purpose", "p", "--case", "c"], ["reindex"], ["stats"]):
        code, out = _invoke("--data", str(data), *args)
        assert code == 1 and "wrong key file" in out and "reindex" not in out.split("wrong key file")[1][:80], out
        assert "Traceback" not in out
    assert index.read_bytes() == before


def test_a_damaged_signing_key_is_a_message_not_a_traceback(data: Path):
    raw = json.loads((data / "keys.json").read_text())
    raw["signing_key"] = base64.b64encode(b"7 bytes").decode()
    (data / "keys.json").write_text(json.dumps(raw))
    code, out = _invoke("--data", str(data), "stats")
    assert code == 1 and "signing key is 7 bytes" in out and "Traceback" not in out


def test_a_new_deployment_is_owner_only_from_its_first_command_without_notices(tmp_path: Path):
    data = tmp_path / "new"
    old = os.umask(0o022)  # the usual umask, under which SQLite would make its files 644
    try:
        for args in (["source", "add", "s", "--basis", "consent", "--purpose", "p", "--retention", "1d"], ["stats"]):
            result = CliRunner().invoke(cli, ["--data", str(data), *args])
            assert result.exit_code == 0 and "Note:" not in result.stderr, result.stderr
    finally:
        os.umask(old)
    for path in [data / "keys.json", *data.glob("vultus.db*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_loose_permissions_on_the_key_file_data_directory_and_database_are_fixed_with_a_notice(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    with vultus.open(data):
        pass
    os.chmod(data / "keys.json", 0o644)
    os.chmod(data / "vultus.db", 0o644)
    result = CliRunner().invoke(cli, ["--data", str(data), "stats"])
    assert result.exit_code == 0, result.output
    for path, mode in ((data, 0o700), (data / "keys.json", 0o600), (data / "vultus.db", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert "key file" in result.stderr and "database file" in result.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o755)
    os.chmod(fresh, 0o755)
    with vultus.open(fresh) as engine:
        assert any("data directory" in n for n in engine.notices)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs: a real full disk (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_ingest_is_a_message_and_loses_nothing_stored(small_disk: Path, faces_root: Path, tmp_path: Path):
    data = small_disk / "data"
    base = ["--data", str(data)]
    assert _invoke(*base, "source", "add", "news", "--basis", "consent", "--purpose", "p", "--retention", "30d",
                   "--consent-ref", "forms/1")[0] == 0
    assert _invoke(*base, "ingest", str(faces_root / "facerec_obama"), "--source", "news", "--workers", "1")[0] == 0
    with vultus.open(data) as engine:
        faces_before = engine.stats().faces
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(0, free - 64 * 1024))
    code, out = _invoke(*base, "ingest", str(faces_root / "_group"), "--source", "news", "--workers", "1")
    assert code == 1 and "No space is left" in out and "Traceback" not in out, out
    for args in (["search", str(faces_root / "facerec_obama" / "2.jpg"), "--purpose", "p", "--case", "c"],
                 ["keys", "rotate"], ["stats"]):
        code, out = _invoke(*base, *args)
        assert (code == 0 and args == ["stats"]) or ("No space is left" in out and "Traceback" not in out), (args, out)
    filler.unlink()
    code, out = _invoke(*base, "keys", "rotate")  # finishes whatever the full disk interrupted
    assert code == 0, out
    with vultus.open(data) as engine:
        stats = engine.stats()
        assert stats.faces >= faces_before and stats.index_vectors == stats.faces
        assert engine.verify_audit().ok


def test_a_read_only_data_directory_is_named_as_such(small_disk: Path, faces_root: Path):
    data = small_disk / "data"
    _ingest(data, faces_root, "facerec_obama")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, out = _invoke("--data", str(data), "search", str(faces_root / "facerec_obama" / "2.jpg"),
                        "--purpose", "p", "--case", "c")
    assert code == 1 and "read-only" in out and "Traceback" not in out, out


def test_a_reindex_that_cannot_read_the_templates_keeps_the_old_index(data: Path, monkeypatch):
    index = data / "index" / "faces.faiss"
    before = index.read_bytes()
    with vultus.open(data) as engine:
        from vultus.errors import TamperedDataError
        from vultus.store import Store

        def unreadable(self, ids=None, **kwargs):  # noqa: ANN001 - a template that fails its check
            raise TamperedDataError("Stored data failed its integrity check.")

        monkeypatch.setattr(Store, "face_vectors", unreadable)
        with pytest.raises(TamperedDataError):
            engine.reindex()
    assert index.read_bytes() == before


def test_rotating_beside_a_running_server_is_refused_with_advice_and_its_route_rotates(data: Path, faces_root: Path):
    """Acceptance 2: with a public request open and `vultus serve` running, nothing becomes unreadable."""
    import socket
    import sys
    import time

    import httpx

    with vultus.open(data) as engine:
        _, admin = engine.add_user("admin-1", role="admin")
        _, dpo = engine.add_user("dpo-1", role="dpo")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vultus", "--data", str(data), "serve", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        photo = faces_root / "facerec_biden" / "1.jpg"
        sent = httpx.post(f"{base}/public/requests", data={"kind": "erasure", "contact": "joe@example.org"},
                          files={"photo": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=120)
        assert sent.status_code == 202, sent.text
        keys_before = (data / "keys.json").read_bytes()
        code, out = _invoke("--data", str(data), "keys", "rotate")
        assert code == 1 and "POST /v1/keys/rotate" in out
        assert (data / "keys.json").read_bytes() == keys_before
        rotated = httpx.post(f"{base}/v1/keys/rotate", headers={"Authorization": f"Bearer {admin}"}, timeout=120)
        assert rotated.status_code == 200 and rotated.json()["public_requests"] == 1, rotated.text
        # The request sealed before the rotation is carried out by the server under the new key.
        done = httpx.post(f"{base}/v1/requests/{sent.json()['request_id']}/fulfil",
                          headers={"Authorization": f"Bearer {dpo}"}, timeout=120)
        assert done.status_code == 200 and len(done.json()["result"]["removed_images"]) == 2, done.text
    finally:
        server.terminate()
        server.wait(30)
    with vultus.open(data) as engine:
        assert len(engine.keys.keys) == 1 and engine.verify_audit().ok
        assert engine.stats().index_vectors == engine.stats().faces > 0


def test_storage_failures_are_told_apart(tmp_path: Path):
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from vultus.errors import DataDirPermissionError, DiskFullError, ReadOnlyDataDirError, storage_error

    assert isinstance(storage_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path), DiskFullError)
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "vultus.db")), tmp_path)
    assert isinstance(denied, DataDirPermissionError) and "vultus.db" in str(denied) and "chown" in str(denied)
    assert isinstance(storage_error(OSError(errno.EROFS, "Read-only file system"), tmp_path), ReadOnlyDataDirError)
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert isinstance(storage_error(full, tmp_path), DiskFullError)
    readonly = OperationalError("INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database"))
    assert isinstance(storage_error(readonly, tmp_path), ReadOnlyDataDirError)
    assert storage_error(OSError(errno.ENOENT, "No such file"), tmp_path) is None


def test_the_path_ingest_route_refuses_a_link_out_of_the_root(tmp_path: Path, faces_root: Path):
    import time

    from fastapi.testclient import TestClient

    from vultus.server import create_app

    root = tmp_path / "root"
    (root / "batch").mkdir(parents=True)
    shutil.copy(faces_root / "facerec_obama" / "1.jpg", root / "batch" / "inside.jpg")
    (root / "batch" / "link.jpg").symlink_to(faces_root / "facerec_biden" / "1.jpg")
    with vultus.open(tmp_path / "data", ingest_root=root) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
        _, token = engine.add_user("inv", role="investigator")
        client = TestClient(create_app(engine=engine))
        headers = {"Authorization": f"Bearer {token}"}
        job = client.post("/v1/ingest/paths", headers=headers, json={"source": "news", "paths": ["batch"]}).json()
        for _ in range(600):
            state = client.get(f"/v1/ingest/{job['id']}", headers=headers).json()
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert state["status"] == "done", state
        refused = state["summary"]["refused"]
        assert [Path(r["path"]).name for r in refused] == ["link.jpg"] and state["summary"]["images"] == 1


def test_a_full_disk_under_the_server_is_a_507_with_advice(small_disk: Path, faces_root: Path):
    from fastapi.testclient import TestClient

    from vultus.server import create_app

    data = small_disk / "data"
    _ingest(data, faces_root, "facerec_obama")
    with vultus.open(data) as engine:
        _, token = engine.add_user("inv", role="investigator")
        client = TestClient(create_app(engine=engine), raise_server_exceptions=False)
        (small_disk / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 16 * 1024))
        probe = faces_root / "facerec_obama" / "2.jpg"
        answer = client.post("/v1/search", headers={"Authorization": f"Bearer {token}"},
                             files={"photo": (probe.name, probe.read_bytes(), "image/jpeg")},
                             data={"purpose": "p", "case": "c"})
        assert answer.status_code == 507 and "No space is left" in answer.json()["error"]["message"], answer.text


def test_a_refused_rotation_never_leaves_the_server_without_its_hold(tmp_path: Path, monkeypatch):
    """The moment Linux drops a shared flock during a failed conversion, another rotation tries."""
    import fcntl

    from vultus import datadir

    server, cli = datadir.Presence(tmp_path), datadir.Presence(tmp_path)
    real = fcntl.flock
    raced = []

    def flock(file, operation):  # noqa: ANN001
        try:
            return real(file, operation)
        except BlockingIOError:
            if file is server._file and operation == fcntl.LOCK_EX | fcntl.LOCK_NB and not raced:
                raced.append("cli tried")
                with pytest.raises(DataDirInUseError):
                    with cli.alone(why="cli refused"):
                        raced.append("cli was alone beside the server")
            raise

    monkeypatch.setattr(datadir.fcntl, "flock", flock)
    with pytest.raises(DataDirInUseError):
        with server.alone(why="server refused"):
            pass
    monkeypatch.undo()
    assert raced == ["cli tried"]
    cli.close()
    with pytest.raises(DataDirInUseError):  # the server still holds the deployment open
        with datadir.Presence(tmp_path).alone(why="refused"):
            pass
    server.close()


def test_a_file_swapped_for_a_link_after_it_was_listed_is_refused_when_read(tmp_path: Path, faces_root: Path):
    """The ingest root is checked on what is opened, not only on the name that was listed."""
    from vultus.media import collect, read_items

    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes((faces_root / "facerec_obama" / "1.jpg").read_bytes())
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"SECRET-OUTSIDE-ROOT")
    found = collect([root], root=root)
    assert [Path(i.container).name for i in found.items] == ["a.jpg"]
    (root / "a.jpg").unlink()
    (root / "a.jpg").symlink_to(secret)  # swapped between listing and reading
    [(item, data)] = list(read_items(found.items))
    assert isinstance(data, PermissionError) and "outside the ingest root" in str(data)
    os.mkfifo(root / "pipe.jpg")  # a FIFO named like a photo would block the read for ever
    [(_, blocked)] = [(i, d) for i, d in read_items(collect([root / "pipe.jpg"]).items)]
    assert isinstance(blocked, OSError) and "not a regular file" in str(blocked)


def test_the_public_pages_counts_are_forgotten_after_a_day_without_new_attempts(data: Path, faces_root: Path):
    from datetime import timedelta

    from sqlalchemy import update

    from vultus.store import iso, utcnow

    noface = (faces_root / "_noface" / "017_0.jpg").read_bytes()
    with vultus.open(data) as engine:
        with pytest.raises(VultusError):
            engine.submit_public_request(kind="access", photo=noface, contact="old@example.org", client="192.0.2.8")
        with engine.store.engine.begin() as conn:
            conn.execute(update(public_attempts).values(at=iso(utcnow() - timedelta(days=2))))
    with vultus.open(data) as engine, engine.store.engine.connect() as conn:
        assert conn.execute(select(public_attempts)).all() == []
