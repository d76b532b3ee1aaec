"""The HTTP API in process (httpx over ASGI): roles on every route, errors, parity with the CLI."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import vultus
from vultus.cli import cli
from vultus.server import create_app
from vultus.store.accounts import Role


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """A deployment with Obama and Biden ingested, one account per role, and its app."""
    data = tmp_path_factory.mktemp("api") / "data"
    engine = vultus.open(data)
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_biden"], source="news", workers=1)
    tokens = {role: engine.add_user(f"{role.value}-1", role=role.value)[1] for role in Role}
    client = TestClient(create_app(engine=engine))
    yield client, tokens, data, engine
    engine.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _photo(path: Path, kind: str = "image/jpeg"):
    return {"photo": (path.name, path.read_bytes(), kind)}


def _routes(client: TestClient):
    from vultus.server.routes import router

    for route in router.routes:
        path = route.path
        assert path.startswith("/v1")
        roles = next(d.call.roles for d in route.dependant.dependencies if hasattr(d.call, "roles"))
        for method in route.methods:
            yield method, (path.replace("{job_id}", "x").replace("{suppression_id}", "1").replace("{name}", "x")
                           .replace("{person_id}", "1")), roles


def test_every_route_refuses_missing_and_wrong_tokens_and_wrong_roles(server):
    client, tokens, _, _ = server
    routes = list(_routes(client))
    assert len(routes) >= 20
    for method, path, roles in routes:
        assert client.request(method, path).status_code == 401, (method, path)
        wrong = client.request(method, path, headers=_auth("vx_not-a-token"))
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_token"
        for role in set(Role) - set(roles):
            refused = client.request(method, path, headers=_auth(tokens[role]))
            assert refused.status_code == 403, (method, path, role)
            assert set(refused.json()["error"]) == {"code", "message"}
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200


def test_an_auditor_cannot_search_and_an_investigator_cannot_read_the_log(server, faces_root: Path):
    client, tokens, _, _ = server
    probe = faces_root / "facerec_obama" / "1.jpg"
    assert client.post("/v1/search", headers=_auth(tokens[Role.AUDITOR]), files=_photo(probe)).status_code == 403
    assert client.get("/v1/audit", headers=_auth(tokens[Role.INVESTIGATOR])).status_code == 403


def test_search_by_upload_returns_what_the_cli_returns_and_is_logged_as_the_account(server, faces_root: Path):
    client, tokens, data, engine = server
    probe = faces_root / "facerec_obama" / "1.jpg"
    response = client.post("/v1/search", headers=_auth(tokens[Role.INVESTIGATOR]), files=_photo(probe),
                           data={"purpose": "verify", "case": "API-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "never identifications" in body["note"]
    cli_out = CliRunner().invoke(cli, ["--data", str(data), "search", str(probe), "--purpose", "verify", "--case", "CLI-1", "--json"])
    expected = [(c["face_id"], c["similarity"], c["path"]) for c in json.loads(cli_out.stdout)]
    assert [(c["face_id"], c["similarity"], c["path"]) for c in body["candidates"]] == expected
    assert len(expected) == 4
    entry = [e for e in engine.audit_entries(action="search") if e.details["case"] == "API-1"][-1]
    assert entry.actor == "investigator-1"


@pytest.mark.parametrize(
    "name,content,kind,status,code",
    [
        ("empty.jpg", b"", "image/jpeg", 422, "empty_file"),
        ("truncated.jpg", None, "image/jpeg", 422, "truncated_image"),
        ("noise.jpg", os.urandom(50 * 1024 * 1024), "image/jpeg", 413, "upload_too_large"),
        ("notes.txt", b"hello", "text/plain", 415, "unsupported_media_type"),
        ("random.png", os.urandom(4096), "image/png", 422, "not_an_image"),
    ],
)
def test_malformed_uploads_get_a_4xx_and_change_nothing(server, faces_root: Path, name, content, kind, status, code):
    client, tokens, _, engine = server
    if content is None:
        content = (faces_root / "_invalid" / "truncated.jpg").read_bytes()
    before = engine.stats()
    for path, token, extra in (
        ("/v1/search", tokens[Role.INVESTIGATOR], {"purpose": "p", "case": "c"}),
        ("/v1/erasure", tokens[Role.DPO], {}),
    ):
        response = client.post(path, headers=_auth(token), files={"photo": (name, content, kind)}, data=extra)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    ingest = client.post("/v1/ingest/uploads", headers=_auth(tokens[Role.INVESTIGATOR]),
                         files=[("photos", (name, content, kind))], data={"source": "news"})
    assert ingest.status_code == status
    after = engine.stats()
    assert (after.images, after.faces, after.index_vectors) == (before.images, before.faces, before.index_vectors)


def test_user_errors_are_clear_4xx(server, faces_root: Path):
    client, tokens, _, _ = server
    inv, dpo, admin = tokens[Role.INVESTIGATOR], tokens[Role.DPO], tokens[Role.ADMIN]
    noface = client.post("/v1/search", headers=_auth(inv), files=_photo(faces_root / "_noface" / "017_0.jpg"),
                         data={"purpose": "p", "case": "c"})
    assert noface.status_code == 422 and noface.json()["error"]["code"] == "no_face"
    missing = client.post("/v1/search", headers=_auth(inv), files=_photo(faces_root / "facerec_biden" / "1.jpg"))
    assert missing.status_code == 400 and "--purpose" in missing.json()["error"]["message"]
    no_photo = client.post("/v1/search", headers=_auth(inv), data={"purpose": "p", "case": "c"})
    assert no_photo.status_code == 422 and no_photo.json()["error"]["code"] == "invalid_request"
    assert client.get("/v1/ingest/nope", headers=_auth(inv)).status_code == 404
    assert client.delete("/v1/suppressions/999", headers=_auth(dpo)).status_code == 404
    assert client.delete("/v1/users/nobody", headers=_auth(admin)).status_code == 404
    bad_source = client.post("/v1/sources", headers=_auth(admin), json={"name": "x", "basis": "because", "purpose": "p", "retention": "1d"})
    assert bad_source.status_code == 400 and "legitimate-interests" in bad_source.json()["error"]["message"]
    unknown = client.post("/v1/ingest/uploads", headers=_auth(inv), data={"source": "nope"},
                          files=[("photos", ("a.jpg", (faces_root / "facerec_biden" / "1.jpg").read_bytes(), "image/jpeg"))])
    assert unknown.status_code == 404
    assert client.post("/v1/ingest/paths", headers=_auth(inv), json={"source": "news", "paths": ["/etc"]}).status_code == 403
    assert client.get("/v1/nowhere", headers=_auth(inv)).json()["error"]["code"] == "not_found"


def test_ingest_by_upload_then_dpo_erasure_and_auditor_checks(server, faces_root: Path):
    client, tokens, _, engine = server
    inv, dpo, auditor = tokens[Role.INVESTIGATOR], tokens[Role.DPO], tokens[Role.AUDITOR]
    photos = sorted((faces_root / "facerec_kit_harington").iterdir())
    job = client.post("/v1/ingest/uploads", headers=_auth(inv), data={"source": "news"},
                      files=[("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in photos])
    assert job.status_code == 202, job.text
    for _ in range(600):
        state = client.get(f"/v1/ingest/{job.json()['id']}", headers=_auth(inv)).json()
        if state["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert state["status"] == "done" and state["summary"]["images"] == 3, state
    found = client.post("/v1/search", headers=_auth(inv), files=_photo(photos[0]), data={"purpose": "p", "case": "c"}).json()
    assert {c["path"] for c in found["candidates"]} == {f"upload:{n:05d}-{p.name}" for n, p in enumerate(photos)}
    assert not (engine.data_dir / "uploads").exists() or not any((engine.data_dir / "uploads").iterdir())
    report = client.post("/v1/access", headers=_auth(dpo), files=_photo(photos[1])).json()
    assert len(report["images"]) == 3
    receipt = client.post("/v1/erasure", headers=_auth(dpo), files=_photo(photos[2])).json()
    assert len(receipt["removed_images"]) == 3
    assert client.post("/v1/receipts/verify", headers=_auth(auditor), json=receipt).json()["valid"] is True
    receipt["faces_removed"] = 0
    forged = client.post("/v1/receipts/verify", headers=_auth(auditor), json=receipt)
    assert forged.status_code == 422
    assert client.get("/v1/audit/verify", headers=_auth(auditor)).json()["ok"] is True
    actors = {e["actor"] for e in client.get("/v1/audit", headers=_auth(auditor)).json()}
    assert {"investigator-1", "dpo-1"} <= actors
    kinds = [r["kind"] for r in client.get("/v1/requests", headers=_auth(auditor)).json()]
    assert kinds[-2:] == ["access", "erasure"]


def test_a_public_request_reaches_the_dpo_who_carries_it_out(server, faces_root: Path):
    client, tokens, _, engine = server
    dpo, auditor = tokens[Role.DPO], tokens[Role.AUDITOR]
    photo = faces_root / "facerec_biden" / "2.jpg"
    sent = client.post("/public/requests", data={"kind": "erasure", "contact": "joe@example.org"}, files=_photo(photo))
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert "candidates" not in body and "not kept" in body["message"]
    request_id = body["request_id"]
    details = client.get(f"/v1/requests/{request_id}", headers=_auth(dpo)).json()
    assert details["origin"] == "public" and details["contact"] == "joe@example.org" and details["completed_at"] is None
    done = client.post(f"/v1/requests/{request_id}/fulfil", headers=_auth(dpo)).json()
    assert done["contact"] == "joe@example.org" and len(done["result"]["removed_images"]) == 2
    assert done["result"]["request_id"] == request_id
    assert client.post(f"/v1/requests/{request_id}/fulfil", headers=_auth(dpo)).status_code == 404
    assert client.get(f"/v1/requests/{request_id}", headers=_auth(dpo)).json()["completed_at"]
    assert client.post("/v1/search", headers=_auth(tokens[Role.INVESTIGATOR]), files=_photo(faces_root / "facerec_biden" / "1.jpg"),
                       data={"purpose": "p", "case": "c"}).json()["candidates"] == []
    actors = [e["actor"] for e in client.get("/v1/audit?action=request.public", headers=_auth(auditor)).json()]
    assert actors == ["public"]
    # The photo is nowhere in the data directory; the template was erased with the request.
    needle = photo.read_bytes()[800:1312]
    assert not [p for p in engine.data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_public_page_refuses_bad_requests_and_limits_each_address(server, faces_root: Path):
    client, _, _, _ = server
    photo = _photo(faces_root / "deepface_jack" / "1.jpg")
    assert client.post("/public/requests", data={"kind": "search", "contact": "a@b.org"}, files=photo).status_code == 400
    assert client.post("/public/requests", data={"kind": "access", "contact": "nobody"}, files=photo).status_code == 400
    noface = client.post("/public/requests", data={"kind": "access", "contact": "a@b.org"},
                         files=_photo(faces_root / "_noface" / "017_0.jpg"))
    assert noface.status_code == 422
    codes = [client.post("/public/requests", data={"kind": "access", "contact": "c@d.org"}, files=photo).status_code
             for _ in range(4)]
    assert codes[:1] == [202] and codes[-1] == 429


def _login_csrf(client: TestClient) -> str:
    """The CSRF token of a fresh sign-in form (its cookie is kept by ``client``)."""
    import re

    return re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text).group(1)


def _sign_in(client: TestClient, token: str) -> str:
    """Sign in through the page; return the session's CSRF token from a form."""
    response = client.post("/ui/login", data={"token": token, "csrf": _login_csrf(client)}, follow_redirects=True)
    assert response.status_code == 200, response.text
    import re

    return re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)


