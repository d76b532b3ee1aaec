"""The server under attack: bodies before authentication, stalled uploads, queued ingest jobs,
ids and names that used to crash it, the public page's client address and the web sign-in.

Item numbers refer to issue 11. The tests that need a real socket run `vultus serve` in a
subprocess on loopback, with its temporary directory inside the test's own folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import vultus
from vultus.server import create_app
from vultus.store.accounts import Role

MiB = 1024 * 1024
ATTACK_BYTES = 300 * MiB
#: Most that a rejected request may add to the server's temporary and data directories.
MAX_GROWTH = 25 * MiB
INT64_OVERFLOW = "9" * 20
SMALL_PHOTOS = ["deepface_jennifer/2.jpg", "deepface_scarlett/7.jpg", "deepface_sundar/2.jpg", "deepface_jack/5.jpg",
                "_variants/facerec_obama_small.jpg", "deepface_angelina/4.jpg", "deepface_jack/1.jpg",
                "deepface_scarlett/6.jpg", "deepface_unnamed_a/8.jpg", "deepface_unnamed_a/6.jpg",
                "deepface_jack/2.jpg", "deepface_jeff/2.jpg"]


# -- a live server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """`vultus serve` in a subprocess: its data and TMPDIR folders, port, pid and an investigator token."""
    root = tmp_path_factory.mktemp("live")
    data, tmp = root / "data", root / "tmp"
    tmp.mkdir()
    with vultus.open(data) as engine:
        engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
        token = engine.add_user("inv-live", role="investigator")[1]
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "VULTUS_BODY_TIMEOUT": "2", "VULTUS_WORKERS": "1"}
    log = (root / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "vultus", "--data", str(data), "serve", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"vultus serve exited: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield {"port": port, "pid": process.pid, "data": data, "tmp": tmp, "token": token, "log": root / "server.log"}
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _open_bytes(pid: int, folders: list[Path]) -> int:
    """Bytes in the files the server process holds open under ``folders``, deleted ones included."""
    total = 0
    prefixes = [str(f) for f in folders]
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if any(target.startswith(p) for p in prefixes):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
    return total


def _stored_bytes(folders: list[Path]) -> int:
    return sum(p.stat().st_size for f in folders for p in f.rglob("*") if p.is_file())


def _read_response(sock: socket.socket) -> tuple[int | None, bytes]:
    """The status and raw bytes of the response on ``sock`` (None when it closed without one)."""
    sock.settimeout(60)
    raw = b""
    try:
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        while length and len(rest) < int(length.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        raw = head + b"\r\n\r\n" + rest
    except ConnectionResetError:
        pass
    status = re.match(rb"HTTP/1\.1 (\d{3})", raw)
    return (int(status.group(1)) if status else None), raw


def _attack(live: dict, path: str, *, headers: dict[str, str] | None = None, declare_length: bool = True):
    """Stream a 300 MB multipart body to ``path`` (never built in memory) until the server answers.

    Returns the status, the response, the bytes sent, and how much the server's temporary
    and data directories grew at most while it was sent.
    """
    folders = [live["tmp"], live["data"]]
    boundary = "vultusattack"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: multipart/form-data; boundary={boundary}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {ATTACK_BYTES}" if declare_length else "Transfer-Encoding: chunked")

    def body():
        yield part
        filler = b"\xff" * MiB
        left = ATTACK_BYTES - len(part) - len(tail)
        while left > 0:
            yield filler[:left]
            left -= len(filler)
        yield tail

    base_open, base_stored = _open_bytes(live["pid"], folders), _stored_bytes(folders)
    peak = 0
    sent = 0
    sock = socket.create_connection(("127.0.0.1", live["port"]), timeout=60)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for number, chunk in enumerate(body()):
            frame = chunk if declare_length else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if number % 8 == 0:
                peak = max(peak, _open_bytes(live["pid"], folders) - base_open)
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered before the body ended
        else:
            if not declare_length:
                sock.sendall(b"0\r\n\r\n")
        peak = max(peak, _open_bytes(live["pid"], folders) - base_open, _stored_bytes(folders) - base_stored)
        status, raw = _read_response(sock)
    finally:
        sock.close()
    return status, raw, sent, peak


# -- item 2: bodies are refused before they are read ---------------------------------------------


def test_an_unauthenticated_300mb_upload_is_refused_before_its_body_is_stored(live):
    status, raw, sent, peak = _attack(live, "/v1/search")
    assert status == 401, raw[:300]
    assert b'"error"' in raw and b"unauthenticated" in raw
    assert peak < MAX_GROWTH, f"the server stored {peak / MiB:.0f} MiB of a rejected body"
    assert sent < ATTACK_BYTES


def test_a_chunked_body_declaring_content_length_0_is_still_refused_before_it_is_read(live):
    # Both headers: the HTTP parser reads the chunked body whatever Content-Length says, so
    # "Content-Length: 0" must not wave it past the checks made before a body is read.
    status, raw, sent, peak = _attack(live, "/v1/search", headers={"Content-Length": "0"}, declare_length=False)
    assert status in (401, 413), raw[:300]
    assert peak < MAX_GROWTH, f"the server stored {peak / MiB:.0f} MiB of a rejected body"
    assert sent < ATTACK_BYTES


def test_an_authenticated_upload_over_the_limit_is_refused_from_its_content_length(live):
    status, raw, sent, peak = _attack(live, "/v1/search", headers={"Authorization": f"Bearer {live['token']}"})
    assert status == 413 and b"upload_too_large" in raw, raw[:300]
    assert peak < MAX_GROWTH


@pytest.mark.parametrize("path", ["/public/requests", "/request"])
def test_a_chunked_300mb_body_to_the_public_page_stops_at_the_limit(live, path):
    status, raw, sent, peak = _attack(live, path, declare_length=False)
    assert status == 413, raw[:300]
    assert peak < MAX_GROWTH, f"the server stored {peak / MiB:.0f} MiB of a rejected body"
    assert sent < ATTACK_BYTES


def test_a_stalled_body_is_timed_out(live):
    sock = socket.create_connection(("127.0.0.1", live["port"]), timeout=60)
    try:
        sock.sendall(b"POST /public/requests HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
        status, raw = _read_response(sock)  # the server is set to wait 2 s (VULTUS_BODY_TIMEOUT)
    except socket.timeout:
        pytest.fail("the server was still waiting for the body after 60 s")
    finally:
        sock.close()
    assert status in (408, None), raw[:300]
    if status == 408:
        assert b"body_timeout" in raw


def _closed_by_server(sock: socket.socket, bound: float = 20.0) -> bool:
    """Whether the server closes ``sock`` within ``bound`` seconds (a generous bound, not a timing)."""
    sock.settimeout(bound)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_a_connection_that_sends_nothing_is_closed(live):
    # The server is set to give a request head 2 s (VULTUS_BODY_TIMEOUT in the fixture).
    with socket.create_connection(("127.0.0.1", live["port"]), timeout=60) as sock:
        assert _closed_by_server(sock), "an idle connection that never sent a request was still open"


def test_a_connection_that_stalls_in_its_request_head_is_closed(live):
    with socket.create_connection(("127.0.0.1", live["port"]), timeout=60) as sock:
        sock.sendall(b"GET /heal")
        assert _closed_by_server(sock), "a connection stalled in its request line was still open"


def test_a_kept_alive_connection_that_stalls_in_its_next_head_is_closed(live):
    with socket.create_connection(("127.0.0.1", live["port"]), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = _read_response(sock)
        assert status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(8):  # a byte now and then: each would have cancelled uvicorn's keep-alive timer
            time.sleep(1)
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert _closed_by_server(sock), "a connection trickling its headers was still open"


# -- item 4: the public page's client is the socket's address ------------------------------------


def test_a_spoofed_forwarded_for_does_not_make_a_new_client(live, faces_root: Path):
    photo = (faces_root / "deepface_jack" / "5.jpg").read_bytes()
    codes = []
    for number in range(4):
        response = httpx.post(f"http://127.0.0.1:{live['port']}/public/requests", timeout=120,
                              headers={"X-Forwarded-For": f"203.0.113.{number + 1}"},
                              data={"kind": "access", "contact": f"person{number}@example.org"},
                              files={"photo": ("me.jpg", photo, "image/jpeg")})
        codes.append(response.status_code)
    assert codes == [202, 202, 202, 429]


def test_forwarded_for_is_read_only_from_a_trusted_proxy():
    from vultus.server.clients import client_address, parse_proxies

    proxies = parse_proxies("10.0.0.0/8, 192.0.2.1")
    assert client_address("10.1.2.3", "198.51.100.9, 10.0.0.7", proxies) == "198.51.100.9"
    # Only the last hop that is not a trusted proxy: whatever the client wrote before it is ignored.
    assert client_address("192.0.2.1", "1.1.1.1, 198.51.100.9", proxies) == "198.51.100.9"
    assert client_address("203.0.113.5", "1.1.1.1", proxies) == "203.0.113.5"
    assert client_address("203.0.113.5", "1.1.1.1", parse_proxies(None)) == "203.0.113.5"
    assert client_address("10.1.2.3", "not an address", proxies) == "10.1.2.3"
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
    with pytest.raises(vultus.errors.SettingsError, match="VULTUS_TRUSTED_PROXIES"):
        parse_proxies("10.0.0.0/8, nonsense")


# -- in-process deployment ----------------------------------------------------------------------


@pytest.fixture
def app_engine(tmp_path: Path):
    engine = vultus.open(tmp_path / "data", workers=1)
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    tokens = {role: engine.add_user(f"{role.value}-h", role=role.value)[1] for role in Role}
    app = create_app(engine=engine)
    yield app, engine, tokens
    engine.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _Counted:
    """A request body of ``total`` bytes, made as it is read, that counts what was read."""

    def __init__(self, total: int):
        self.total = total
        self.read = 0

    async def __aiter__(self):
        part = b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        self.read += len(part)
        yield part
        while self.read < self.total:
            self.read += MiB
            yield b"\0" * MiB


@pytest.mark.parametrize("path,role", [("/v1/search", None), ("/v1/ingest/uploads", Role.AUDITOR),
                                       ("/ui/search", None), ("/ui/ingest", None)])
def test_uploads_are_refused_before_the_body_is_read(app_engine, path, role):
    app, _, tokens = app_engine
    body = _Counted(200 * MiB)
    headers = {"Content-Type": "multipart/form-data; boundary=b", **(_auth(tokens[role]) if role else {})}

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, content=body, headers=headers)

    response = asyncio.run(send())
    if path.startswith("/ui"):
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    else:
        assert response.status_code == (403 if role else 401)
        assert response.json()["error"]["code"] in ("forbidden", "unauthenticated")
    assert body.read < 2 * MiB


# -- item 5: ingest jobs queue for the writer ----------------------------------------------------


def _wait_for(client, job_id: str, headers, until=("done", "failed")) -> dict:
    for _ in range(3000):
        job = client.get(f"/v1/ingest/{job_id}", headers=headers).json()
        if job["status"] in until:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} still {job['status']}")


def test_concurrent_uploads_all_finish_with_every_photo_stored(app_engine, faces_root: Path):
    app, engine, tokens = app_engine
    headers = _auth(tokens[Role.INVESTIGATOR])
    photos = [faces_root / name for name in SMALL_PHOTOS[:10]]

    async def upload_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=120) as client:
            return await asyncio.gather(*(
                client.post("/v1/ingest/uploads", headers=headers, data={"source": "news"},
                            files=[("photos", (p.name, p.read_bytes(), "image/jpeg"))]) for p in photos))

    responses = asyncio.run(upload_all())
    assert [r.status_code for r in responses] == [202] * 10
    assert {r.json()["status"] for r in responses} <= {"queued", "running"}
    client = TestClient(app)
    jobs = [_wait_for(client, r.json()["id"], headers) for r in responses]
    assert [j["status"] for j in jobs] == ["done"] * 10, [j["error"] for j in jobs]
    assert engine.stats().images == 10
    assert not any((engine.data_dir / "uploads").iterdir())


def test_a_job_waits_while_another_engine_holds_the_writer_lock(app_engine, faces_root: Path):
    app, engine, tokens = app_engine
    headers = _auth(tokens[Role.INVESTIGATOR])
    client = TestClient(app)
    photo = faces_root / "deepface_jack" / "5.jpg"
    with vultus.open(engine.data_dir, workers=1) as other:
        writing = other.deployment.writing()
        writing.__enter__()
        try:
            response = client.post("/v1/ingest/uploads", headers=headers, data={"source": "news"},
                                   files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))])
            assert response.status_code == 202
            job_id = response.json()["id"]
            for _ in range(10):
                job = client.get(f"/v1/ingest/{job_id}", headers=headers).json()
                assert job["status"] == "queued", job
                time.sleep(0.1)
            assert "another" in job["waiting"].lower()
            assert any((engine.data_dir / "uploads").iterdir())  # the photo waits with its job
        finally:
            writing.__exit__(None, None, None)
    job = _wait_for(client, job_id, headers)
    assert job["status"] == "done" and job["summary"]["images"] + job["summary"]["no_face"] == 1, job
    assert engine.stats().images == 1


# -- item 8: no input gives a 500 ----------------------------------------------------------------


def test_ids_beyond_sqlite_integers_are_4xx_json(app_engine):
    app, _, tokens = app_engine
    client = TestClient(app, raise_server_exceptions=False)
    dpo = _auth(tokens[Role.DPO])
    for method, path in [("GET", f"/v1/requests/{INT64_OVERFLOW}"), ("POST", f"/v1/requests/{INT64_OVERFLOW}/fulfil"),
                         ("DELETE", f"/v1/suppressions/{INT64_OVERFLOW}"), ("GET", f"/v1/requests/-{INT64_OVERFLOW}")]:
        response = client.request(method, path, headers=dpo)
        assert response.status_code in (404, 422), (method, path, response.status_code, response.text)
        assert response.json()["error"]["code"]


def test_upload_file_names_of_any_length_are_stored_cut(app_engine, faces_root: Path):
    app, engine, tokens = app_engine
    client = TestClient(app, raise_server_exceptions=False)
    headers = _auth(tokens[Role.INVESTIGATOR])
    photo = (faces_root / "deepface_jack" / "5.jpg").read_bytes()
    names = ["é" * 300 + ".jpg", "a" * 300, "nul\x00name.jpg"]
    response = client.post("/v1/ingest/uploads", headers=headers, data={"source": "news"},
                           files=[("photos", (name, photo, "image/jpeg")) for name in names[:1]]
                           + [("photos", (names[1], (faces_root / SMALL_PHOTOS[0]).read_bytes(), "image/jpeg")),
                              ("photos", (names[2], (faces_root / SMALL_PHOTOS[1]).read_bytes(), "image/jpeg"))])
    assert response.status_code == 202, response.text
    job = _wait_for(client, response.json()["id"], headers)
    assert job["status"] == "done" and job["summary"]["images"] + job["summary"]["no_face"] == 3, job["summary"]["ignored"]
    import sqlite3

    with sqlite3.connect(engine.data_dir / "vultus.db") as db:
        stored = [row[0] for row in db.execute("select original_path from images")]
    assert len(stored) == 3 and all(path.startswith("upload:") and len(path.encode()) < 255 for path in stored), stored


# -- item 8: the web sign-in ---------------------------------------------------------------------


def _login_form(client: TestClient) -> str:
    page = client.get("/ui/login")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_sign_in_needs_the_forms_csrf_token(app_engine):
    app, _, tokens = app_engine
    client = TestClient(app)
    token = tokens[Role.AUDITOR]
    assert client.post("/ui/login", data={"token": token}, follow_redirects=False).status_code == 403
    assert client.post("/ui/login", data={"token": token, "csrf": "forged"}, follow_redirects=False).status_code == 403
    other = TestClient(app)
    stolen = _login_form(other)  # a token from another browser's form does not fit this browser's cookie
    assert client.post("/ui/login", data={"token": token, "csrf": stolen}, follow_redirects=False).status_code == 403
    csrf = _login_form(client)
    done = client.post("/ui/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/"


def test_the_sixth_failed_sign_in_is_refused_per_client_and_per_account(app_engine):
    app, engine, tokens = app_engine
    engine.set_password("auditor-h", "correct horse battery")
    client = TestClient(app, client=("198.51.100.1", 4000))
    for _ in range(5):
        wrong = client.post("/ui/login", data={"token": "wrong", "csrf": _login_form(client)})
        assert wrong.status_code == 401
    refused = client.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": _login_form(client)})
    assert refused.status_code == 429 and "15 minutes" in refused.text
    # Guessing one account's password from many addresses is limited too.
    for number in range(5):
        guesser = TestClient(app, client=(f"198.51.100.{10 + number}", 4000))
        assert guesser.post("/ui/login", data={"name": "auditor-h", "token": "guess",
                                               "csrf": _login_form(guesser)}).status_code == 401
    guesser = TestClient(app, client=("198.51.100.99", 4000))
    assert guesser.post("/ui/login", data={"name": "auditor-h", "token": "correct horse battery",
                                           "csrf": _login_form(guesser)}).status_code == 429
    # Another client and another account are not affected.
    fresh = TestClient(app, client=("198.51.100.200", 4000))
    assert fresh.post("/ui/login", data={"token": tokens[Role.DPO], "csrf": _login_form(fresh)},
                      follow_redirects=False).status_code == 303


def _guess_in_parallel(app, count: int, *, name: str, client: tuple[str, int]) -> list[int]:
    """The statuses of ``count`` wrong sign-ins for ``name`` from ``client``, sent at once."""

    async def attempt(number: int) -> int:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as browser:
            page = await browser.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            response = await browser.post("/ui/login", data={"name": name, "token": f"guess{number}", "csrf": csrf})
            return response.status_code

    async def run() -> list[int]:
        return list(await asyncio.gather(*(attempt(number) for number in range(count))))

    return asyncio.run(run())


def test_parallel_wrong_sign_ins_get_at_most_the_limit_of_tries(app_engine):
    from vultus.server.signin import MAX_FAILURES

    app, engine, _ = app_engine
    engine.set_password("auditor-h", "correct horse battery")
    codes = _guess_in_parallel(app, 24, name="auditor-h", client=("198.51.100.1", 4000))
    assert codes.count(401) <= MAX_FAILURES, codes
    assert codes.count(401) + codes.count(429) == len(codes), codes


def test_a_successful_sign_in_does_not_count_as_a_failure(app_engine):
    app, _, tokens = app_engine
    client = TestClient(app, client=("198.51.100.2", 4000))
    for _ in range(8):
        signed = client.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": _login_form(client)},
                             follow_redirects=False)
        assert signed.status_code == 303
    for _ in range(5):
        assert client.post("/ui/login", data={"token": "wrong", "csrf": _login_form(client)}).status_code == 401
    assert client.post("/ui/login", data={"token": "wrong", "csrf": _login_form(client)}).status_code == 429


def test_a_non_ascii_csrf_value_is_a_403_not_a_500(app_engine):
    app, _, tokens = app_engine
    client = TestClient(app, raise_server_exceptions=False)
    client.get("/ui/login")
    assert client.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": "é"}).status_code == 403
    signed = client.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": _login_form(client)},
                         follow_redirects=False)
    assert signed.status_code == 303
    assert client.post("/ui/logout", data={"csrf": "é"}, follow_redirects=False).status_code == 403
    assert client.post("/ui/logout", data={"csrf": "\x00" * 40}, follow_redirects=False).status_code == 403


# -- the client behind proxies: several header lines, IPv4-mapped peers, IPv6 /64s, the scheme ---


def _request(peer: str, headers: list[tuple[bytes, bytes]], proxies: str | None, scheme: str = "http"):
    from types import SimpleNamespace

    from starlette.requests import Request

    from vultus.server.clients import parse_proxies

    app = SimpleNamespace(state=SimpleNamespace(trusted_proxies=parse_proxies(proxies)))
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1234),
                    "scheme": scheme, "server": ("t", 80), "query_string": b"", "app": app})


def test_forwarded_for_on_several_header_lines_is_read_as_one_chain():
    from vultus.server.clients import client_of

    # The client wrote its own line; the proxy added a separate one with the real address.
    request = _request("10.0.0.7", [(b"x-forwarded-for", b"203.0.113.66"), (b"x-forwarded-for", b"198.51.100.9")],
                       "10.0.0.0/8")
    assert client_of(request) == "198.51.100.9"


def test_an_ipv4_mapped_ipv6_peer_matches_an_ipv4_trusted_network():
    from vultus.server.clients import client_address, parse_proxies

    proxies = parse_proxies("10.0.0.0/8")
    assert client_address("::ffff:10.0.0.1", "198.51.100.9", proxies) == "198.51.100.9"
    assert client_address("10.0.0.1", "198.51.100.9, ::ffff:10.0.0.2", proxies) == "198.51.100.9"
    assert client_address("::ffff:203.0.113.5", "198.51.100.9", proxies) == "::ffff:203.0.113.5"


def test_an_ipv6_client_is_counted_by_its_64():
    from vultus.server.clients import address_key

    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("198.51.100.9") == "198.51.100.9"
    assert address_key("::ffff:198.51.100.9") == "198.51.100.9"
    assert address_key("testclient") == "testclient"


def test_sign_in_failures_from_one_ipv6_64_are_counted_together(app_engine):
    app, _, tokens = app_engine
    for number in range(5):
        guesser = TestClient(app, client=(f"2001:db8:5:6::{number + 1:x}", 4000))
        assert guesser.post("/ui/login", data={"token": "wrong", "csrf": _login_form(guesser)}).status_code == 401
    other = TestClient(app, client=("2001:db8:5:6:abcd::99", 4000))
    assert other.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": _login_form(other)}).status_code == 429
    elsewhere = TestClient(app, client=("2001:db8:5:7::1", 4000))
    assert elsewhere.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": _login_form(elsewhere)},
                          follow_redirects=False).status_code == 303


def test_the_public_page_counts_an_ipv6_client_by_its_64(app_engine, monkeypatch):
    app, engine, _ = app_engine
    seen = []

    def submit(**kwargs):
        seen.append(kwargs["client"])
        return {"request_id": 1, "due_at": "2030-01-01T00:00:00Z"}

    monkeypatch.setattr(engine, "submit_public_request", submit)
    photo = ("me.jpg", b"\xff\xd8 not decoded here", "image/jpeg")
    for path in ("/request", "/public/requests"):
        client = TestClient(app, client=("2001:db8:9:9:1:2:3:4", 4000))
        response = client.post(path, data={"kind": "access", "contact": "a@example.org"}, files={"photo": photo})
        assert response.status_code in (200, 202), response.text
    assert seen == ["2001:db8:9:9::/64"] * 2


def test_a_huge_account_name_is_not_kept_whole_by_the_sign_in_limiter(app_engine):
    app, _, _ = app_engine
    client = TestClient(app)
    response = client.post("/ui/login", data={"name": "n" * (512 * 1024), "token": "wrong", "csrf": _login_form(client)})
    assert response.status_code == 401
    keys = app.state.signin_failures._failures
    assert keys and max(len(key) for key in keys) <= 200


def test_cookies_are_secure_behind_a_trusted_tls_proxy_only(app_engine):
    from vultus.server.clients import parse_proxies

    app, _, tokens = app_engine
    app.state.trusted_proxies = parse_proxies("10.0.0.0/8")
    https = {"X-Forwarded-Proto": "https"}
    behind = TestClient(app, client=("10.0.0.7", 4000))
    page = behind.get("/ui/login", headers=https)
    assert "secure" in page.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    # The test client keeps a Secure cookie off http://; the browser sent it over the proxy's https.
    login_cookie = re.search(r"vultus_login=([^;]+)", page.headers["set-cookie"]).group(1)
    behind.cookies.clear()
    signed = behind.post("/ui/login", data={"token": tokens[Role.AUDITOR], "csrf": csrf},
                         headers={**https, "Cookie": f"vultus_login={login_cookie}"}, follow_redirects=False)
    assert signed.status_code == 303
    assert any("vultus_session=" in c and "secure" in c.lower() for c in signed.headers.get_list("set-cookie"))
    # The header from anyone but a trusted proxy is not believed.
    direct = TestClient(app, client=("203.0.113.5", 4000))
    assert "secure" not in direct.get("/ui/login", headers=https).headers["set-cookie"].lower()
    assert "secure" not in behind.get("/ui/login").headers["set-cookie"].lower()


# -- ingest jobs: uploads never left behind, a bounded queue, a runner that survives ------------


def _upload(client: TestClient, headers, photo: Path):
    return client.post("/v1/ingest/uploads", headers=headers, data={"source": "news"},
                       files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))])


def test_an_upload_refused_when_its_job_starts_leaves_no_files(app_engine, faces_root: Path, monkeypatch):
    from vultus.errors import UnknownSourceError

    app, engine, tokens = app_engine
    client = TestClient(app, raise_server_exceptions=False)
    real = engine.store.get_source
    calls = []

    def get_source(name):
        calls.append(name)
        if len(calls) > 1:  # the source goes between the upload's check and its job's start
            raise UnknownSourceError(f"No source {name!r}.")
        return real(name)

    monkeypatch.setattr(engine.store, "get_source", get_source)
    response = _upload(client, _auth(tokens[Role.INVESTIGATOR]), faces_root / "deepface_jack" / "5.jpg")
    assert response.status_code == 404, response.text
    assert not any((engine.data_dir / "uploads").iterdir())


def test_the_ingest_queue_is_bounded(app_engine, faces_root: Path, monkeypatch):
    from vultus.server import jobs

    monkeypatch.setattr(jobs, "MAX_QUEUED", 2)
    app, engine, tokens = app_engine
    headers = _auth(tokens[Role.INVESTIGATOR])
    client = TestClient(app, raise_server_exceptions=False)
    photo = faces_root / "deepface_jack" / "5.jpg"
    with vultus.open(engine.data_dir, workers=1) as other:
        writing = other.deployment.writing()
        writing.__enter__()  # the runner waits on its first job, so later ones stay queued
        try:
            first = _upload(client, headers, photo)
            assert first.status_code == 202
            for _ in range(100):
                if client.get(f"/v1/ingest/{first.json()['id']}", headers=headers).json()["waiting"]:
                    break
                time.sleep(0.05)
            accepted = [_upload(client, headers, photo) for _ in range(2)]
            assert [r.status_code for r in accepted] == [202, 202]
            refused = _upload(client, headers, photo)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "ingest_queue_full"
            assert "later" in refused.json()["error"]["message"]
            assert len(list((engine.data_dir / "uploads").iterdir())) == 3  # the refused upload's folder is gone
        finally:
            writing.__exit__(None, None, None)
    for response in [first, *accepted]:
        assert _wait_for(client, response.json()["id"], headers)["status"] == "done"


def test_a_base_exception_in_one_job_fails_it_and_the_runner_goes_on(app_engine, faces_root: Path, monkeypatch):
    app, engine, tokens = app_engine
    headers = _auth(tokens[Role.INVESTIGATOR])
    client = TestClient(app)
    real = engine.ingest
    calls = []

    class Abort(BaseException):
        pass

    def ingest(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Abort("stop")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "ingest", ingest)
    broken = _upload(client, headers, faces_root / "deepface_jack" / "5.jpg")
    job = _wait_for(client, broken.json()["id"], headers)
    assert job["status"] == "failed" and job["error"]["code"] == "Abort", job
    runner = app.state.jobs._thread
    fine = _upload(client, headers, faces_root / SMALL_PHOTOS[0])
    assert _wait_for(client, fine.json()["id"], headers)["status"] == "done"
    assert app.state.jobs._thread is runner  # the same runner took the next job
    assert not any((engine.data_dir / "uploads").iterdir())


class _RecordingEngine:
    """Stands in for the engine: its ingest reports the priority it ran at, and its child's."""

    @contextlib.contextmanager
    def acting_as(self, actor):
        yield

    def ingest(self, paths, **_):
        child = subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"],
                               capture_output=True, text=True, check=True)
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return types.SimpleNamespace(as_dict=lambda: {"thread": own, "child": int(child.stdout)})


def test_ingest_jobs_run_below_the_priority_of_searches():
    """Searches come first on a busy machine: the job runner and its workers are niced, the server is not."""
    from vultus.server.jobs import JOB_NICENESS, JobRunner

    server = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    runner = JobRunner(_RecordingEngine())  # type: ignore[arg-type]
    job = runner.submit(actor="test", paths=[], source="s", cleanup=None)
    for _ in range(600):
        state = runner.get(job["id"])
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["status"] == "done", state
    expected = min(19, server + JOB_NICENESS)
    assert state["summary"] == {"thread": expected, "child": expected}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == server  # this thread unchanged
