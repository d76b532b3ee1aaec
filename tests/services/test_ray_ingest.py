"""Ingest on Ray (``--executor ray``) stores what the process pool stores, and survives a kill -9.

Each ingest starts a local Ray instance of its own (no ``--ray-address``), as a user trying the
executor would; only the check of a task lost at every try runs on the head started by
``scripts/services.sh start ray``.
Needs Ray (``pip install 'vultus[services]'``) and the shared photos (VULTUS_TEST_DATA).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.services


def _vultus(data: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a local instance for this test only
    env.pop("VULTUS_RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "vultus", "--data", str(data), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)


def _run(data: Path, *args: str) -> str:
    proc = _vultus(data, *args)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return output


def _stored(db: Path) -> list[tuple[str, int]]:
    """(sha256, faces) of every stored photo."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT i.sha256, (SELECT count(*) FROM faces f WHERE f.image_id = i.id) "
                                "FROM images i").fetchall()
    except sqlite3.OperationalError:
        return []


@pytest.fixture(scope="module")
def folders(faces_root: Path) -> list[str]:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail("Ray is not installed: ./scripts/setup.sh --test installs it (the services extra).", pytrace=False)
    return sorted(str(p) for p in faces_root.iterdir() if p.name.startswith("deepface_"))


def _add_source(data: Path) -> None:
    _run(data, "source", "add", "s", "--basis", "consent", "--purpose", "ray test", "--retention", "7d")


def test_ray_ingest_killed_part_way_then_rerun_stores_every_photo_once(tmp_path: Path, folders: list[str]):
    pool, ray = tmp_path / "pool", tmp_path / "ray"
    for data in (pool, ray):
        _add_source(data)
    _run(pool, "ingest", *folders, "--source", "s", "--workers", "2", "--no-progress")
    expected = sorted(_stored(pool / "vultus.db"))
    assert len(expected) > 20

    args = ("ingest", *folders, "--source", "s", "--executor", "ray", "--workers", "2", "--no-progress")
    first = _vultus(ray, *args)
    deadline = time.monotonic() + 300
    while len(_stored(ray / "vultus.db")) < 5:
        assert first.poll() is None, "the Ray ingest ended before it could be killed:\n" + first.stdout.read()
        assert time.monotonic() < deadline, "the Ray ingest stored nothing in time"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started, as kill -9 of the job
    first.wait(30)
    at_kill = len(_stored(ray / "vultus.db"))
    assert 5 <= at_kill < len(expected), "the kill must land in the middle of the ingest"

    _run(ray, *args)
    stored = sorted(_stored(ray / "vultus.db"))
    assert len({sha for sha, _ in stored}) == len(stored), "a photo was stored twice"
    assert stored == expected, "the Ray ingest must store every photo once, with the faces the pool finds"


def test_ray_ingest_refuses_an_unreachable_head_without_a_traceback(tmp_path: Path, folders: list[str]):
    _add_source(tmp_path)
    proc = _vultus(tmp_path, "ingest", folders[0], "--source", "s", "--executor", "ray",
                   "--ray-address", "127.0.0.1:1", "--no-progress")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert "No Ray head answers at 127.0.0.1:1" in output and "Traceback" not in output
    assert _stored(tmp_path / "vultus.db") == []


def test_a_task_whose_worker_dies_at_every_try_is_reported_as_a_crashed_worker(ray_head: str):
    """After Ray's retries, what ingest reports for a dead pool worker (WorkerCrashedError's
    advice), not Ray's own exception."""
    from concurrent.futures.process import BrokenProcessPool

    from vultus.executors import RAY_RETRIES, open_executor

    with open_executor("ray", workers=1, initializer=int, args=(), ray_address=ray_head) as executor:
        assert executor.submit(abs, -3).result(timeout=120) == 3
        with pytest.raises(BrokenProcessPool, match=f"{RAY_RETRIES + 1} tries"):
            executor.submit(os._exit, 1).result(timeout=300)  # the worker process exits mid-task
