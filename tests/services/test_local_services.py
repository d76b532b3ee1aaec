"""The local services of scripts/services.sh answer on loopback only (what the program allows).

Milvus standalone listens on every interface of its network namespace; run as root, the script
gives it a namespace of its own, so none of its ports (client, etcd, metrics, coordinators) is
open on this host, and its client port is reached only through the relay on 127.0.0.1. PostgreSQL
listens on 127.0.0.1 only. Needs the services started (``eval "$(scripts/services.sh start)"``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.services

#: Ports Milvus standalone 2.3 opens: client gRPC, its proxy's internal port, etcd, metrics and health.
MILVUS_OWN_PORTS = [19530, 19529, 2379, 9091]


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _host_addresses() -> list[str]:
    """This host's IPv4 addresses other than loopback."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False).stdout
    found = [line.split()[3].split("/")[0] for line in shown.splitlines() if " inet " in f" {line} "]
    return [a for a in found if not a.startswith("127.")]


def test_milvus_is_reached_through_loopback_only(milvus_server: str):
    where = urlsplit(milvus_server)
    assert where.hostname == "127.0.0.1" and _answers("127.0.0.1", where.port)
    outside = _host_addresses()
    assert outside, "this host has no address besides loopback to check from"
    for address in outside:
        assert not _answers(address, where.port), f"the Milvus relay answers on {address}"
    services = Path(os.environ.get("VULTUS_SERVICES_DIR", Path(__file__).resolve().parents[2] / ".services"))
    if os.geteuid() == 0:
        assert (services / "milvus" / "netns").exists(), "run as root, Milvus must be in a network namespace of its own"
        for port in MILVUS_OWN_PORTS:  # (on 127.0.0.1 they may be another program's)
            for address in outside:
                assert not _answers(address, port), f"Milvus's own port {port} is open on {address}"
    else:
        # Not root: no namespace, which the script said when it started.
        assert not (services / "milvus" / "netns").exists()


def test_postgresql_listens_on_loopback_only(pg_server: str):
    where = urlsplit(pg_server.replace("postgresql+psycopg", "postgresql"))
    assert _answers("127.0.0.1", where.port)
    for address in _host_addresses():
        assert not _answers(address, where.port), f"PostgreSQL answers on {address}"


def _holding_files_under(folder: Path) -> list[str]:
    """The processes with a file open under ``folder``, as "pid name"."""
    held = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(str(folder)) for fd in (proc / "fd").iterdir()):
                held.append(f"{proc.name} {(proc / 'comm').read_text().strip()}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return held


@pytest.fixture
def short_dir():
    """A folder with a short path: Ray's socket paths under it must fit AF_UNIX's 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_stopping_the_ray_head_ends_its_renamed_agents_too(short_dir: Path):
    """Ray's agents rename themselves (ray::DashboardAgent) and its client server is told only the
    head's address: stop must end them as well, or every run of the suite would leave them behind
    (the client server listening on the host's address)."""
    repo = Path(__file__).resolve().parents[2]
    tmp_path = short_dir
    env = {**os.environ, "VULTUS_SERVICES_DIR": str(tmp_path), "VULTUS_RAY_PORT": "6391", "VULTUS_RAY_CPUS": "1"}
    started = subprocess.run([str(repo / "scripts" / "services.sh"), "start", "ray"], env=env, capture_output=True,
                             text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert any("ray::" in p for p in _holding_files_under(tmp_path / "ray")), "no agent to check with"
    finally:
        stopped = subprocess.run([str(repo / "scripts" / "services.sh"), "stop", "ray"], env=env, capture_output=True,
                                 text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _holding_files_under(tmp_path / "ray") == []