def test_web_pages_sign_in_search_and_carry_out_a_public_request(server, faces_root: Path):
    _, tokens, _, _ = server
    # A client of its own: the public page's per-client limit is spent by another test.
    client = TestClient(server[0].app, client=("192.0.2.7", 50000))
    assert client.get("/ui/search", follow_redirects=False).headers["location"] == "/ui/login"
    assert client.post("/ui/login", data={"token": "wrong", "csrf": _login_csrf(client)}).status_code == 401
    csrf = _sign_in(client, tokens[Role.INVESTIGATOR])
    cookie = client.cookies.jar
    assert any(c.name == "vultus_session" and c.has_nonstandard_attr("HttpOnly") for c in cookie)
    probe = faces_root / "facerec_obama" / "2.jpg"
    forged = client.post("/ui/search", data={"purpose": "p", "case": "c", "csrf": "nope"}, files=_photo(probe))
    assert forged.status_code == 403
    page = client.post("/ui/search", data={"purpose": "verify", "case": "WEB-1", "csrf": csrf}, files=_photo(probe))
    assert page.status_code == 200 and page.text.count('data-testid="result"') == 4
    assert "never identifications" in page.text
    crop_id = int(page.text.split('src="/ui/crops/')[1].split('"')[0])
    crop = client.get(f"/ui/crops/{crop_id}")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    # Only the crops of faces that this session's searches returned: no paging through the gallery.
    engine = server[3]
    engine.ingest([faces_root / "deepface_sundar" / "2.jpg"], source="news", workers=1)
    other = int(max(engine.store.searchable_face_ids()))
    assert client.get(f"/ui/crops/{other}").status_code == 404
    bad = client.post("/ui/search", data={"purpose": "p", "case": "c", "csrf": csrf},
                      files=_photo(faces_root / "_noface" / "017_0.jpg"))
    assert bad.status_code == 422 and "no face" in bad.text
    assert client.get("/ui/audit").status_code == 403
    client.cookies.clear()
    # A person asks for erasure on the public page, which shows no result.
    sent = client.post("/request", data={"kind": "erasure", "contact": "kit@example.org"},
                       files=_photo(faces_root / "facerec_kit_harington" / "1.jpg"))
    assert sent.status_code == 200 and 'data-testid="confirmation"' in sent.text and "similarity" not in sent.text
    csrf = _sign_in(client, tokens[Role.DPO])
    queue = client.get("/ui/requests").text
    request_id = int(queue.split('action="/ui/requests/')[1].split("/")[0])
    done = client.post(f"/ui/requests/{request_id}/fulfil", data={"csrf": csrf})
    assert done.status_code == 200 and "Download the receipt" in done.text and "kit@example.org" in done.text
    assert "carried out" in done.text


