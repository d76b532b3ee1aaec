"""Several probe photos of one person through the API and the web pages, on real faces."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import vultus
from vultus.probes import MAX_PROBES
from vultus.server import create_app
from vultus.store.accounts import Role


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """Obama and Biden ingested, one account per role, and the app."""
    engine = vultus.open(tmp_path_factory.mktemp("probes-api") / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_biden"], source="news", workers=1)
    tokens = {role: engine.add_user(f"{role.value}-p", role=role.value)[1] for role in Role}
    yield TestClient(create_app(engine=engine)), tokens, engine
    engine.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _photos(*paths: Path) -> list:
    return [("photo", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_search_with_two_photos_says_how_many_probe_faces_it_used(server, faces_root: Path):
    client, tokens, engine = server
    one, two = faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_obama" / "2.jpg"
    response = client.post("/v1/search", headers=_auth(tokens[Role.INVESTIGATOR]), files=_photos(one, two),
                           data={"purpose": "verify", "case": "PROBES-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["probe_faces_used"] == 2 and body["fusion"] == "max" and body["unlike_probes"] == []
    assert [p["sha256"] for p in body["probes"]] == [_sha(one), _sha(two)]
    assert [p["name"] for p in body["probes"]] == ["photo 1 (1.jpg)", "photo 2 (2.jpg)"]
    candidates = body["candidates"]
    assert {c["path"].rsplit("/", 1)[-1] for c in candidates} == {"1.jpg", "2.jpg", "3.jpg", "4.jpg"}
    assert all("facerec_obama" in c["path"] for c in candidates)
    for c in candidates:
        assert len(c["probe_similarities"]) == 2 and c["similarity"] == pytest.approx(max(c["probe_similarities"]), abs=1e-3)
    entry = [e for e in engine.audit_entries(action="search") if e.details["case"] == "PROBES-1"][-1]
    assert entry.details["probe_sha256s"] == [_sha(one), _sha(two)] and entry.actor == "investigator-p"
    # One photo still answers as before, its fields the first photo's.
    single = client.post("/v1/search", headers=_auth(tokens[Role.INVESTIGATOR]), files=_photos(one),
                         data={"purpose": "verify", "case": "PROBES-2"}).json()
    assert single["probe_faces_used"] == 1 and single["probe_faces"] == 1 and single["face_used"] == 1


def test_several_probe_errors_are_clear_4xx_and_log_no_search(server, faces_root: Path):
    client, tokens, engine = server
    inv = _auth(tokens[Role.INVESTIGATOR])
    obama = faces_root / "facerec_obama"
    searches = len(engine.audit_entries(action="search"))
    noface = client.post("/v1/search", headers=inv, files=_photos(obama / "1.jpg", faces_root / "_noface" / "017_0.jpg"),
                         data={"purpose": "p", "case": "c"})
    assert noface.status_code == 422 and noface.json()["error"]["code"] == "no_face"
    assert "photo 2 (017_0.jpg)" in noface.json()["error"]["message"]
    many = client.post("/v1/search", headers=inv, files=_photos(*[obama / "1.jpg"] * (MAX_PROBES + 1)),
                       data={"purpose": "p", "case": "c"})
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_photos"
    assert f"at most {MAX_PROBES}" in many.json()["error"]["message"]
    face = client.post("/v1/search", headers=inv, files=_photos(obama / "1.jpg", obama / "2.jpg"),
                       data={"purpose": "p", "case": "c", "face": "1"})
    assert face.status_code == 422 and face.json()["error"]["code"] == "probe_choice"
    twice = client.post("/v1/search", headers=inv, files=_photos(obama / "1.jpg", obama / "1.jpg"),
                        data={"purpose": "p", "case": "c"})
    assert twice.status_code == 422 and "same photo" in twice.json()["error"]["message"]
    assert len(engine.audit_entries(action="search")) == searches


def test_an_erasure_with_photos_of_two_people_is_refused_and_changes_nothing(server, faces_root: Path):
    client, tokens, engine = server
    before = engine.stats()
    response = client.post("/v1/erasure", headers=_auth(tokens[Role.DPO]),
                           files=_photos(faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_biden" / "1.jpg"))
    assert response.status_code == 422 and response.json()["error"]["code"] == "probe_choice"
    assert "photo 2 (1.jpg)" in response.json()["error"]["message"]
    after = engine.stats()
    assert (after.images, after.faces, after.index_vectors) == (before.images, before.faces, before.index_vectors)


def test_an_access_request_with_two_photos_reports_every_matching_photo(server, faces_root: Path):
    client, tokens, _ = server
    report = client.post("/v1/access", headers=_auth(tokens[Role.DPO]),
                         files=_photos(faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_obama" / "3.jpg"))
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["probe_faces"] == 2
    assert {i["original_path"].rsplit("/", 1)[-1] for i in body["images"]} == {"1.jpg", "2.jpg", "3.jpg", "4.jpg"}


def test_the_public_page_takes_several_photos_within_one_upload_limit(server, faces_root: Path):
    _, _, engine = server
    one, two = faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_obama" / "2.jpg"
    # Each photo is under this limit, both together are over it.
    limit = max(one.stat().st_size, two.stat().st_size) + 1000
    small = TestClient(create_app(engine=engine, max_upload=limit))
    public = small.post("/public/requests", data={"kind": "access", "contact": "a@example.org"}, files=_photos(one, two))
    assert public.status_code == 413 and public.json()["error"]["code"] == "upload_too_large"
    token = engine.add_user("investigator-small", role="investigator")[1]
    search = small.post("/v1/search", headers=_auth(token), files=_photos(one, two), data={"purpose": "p", "case": "c"})
    assert search.status_code == 200 and search.json()["probe_faces_used"] == 2


def test_a_public_request_with_two_photos_is_carried_out_with_both(server, faces_root: Path):
    client, tokens, engine = server
    one, two = faces_root / "facerec_obama" / "2.jpg", faces_root / "facerec_obama" / "4.jpg"
    sent = client.post("/public/requests", data={"kind": "access", "contact": "barack@example.org"},
                       files=_photos(one, two))
    assert sent.status_code == 202, sent.text
    request_id = sent.json()["request_id"]
    done = client.post(f"/v1/requests/{request_id}/fulfil", headers=_auth(tokens[Role.DPO])).json()
    assert done["result"]["probe_faces"] == 2 and len(done["result"]["images"]) == 4
    logged = [e for e in engine.audit_entries(action="request.public") if e.details["request_id"] == request_id]
    assert logged[0].details["probe_sha256s"] == [_sha(one), _sha(two)]


def test_the_web_search_page_takes_several_photos(server, faces_root: Path):
    _, tokens, engine = server
    client = TestClient(create_app(engine=engine))
    login = client.get("/ui/login").text
    page = client.post("/ui/login", data={"token": tokens[Role.INVESTIGATOR],
                                          "csrf": re.search(r'name="csrf" value="([^"]+)"', login).group(1)},
                       follow_redirects=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert 'name="photo" type="file" accept="image/*" multiple' in page.text
    assert f"up to {MAX_PROBES} photos of" in page.text and f"up to {MAX_PROBES} photos of" in client.get("/request").text
    obama = faces_root / "facerec_obama"
    results = client.post("/ui/search", data={"purpose": "p", "case": "WEB-P", "csrf": csrf},
                          files=_photos(obama / "1.jpg", obama / "3.jpg"))
    assert results.status_code == 200, results.text
    assert 'data-testid="probe-faces">Searched as one person with 2 probe faces' in results.text
    assert results.text.count('data-testid="result"') == 4 and results.text.count("by probe: ") == 4
    noface = client.post("/ui/search", data={"purpose": "p", "case": "WEB-P", "csrf": csrf},
                         files=_photos(obama / "1.jpg", faces_root / "_noface" / "017_0.jpg"))
    assert noface.status_code == 422 and "photo 2 (017_0.jpg)" in noface.text


def test_the_probe_routes_take_max_probes_photos_and_the_public_page_one_upload_in_all():
    from vultus.server.limits import FORM_OVERHEAD, PROBE_ROUTES, PUBLIC_PHOTO_ROUTES, body_limit

    upload = 20 * 1024 * 1024
    for path in PROBE_ROUTES:
        assert body_limit(path, max_upload=upload, max_batch_photos=50) == MAX_PROBES * (upload + 1024) + FORM_OVERHEAD
    for path in PUBLIC_PHOTO_ROUTES:
        assert body_limit(path, max_upload=upload, max_batch_photos=50) == upload + FORM_OVERHEAD
    assert {"/v1/search", "/v1/erasure", "/ui/search"} <= PROBE_ROUTES and "/request" in PUBLIC_PHOTO_ROUTES
