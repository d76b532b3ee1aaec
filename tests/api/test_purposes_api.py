"""Purposes per source over HTTP: the API's source routes and search ``category``, and the web page's
category select, on the fake models (a coloured square is a person), in process.

The same red person is in a newsroom's photos and in police custody's: a search for journalism
never returns custody's faces and names custody as left out, with what it allows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def site(tmp_path: Path):
    """(client, engine, tokens by role, photos) of a deployment with two sources holding the red person."""
    import vultus
    import vultus.testing as fakes
    from vultus.server import create_app

    engine = vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="setup")
    folder = tmp_path / "photos"
    folder.mkdir()
    made = {"news-red.jpg": (["red"], (640, 480)), "custody-red.jpg": (["red"], (800, 600)),
            "custody-blue.jpg": (["blue"], (640, 480))}
    for name, (squares, size) in made.items():
        (folder / name).write_bytes(fakes.square_photo(squares, size=size))
    tokens = {role: engine.add_user(f"{role}-1", role=role)[1] for role in ("admin", "investigator", "auditor")}
    client = TestClient(create_app(engine=engine))
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.post("/v1/sources", json={"name": "news", "basis": "legitimate-interests", "purpose": "newsroom",
                                            "retention": "30d", "purposes": ["journalism", "archive"]},
                       headers=auth).status_code == 201
    custody = client.post("/v1/sources", json={"name": "custody", "basis": "legal-obligation",
                                               "purpose": "police custody photos", "retention": "30d"}, headers=auth)
    assert custody.status_code == 201 and custody.json()["purposes"] == ["investigation"]  # the closest category
    engine.ingest([folder / "news-red.jpg"], source="news", workers=1)
    engine.ingest([folder / "custody-red.jpg", folder / "custody-blue.jpg"], source="custody", workers=1)
    probe = fakes.square_photo(["red"], size=(500, 400))
    yield client, engine, tokens, probe
    engine.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _search(client: TestClient, token: str, probe: bytes, **form: str):
    return client.post("/v1/search", files={"photo": ("probe.jpg", probe, "image/jpeg")},
                       data={"purpose": "verify a caption", "case": "API-1", **form}, headers=_auth(token))


def test_sources_list_their_categories_and_an_admin_changes_them_audited(site):
    client, engine, tokens, _ = site
    listed = client.get("/v1/sources", headers=_auth(tokens["auditor"])).json()
    assert {s["name"]: s["purposes"] for s in listed} == {"custody": ["investigation"], "news": ["journalism", "archive"]}
    changed = client.patch("/v1/sources/custody", json={"purposes": ["investigation", "missing-persons"]},
                           headers=_auth(tokens["admin"]))
    assert changed.status_code == 200 and changed.json()["purposes"] == ["investigation", "missing-persons"]
    [entry] = engine.audit_entries(action="source.set")
    assert entry.actor == "admin-1" and entry.details["before"] == {"purposes": ["investigation"]}
    assert client.patch("/v1/sources/custody", json={"purposes": ["archive"]},
                        headers=_auth(tokens["investigator"])).status_code == 403


def test_bad_categories_for_sources_are_4xx_and_change_nothing(site):
    client, engine, tokens, _ = site
    entries = engine.store.audit_count()
    bad = client.patch("/v1/sources/custody", json={"purposes": ["gossip"]}, headers=_auth(tokens["admin"]))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_category"
    assert "'gossip'" in bad.json()["error"]["message"] and "event-delivery" in bad.json()["error"]["message"]
    assert client.patch("/v1/sources/custody", json={}, headers=_auth(tokens["admin"])).status_code == 400
    assert client.patch("/v1/sources/nosuch", json={"purposes": ["archive"]},
                        headers=_auth(tokens["admin"])).status_code == 404
    new = client.post("/v1/sources", json={"name": "x", "basis": "consent", "purpose": "p", "retention": "1d",
                                           "purposes": ["journalism", "spying"]}, headers=_auth(tokens["admin"]))
    assert new.status_code == 400 and "'spying'" in new.json()["error"]["message"]
    assert client.post("/v1/sources", json={"name": "y", "basis": "consent", "purpose": "p", "retention": "1d",
                                            "purposes": []}, headers=_auth(tokens["admin"])).status_code == 400
    assert [s.name for s in engine.sources()] == ["custody", "news"]
    assert engine.store.get_source("custody").purposes == ("investigation",)
    assert engine.store.audit_count() == entries


def _signed_in(client: TestClient, token: str) -> str:
    login = client.get("/ui/login").text
    page = client.post("/ui/login", data={"token": token, "csrf": re.search(r'name="csrf" value="([^"]+)"',
                                                                            login).group(1)}, follow_redirects=True)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_the_web_sources_page_shows_the_categories_and_registers_with_them(site):
    client, engine, tokens, _ = site
    csrf = _signed_in(client, tokens["admin"])
    page = client.get("/ui/sources").text
    assert "<th>Searchable for</th>" in page and "<td>journalism, archive</td>" in page
    assert page.count('name="purposes"') == 5
    done = client.post("/ui/sources", data={"name": "shoots", "basis": "consent", "purpose": "p", "retention": "1d",
                                            "purposes": ["event-delivery", "archive"], "csrf": csrf})
    assert done.status_code == 200 and "<td>archive, event-delivery</td>" in done.text
    guessed = client.post("/ui/sources", data={"name": "weddings", "basis": "consent", "purpose": "wedding photos",
                                               "retention": "1d", "csrf": csrf})
    assert "<td>event-delivery</td>" in guessed.text
    bad = client.post("/ui/sources", data={"name": "z", "basis": "consent", "purpose": "p", "retention": "1d",
                                           "purposes": ["gossip"], "csrf": csrf})
    assert bad.status_code == 400 and "&#39;gossip&#39;" in bad.text
    assert "z" not in [s.name for s in engine.sources()]


def test_a_search_for_journalism_never_returns_custody_and_names_it_left_out(site):
    client, engine, tokens, probe = site
    press = _search(client, tokens["investigator"], probe, category="journalism")
    assert press.status_code == 200, press.text
    body = press.json()
    assert [c["source"] for c in body["candidates"]] == ["news"]
    assert body["category"] == "journalism" and body["sources_searched"] == ["news"]
    assert body["left_out"] == [{"source": "custody", "allows": ["investigation"],
                                 "reason": "custody (allows investigation; not journalism)"}]
    police = _search(client, tokens["investigator"], probe, category="investigation").json()
    assert [c["source"] for c in police["candidates"]] == ["custody"]
    default = _search(client, tokens["investigator"], probe).json()  # no category: the default, archive
    assert default["category"] == "archive" and [c["source"] for c in default["candidates"]] == ["news"]
    entry = engine.audit_entries(action="search")[0]
    assert entry.actor == "investigator-1" and entry.details["category"] == "journalism"
    assert entry.details["left_out"] == [{"source": "custody", "allows": ["investigation"]}]


def test_no_source_for_the_category_is_an_empty_result_and_an_unknown_one_is_400_unlogged(site):
    client, engine, tokens, probe = site
    empty = _search(client, tokens["investigator"], probe, category="event-delivery")
    assert empty.status_code == 200
    assert empty.json()["candidates"] == [] and empty.json()["sources_searched"] == []
    assert sorted(e["source"] for e in empty.json()["left_out"]) == ["custody", "news"]
    searches = len(engine.audit_entries(action="search"))
    bad = _search(client, tokens["investigator"], probe, category="surveillance")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_category"
    assert "journalism, archive, investigation" in bad.json()["error"]["message"]
    assert len(engine.audit_entries(action="search")) == searches


def test_the_web_search_has_a_category_select_and_names_the_sources_left_out(site):
    client, engine, tokens, probe = site
    csrf = _signed_in(client, tokens["investigator"])
    form = client.get("/ui/search").text
    assert '<select id="category" name="category">' in form
    assert "<option selected>archive</option>" in form and "<option>journalism</option>" in form
    page = client.post("/ui/search", data={"purpose": "caption", "case": "W-1", "category": "journalism",
                                            "csrf": csrf}, files={"photo": ("p.jpg", probe, "image/jpeg")})
    assert page.status_code == 200 and page.text.count('data-testid="result"') == 1
    assert "Left out: custody (allows investigation; not journalism)." in page.text
    assert "<option selected>journalism</option>" in page.text  # the category asked stays chosen
    searches = len(engine.audit_entries(action="search"))
    bad = client.post("/ui/search", data={"purpose": "caption", "case": "W-2", "category": "surveillance",
                                           "csrf": csrf}, files={"photo": ("p.jpg", probe, "image/jpeg")})
    assert bad.status_code == 422 and "&#39;surveillance&#39; is not one of" in bad.text
    assert 'data-testid="result"' not in bad.text and len(engine.audit_entries(action="search")) == searches