def test_web_sign_in_with_a_name_and_password(server):
    client, _, data, engine = server
    engine.add_user("pat", role="auditor")
    result = CliRunner().invoke(cli, ["--data", str(data), "user", "password", "pat", "--password", "correct horse battery"])
    assert result.exit_code == 0, result.output
    short = CliRunner().invoke(cli, ["--data", str(data), "user", "password", "pat", "--password", "short"])
    assert short.exit_code == 1 and "12 characters" in short.output
    web = TestClient(client.app, client=("192.0.2.8", 50000))
    assert web.post("/ui/login", data={"name": "pat", "token": "wrong password!", "csrf": _login_csrf(web)}).status_code == 401
    page = web.post("/ui/login", data={"name": "pat", "token": "correct horse battery", "csrf": _login_csrf(web)},
                    follow_redirects=True)
    assert page.status_code == 200 and "Audit log" in page.text and "user.password" in page.text
    verified = web.get("/ui/audit?verify=true")
    assert "The log verifies" in verified.text


def test_an_admin_registers_a_source_on_the_web_page(server):
    client, tokens, _, engine = server
    web = TestClient(client.app, client=("192.0.2.9", 50000))
    csrf = _sign_in(web, tokens[Role.ADMIN])
    bad = web.post("/ui/sources", data={"name": "x", "basis": "consent", "purpose": "p", "retention": "9y", "csrf": csrf})
    assert bad.status_code == 400 and "3 years" in bad.text
    done = web.post("/ui/sources", data={"name": "events", "basis": "consent", "purpose": "event photos",
                                         "retention": "90d", "consent_ref": "forms", "csrf": csrf}, follow_redirects=True)
    assert done.status_code == 200 and "event photos" in done.text
    assert [e for e in engine.audit_entries(action="source.add") if e.details["name"] == "events"][0].actor == "admin-1"


