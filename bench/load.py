"""Load on loopback: concurrent searches over HTTP while an ingest runs in the same server,
then the server's peak memory while the public page receives a decompression-bomb TIFF.

Usage: python bench/load.py [--clients 8] [--seconds 60] [--data-root ../shared/data]

Starts `vultus serve` on 127.0.0.1 with a fresh data directory holding half of the identity
folders, starts an ingest of the other half through the API, and runs CLIENTS threads that
search with real photos for SECONDS (at most 20,000 requests in all). Prints status counts,
5xx count and latency percentiles. Then, on a fresh server, it sends the public page one
ordinary request, then a 10000x11000 float32 TIFF (deflate, under 1 MB on the wire), alone and
two at once, and prints the server's peak RSS (VmHWM, reset between the steps) for each.
Traffic goes to the loopback address only.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

import vultus
from vultus.evaluation import identity_photos

MAX_REQUESTS = 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    folders = sorted(identity_photos(faces_root))
    first, second = folders[::2], folders[1::2]
    probes = [p for name in folders for p in identity_photos(faces_root)[name]]
    with tempfile.TemporaryDirectory(prefix="vultus-load-") as tmp:
        data = Path(tmp) / "data"
        with vultus.open(data) as engine:
            engine.add_source("news", basis="legitimate-interests", purpose="load test", retention="30d")
            engine.ingest([faces_root / f for f in first], source="news")
            _, token = engine.add_user("loadtest", role="investigator")
        server, base = start_server(data, {**os.environ, "VULTUS_INGEST_ROOT": str(faces_root)})
        headers = {"Authorization": f"Bearer {token}"}
        try:
            job = httpx.post(f"{base}/v1/ingest/paths", headers=headers, json={"source": "news", "paths": second}, timeout=30).json()
            statuses: Counter[int] = Counter()
            latencies: list[float] = []
            lock = threading.Lock()
            deadline = time.monotonic() + args.seconds

            def client(seed: int) -> None:
                rng = random.Random(seed)
                with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                    while time.monotonic() < deadline:
                        with lock:
                            if sum(statuses.values()) >= MAX_REQUESTS:
                                return
                        probe = rng.choice(probes)
                        started = time.perf_counter()
                        response = http.post("/v1/search", files={"photo": (probe.name, probe.read_bytes(), "image/jpeg")},
                                             data={"purpose": "load test", "case": "LOAD-1"})
                        elapsed = time.perf_counter() - started
                        with lock:
                            statuses[response.status_code] += 1
                            latencies.append(elapsed)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            state = httpx.get(f"{base}/v1/ingest/{job['id']}", headers=headers, timeout=30).json()
        finally:
            server.terminate()
            server.wait(30)
        memory = bomb_memory(data, faces_root)
    latencies.sort()
    total = sum(statuses.values())
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    rows = [
        ("clients", str(args.clients)),
        ("duration", f"{wall:.1f} s"),
        ("requests", str(total)),
        ("throughput", f"{total / wall:.2f} searches/s"),
        ("status codes", ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))),
        ("5xx", str(sum(n for code, n in statuses.items() if code >= 500))),
        ("latency p50", f"{pick(0.50):.0f} ms"),
        ("latency p99", f"{pick(0.99):.0f} ms"),
        ("latency mean", f"{statistics.fmean(latencies) * 1000:.0f} ms" if latencies else "-"),
        ("ingest during the load", f"{state['status']}, {state['done']}/{state['total']} photos, {state['faces']} faces"),
        *memory,
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nSearch over HTTP on loopback while an ingest runs (this machine, {os.cpu_count()} cores)\n")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 1 if any(code >= 500 for code in statuses) else 0


def start_server(data: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`vultus serve` on a free loopback port, once it answers /healthz."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vultus", "--data", str(data), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env or dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, base


def peak_rss_mb(pid: int, *, reset: bool = False) -> float:
    """The process's peak resident memory (VmHWM) in MB; ``reset`` starts a new peak."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak


def float_tiff() -> bytes:
    """A 10000x11000 float32 TIFF, deflate-compressed: under 1 MB, 440 MB of pixels."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((11000, 10000), dtype=np.float32), mode="F").save(buffer, format="TIFF",
                                                                                 compression="tiff_deflate")
    return buffer.getvalue()


def bomb_memory(data: Path, faces_root: Path) -> list[tuple[str, str]]:
    """Peak RSS of a fresh server: after one ordinary public request, then with the float TIFF."""
    bomb = float_tiff()
    server, base = start_server(data)
    rows = []
    try:
        def send(photo: bytes, name: str, contact: str) -> int:
            return httpx.post(f"{base}/public/requests", data={"kind": "access", "contact": contact},
                              files={"photo": (name, photo, "image/tiff" if name.endswith("tif") else "image/jpeg")},
                              timeout=300).status_code

        ordinary = next(iter(sorted((faces_root / "facerec_obama").glob("*.jpg"))))
        code = send(ordinary.read_bytes(), ordinary.name, "first@example.org")
        rows.append(("server peak RSS, one ordinary public request", f"{peak_rss_mb(server.pid, reset=True):.0f} MB (answer {code})"))
        code = send(bomb, "bomb.tif", "second@example.org")
        rows.append((f"... then the float TIFF ({len(bomb) // 1024} KB)", f"{peak_rss_mb(server.pid, reset=True):.0f} MB (answer {code})"))
        # The page's daily limit (3 per client) would refuse the 4th: start the day's count again.
        import sqlite3

        with sqlite3.connect(data / "vultus.db") as db:
            db.execute("DELETE FROM public_attempts")
        codes: list[int] = []
        pair = [threading.Thread(target=lambda n=n: codes.append(send(bomb, "bomb.tif", f"t{n}@example.org")))
                for n in range(2)]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join()
        rows.append(("... two float TIFFs at once", f"{peak_rss_mb(server.pid):.0f} MB (answers {sorted(codes)})"))
    finally:
        server.terminate()
        server.wait(30)
    return rows


if __name__ == "__main__":
    sys.exit(main())
