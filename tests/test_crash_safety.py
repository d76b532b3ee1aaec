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

import vultus
from vultus.crypto import Keyring
from vultus.index import create_index
from vultus.rights import check_receipt


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