def test_web_ingest_shows_progress_and_the_dpo_discloses_an_access_report(server, faces_root: Path):
    client, tokens, _, engine = server
    web = TestClient(client.app, client=("192.0.2.10", 50000))
    csrf = _sign_in(web, tokens[Role.INVESTIGATOR])
    photos = sorted((faces_root / "deepface_jeff").iterdir())
    page = web.post("/ui/ingest", data={"source": "news", "csrf": csrf},
                    files=[("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in photos])
    assert page.status_code == 200 and "<progress" in page.text
    job_id = page.text.split("/ui/ingest/")[1].split(".json")[0]
    for _ in range(600):
        job = web.get(f"/ui/ingest/{job_id}.json").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["status"] == "done" and job["done"] == job["total"] == 2 and job["faces"] == 2
    person = TestClient(client.app, client=("192.0.2.11", 50000))
    sent = person.post("/request", data={"kind": "access", "contact": "jeff@example.org"}, files=_photo(photos[0]))
    assert sent.status_code == 200
    dpo = TestClient(client.app, client=("192.0.2.12", 50000))
    csrf = _sign_in(dpo, tokens[Role.DPO])
    queue = dpo.get("/ui/requests").text
    assert "Disclose (access report)" in queue
    request_id = int(queue.split('action="/ui/requests/')[1].split("/")[0])
    done = dpo.post(f"/ui/requests/{request_id}/fulfil", data={"csrf": csrf})
    assert "Download the report" in done.text and "jeff@example.org" in done.text
    report = base64.b64decode(done.text.split("data:text/html;base64,")[1].split('"')[0]).decode()
    assert report.count("data:image/jpeg;base64,") == 2 and "upload:" in report


def test_a_video_is_refused_as_a_probe_and_ingested_as_appearances_from_an_upload(tmp_path: Path, data_root: Path):
    clip = data_root / "video" / "short_hamilton_clip.mp4"
    engine = vultus.open(tmp_path / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    token = engine.add_user("inv", role="investigator")[1]
    client = TestClient(create_app(engine=engine))
    try:
        probe = client.post("/v1/search", headers=_auth(token), files={"photo": (clip.name, clip.read_bytes(), "video/mp4")},
                            data={"purpose": "p", "case": "c"})
        assert 400 <= probe.status_code < 500, probe.text
        assert "photo" in probe.json()["error"]["message"]
        upload = client.post("/v1/ingest/uploads", headers=_auth(token), data={"source": "news"},
                             files=[("photos", (clip.name, clip.read_bytes(), "video/mp4"))])
        assert upload.status_code in (200, 202), upload.text
        job = upload.json()
        for _ in range(600):
            state = client.get(f"/v1/ingest/{job['id']}", headers=_auth(token)).json()
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert state["status"] == "done", state
        assert state["summary"]["videos"] == 1 and state["summary"]["appearances"] > 1
        faces = engine.store.hydrate(engine.store.searchable_face_ids().tolist()).values()
        [path] = {f.original_path for f in faces}  # recorded as an upload, not its temporary file
        assert path.startswith("upload:") and path.endswith(clip.name)
    finally:
        engine.close()
