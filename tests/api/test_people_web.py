"""The web People page in process, on the fake models: covers and counts, corrections by form (post,
redirect, get), CSRF, roles, and a clear 4xx on the page for every bad input, which changes nothing.

A coloured square is a person (:mod:`vultus.testing`), so these need neither dlib nor the shared photos.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vultus.store.accounts import Role

HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


@pytest.fixture
def server(tmp_path: Path):
    """Source 'news' groups its faces (3 red, 2 blue, 1 green photos: people red and blue, green
    unassigned), 'wire' too (2 yellow: one person), 'plain' does not; one account per role; the app."""
    import vultus
    from vultus.server import create_app
    from vultus.testing import Square, square_photo

    engine = vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="setup")
    for source, colours in {"news": ["red", "red", "red", "blue", "blue", "green"], "wire": ["yellow", "yellow"],
                            "plain": ["red"]}.items():
        folder = tmp_path / source
        folder.mkdir()
        for n, colour in enumerate(colours):
            (folder / f"{n}-{colour}.jpg").write_bytes(square_photo([Square(colour, 20 + 9 * n, 40)]))
        engine.add_source(source, basis="legitimate-interests", purpose="archive", retention="365d",
                          clustering=source != "plain")
        engine.ingest([folder], source=source, workers=1)
        if source != "plain":
            engine.people.cluster(source)
    tokens = {role: engine.add_user(f"{role.value}-1", role=role.value)[1] for role in Role}
    yield create_app(engine=engine), tokens, engine
    engine.close()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _signed_in(app, token: str) -> tuple[TestClient, str]:
    """A client signed in with ``token``, and the session's CSRF token."""
    client = TestClient(app)
    page = client.post("/ui/login", data={"token": token, "csrf": _csrf(client.get("/ui/login").text)},
                       follow_redirects=True)
    assert page.status_code == 200, page.text
    return client, _csrf(page.text)


def _people(engine) -> dict[str, dict]:
    """The people of every source, keyed by the colour of their photos ('mixed' for several)."""
    found = {}
    for person in engine.people.list():
        colours = {f["path"].rsplit("-", 1)[-1].removesuffix(".jpg") for f in person["faces"]}
        found[colours.pop() if len(colours) == 1 else "mixed"] = person
    return found


def _state(engine) -> list[tuple]:
    """What a refused form must leave as it was: each person's id, name and faces, and the forgotten faces."""
    return sorted((p["id"], p["source"], p["name"], tuple(sorted(f["face_id"] for f in p["faces"])))
                  for p in engine.people.list())


def _cards(html: str) -> dict[int, dict]:
    """The person cards of a list page: id -> cover crop URL, count and name shown."""
    cards = {}
    for match in re.finditer(r'<div class="person" data-testid="person" data-person="(\d+)">(.*?)\n</div>', html, re.S):
        body = match.group(2)
        cards[int(match.group(1))] = {
            "cover": re.search(r'src="(/ui/crops/\d+)"', body).group(1),
            "count": int(re.search(r'data-testid="count">(\d+) face', body).group(1)),
            "name": re.sub(r"<[^>]+>", "", re.search(r'data-testid="name">(.*?)</a>', body, re.S).group(1)).strip(),
        }
    return cards


def _message(html: str, kind: str = "error") -> str:
    found = re.search(rf'<p class="{kind}" role="\w+"[^>]*>(.*?)</p>', html, re.S)
    return found.group(1) if found else ""


class _Inline(HTMLParser):
    """Inline scripts and styles on a page (there must be none)."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if (tag == "script" and not named.get("src")) or tag == "style" or "style" in named or \
                any(k.startswith("on") for k in named):
            self.inline.append(tag)


def test_the_list_shows_each_person_as_a_cover_crop_with_its_count_and_serves_those_crops(server):
    app, tokens, engine = server
    client, _ = _signed_in(app, tokens[Role.INVESTIGATOR])
    people = _people(engine)
    page = client.get("/ui/people")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    cards = _cards(page.text)
    assert {pid: card["count"] for pid, card in cards.items()} == {
        people[c]["id"]: people[c]["count"] for c in ("red", "blue", "yellow")}
    assert cards[people["red"]["id"]]["count"] == 3 and cards[people["red"]["id"]]["name"] == f"Person {people['red']['id']}"
    for colour in ("red", "blue", "yellow"):
        card = cards[people[colour]["id"]]
        assert card["cover"] == f"/ui/crops/{people[colour]['cover']['face_id']}"
        crop = client.get(card["cover"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg" and crop.content[:2] == b"\xff\xd8"
    # Only what a page showed: another face of red (not its cover) waits for red's own page.
    other = next(f["face_id"] for f in people["red"]["faces"] if f["face_id"] != people["red"]["cover"]["face_id"])
    assert client.get(f"/ui/crops/{other}").status_code == 404
    assert client.get(f"/ui/people/{people['red']['id']}").status_code == 200
    assert client.get(f"/ui/crops/{other}").status_code == 200
    # One "Run clustering" button per source that groups its faces, and none for 'plain'.
    assert re.findall(r"Run clustering of (\w+)", page.text) == ["news", "wire"]
    assert '<a href="/ui/people">People</a>' in page.text
    only_wire = client.get("/ui/people?source=wire")
    assert list(_cards(only_wire.text)) == [people["yellow"]["id"]] and 'data-source="news"' not in only_wire.text
    assert [e.actor for e in engine.audit_entries(action="people.list")][-2:] == ["investigator-1"] * 2
    assert [e.details["source"] for e in engine.audit_entries(action="people.list")][-2:] == [None, "wire"]
    assert engine.audit_entries(action="people.show")[-1].actor == "investigator-1"


def test_a_persons_page_shows_its_faces_as_crops_to_tick(server):
    app, tokens, engine = server
    client, _ = _signed_in(app, tokens[Role.INVESTIGATOR])
    red = _people(engine)["red"]
    page = client.get(f"/ui/people/{red['id']}")
    assert page.status_code == 200
    ticks = [int(v) for v in re.findall(r'<input type="checkbox" name="faces" value="(\d+)"', page.text)]
    assert ticks == [f["face_id"] for f in red["faces"]]
    for face_id in ticks:
        assert f'src="/ui/crops/{face_id}"' in page.text and client.get(f"/ui/crops/{face_id}").status_code == 200
    assert f'action="/ui/people/{red["id"]}/name"' in page.text and 'name="confirm" value="yes" required' in page.text


def test_names_and_paths_from_the_gallery_come_out_escaped_and_no_page_has_inline_script_or_style(server):
    app, tokens, engine = server
    red = _people(engine)["red"]
    engine.people.name(red["id"], HOSTILE)
    client, _ = _signed_in(app, tokens[Role.INVESTIGATOR])
    for path in ("/ui/people", f"/ui/people/{red['id']}", "/ui/people?source=nope"):
        page = client.get(path)
        assert HOSTILE not in page.text, path
        inline = _Inline()
        inline.feed(page.text)
        assert inline.inline == [], (path, inline.inline)
        assert '<link rel="stylesheet" href="/ui/static/vultus.css">' in page.text
    assert ESCAPED in client.get("/ui/people").text and f"<h1>{ESCAPED}</h1>" in client.get(f"/ui/people/{red['id']}").text


def test_rename_merge_split_and_forget_by_form_redirect_with_a_message_once_and_survive_a_run(server):
    app, tokens, engine = server
    client, csrf = _signed_in(app, tokens[Role.INVESTIGATOR])
    people = _people(engine)
    red, blue = people["red"], people["blue"]

    named = client.post(f"/ui/people/{red['id']}/name", data={"name": "  Ann Lee ", "csrf": csrf}, follow_redirects=False)
    assert named.status_code == 303 and named.headers["location"] == f"/ui/people/{red['id']}"
    shown = client.get(named.headers["location"])
    assert "Named this person Ann Lee." in _message(shown.text, "flash") and "<h1>Ann Lee</h1>" in shown.text
    assert _message(client.get(named.headers["location"]).text, "flash") == ""  # shown once

    merged = client.post("/ui/people/merge", data={"ids": [str(red["id"]), str(blue["id"])], "csrf": csrf},
                         follow_redirects=False)
    assert merged.status_code == 303 and merged.headers["location"] == f"/ui/people/{red['id']}"
    assert "into Ann Lee: 5 face(s) now" in _message(client.get(merged.headers["location"]).text, "flash")
    assert _people(engine)["mixed"]["count"] == 5 and "blue" not in _people(engine)

    leaving = [f["face_id"] for f in blue["faces"]]
    split = client.post(f"/ui/people/{red['id']}/split", data={"faces": [str(f) for f in leaving], "csrf": csrf},
                        follow_redirects=False)
    assert split.status_code == 303
    page = client.get(split.headers["location"])
    new = _people(engine)["blue"]
    assert "Split 2 face(s) off into a new person" in _message(page.text, "flash")
    assert f'<a href="/ui/people/{new["id"]}">Open Person {new["id"]}</a>' in page.text
    assert sorted(f["face_id"] for f in new["faces"]) == sorted(leaving)

    refused = client.post(f"/ui/people/{new['id']}/forget", data={"csrf": csrf})
    assert refused.status_code == 400 and "Tick" in _message(refused.text) and _people(engine)["blue"]["id"] == new["id"]
    forgot = client.post(f"/ui/people/{new['id']}/forget", data={"confirm": "yes", "csrf": csrf}, follow_redirects=False)
    assert forgot.status_code == 303 and forgot.headers["location"] == "/ui/people?source=news"
    assert f"Person {new['id']} forgotten" in _message(client.get(forgot.headers["location"]).text, "flash")

    run = client.post("/ui/people/cluster", data={"source": "news", "view": "news", "csrf": csrf},
                      follow_redirects=False)
    assert run.status_code == 303 and run.headers["location"] == "/ui/people?source=news"
    assert "Clustering of news done: 4 face(s)" in _message(client.get(run.headers["location"]).text, "flash")
    after = _people(engine)
    assert after["red"]["id"] == red["id"] and after["red"]["name"] == "Ann Lee" and after["red"]["count"] == 3
    assert "blue" not in after and "mixed" not in after  # the forgotten faces are grouped no more
    assert [e.action for e in engine.audit_entries() if e.actor == "investigator-1" and e.action in (
        "people.name", "people.merge", "people.split", "people.forget", "people.cluster")] == [
        "people.name", "people.merge", "people.split", "people.forget", "people.cluster"]


def test_clear_name(server):
    app, tokens, engine = server
    client, csrf = _signed_in(app, tokens[Role.INVESTIGATOR])
    red = _people(engine)["red"]
    engine.people.name(red["id"], "Ann")
    page = client.get(f"/ui/people/{red['id']}")
    assert 'name="clear" value="1"' in page.text
    cleared = client.post(f"/ui/people/{red['id']}/name", data={"name": "Ann", "clear": "1", "csrf": csrf})
    assert cleared.status_code == 200 and "name was cleared" in _message(cleared.text, "flash")
    assert _people(engine)["red"]["name"] is None


def test_who_may_see_and_do_what(server):
    app, tokens, engine = server
    red, yellow = _people(engine)["red"], _people(engine)["yellow"]
    posts = {
        f"/ui/people/{red['id']}/name": ({"name": "Ann"}, {Role.INVESTIGATOR}),
        "/ui/people/merge": ({"ids": [str(red["id"]), str(_people(engine)["blue"]["id"])]}, {Role.INVESTIGATOR}),
        f"/ui/people/{red['id']}/split": ({"faces": [str(red["faces"][0]["face_id"])]}, {Role.INVESTIGATOR}),
        "/ui/people/cluster": ({"source": "wire"}, {Role.INVESTIGATOR}),
        f"/ui/people/{yellow['id']}/forget": ({"confirm": "yes"}, {Role.INVESTIGATOR, Role.DPO}),
    }
    for role in Role:
        client, csrf = _signed_in(app, tokens[role])
        listing = client.get("/ui/people")
        assert (listing.status_code == 200) == (role in (Role.INVESTIGATOR, Role.DPO)), role
        assert ('href="/ui/people"' in client.get("/ui/sources").text) == (role in (Role.INVESTIGATOR, Role.DPO))
        if listing.status_code != 200:
            assert listing.status_code == 403 and "investigator or dpo" in listing.json()["error"]["message"]
            assert client.get(f"/ui/people/{red['id']}").status_code == 403
        for path, (data, allowed) in posts.items():
            if role not in allowed:
                before = _state(engine)
                refused = client.post(path, data={**data, "csrf": csrf}, follow_redirects=False)
                assert refused.status_code == 403, (role, path)
                assert _state(engine) == before
    # A DPO sees covers and faces, and a forget form, but no form that corrects a person.
    dpo, csrf = _signed_in(app, tokens[Role.DPO])
    listing = dpo.get("/ui/people")
    assert _cards(listing.text) and "Run clustering" not in listing.text and 'name="ids"' not in listing.text
    assert dpo.get(_cards(listing.text)[red["id"]]["cover"]).status_code == 200
    page = dpo.get(f"/ui/people/{red['id']}")
    assert 'name="faces"' not in page.text and "/name" not in page.text and 'name="confirm"' in page.text
    assert dpo.get(f"/ui/crops/{red['faces'][-1]['face_id']}").status_code == 200
    forgot = dpo.post(f"/ui/people/{yellow['id']}/forget", data={"confirm": "yes", "csrf": csrf}, follow_redirects=False)
    assert forgot.status_code == 303 and "yellow" not in _people(engine)
    assert engine.audit_entries(action="people.forget")[-1].actor == "dpo-1"


def test_signed_out_browsers_go_to_the_sign_in_page_and_change_nothing(server):
    app, _, engine = server
    red = _people(engine)["red"]
    anonymous = TestClient(app)
    before = _state(engine)
    for method, path in [("GET", "/ui/people"), ("GET", f"/ui/people/{red['id']}"),
                         ("POST", f"/ui/people/{red['id']}/name"), ("POST", "/ui/people/merge"),
                         ("POST", f"/ui/people/{red['id']}/forget"), ("POST", "/ui/people/cluster")]:
        response = anonymous.request(method, path, data={"name": "x", "confirm": "yes", "source": "news"},
                                     follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login", (method, path)
    assert anonymous.get(f"/ui/crops/{red['cover']['face_id']}", follow_redirects=False).status_code == 303
    assert _state(engine) == before


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_every_form_needs_the_sessions_csrf_token(server, token):
    app, tokens, engine = server
    client, _ = _signed_in(app, tokens[Role.INVESTIGATOR])
    red, blue = _people(engine)["red"], _people(engine)["blue"]
    before = _state(engine)
    for path, data in [(f"/ui/people/{red['id']}/name", {"name": "Ann"}),
                       ("/ui/people/merge", {"ids": [str(red["id"]), str(blue["id"])]}),
                       (f"/ui/people/{red['id']}/split", {"faces": [str(red["faces"][0]["face_id"])]}),
                       (f"/ui/people/{red['id']}/forget", {"confirm": "yes"}),
                       ("/ui/people/cluster", {"source": "news"})]:
        sent = data if token is None else {**data, "csrf": token}
        response = client.post(path, data=sent, follow_redirects=False)
        assert response.status_code == 403 and response.json()["error"]["code"] == "csrf", path
    assert _state(engine) == before


@pytest.mark.parametrize("method,path,data,status,says", [
    ("GET", "/ui/people/999", None, 404, "There is no person 999"),
    ("GET", "/ui/people/abc", None, 404, "'abc' is not a person id"),
    ("GET", "/ui/people/0", None, 404, "'0' is not a person id"),
    ("GET", f"/ui/people/{2**63}", None, 404, "is not a person id"),
    ("GET", "/ui/people?source=nope", None, 404, "nope"),
    ("GET", "/ui/people?source=plain", None, 409, "does not allow grouping"),
    ("POST", "/ui/people/RED/name", {"name": "   "}, 400, "The name is empty"),
    ("POST", "/ui/people/RED/name", {"name": "A" * 201}, 400, "at most 200"),
    ("POST", "/ui/people/RED/name", {"name": "a\nb"}, 400, "control characters"),
    ("POST", "/ui/people/999/name", {"name": "Ann"}, 404, "There is no person 999"),
    ("POST", "/ui/people/x1/name", {"name": "Ann"}, 404, "is not a person id"),
    ("POST", "/ui/people/merge", {}, 400, "none ticked"),
    ("POST", "/ui/people/merge", {"ids": ["RED"]}, 400, "Tick the boxes of two or more people"),
    ("POST", "/ui/people/merge", {"ids": ["RED", "RED"]}, 400, "Tick the boxes of two or more people"),
    ("POST", "/ui/people/merge", {"ids": ["RED", "YELLOW"]}, 400, "different sources"),
    ("POST", "/ui/people/merge", {"ids": ["RED", "1e3"]}, 400, "'1e3' is not a person id"),
    ("POST", "/ui/people/merge", {"ids": ["RED", "999"]}, 404, "There is no person 999"),
    ("POST", "/ui/people/RED/split", {}, 400, "none was ticked"),
    ("POST", "/ui/people/RED/split", {"faces": ["BLUE_FACE"]}, 400, "not among person"),
    ("POST", "/ui/people/RED/split", {"faces": ["RED_FACES"]}, 400, "every face"),
    ("POST", "/ui/people/RED/split", {"faces": ["-4"]}, 400, "not a face id"),
    ("POST", "/ui/people/999/split", {"faces": ["BLUE_FACE"]}, 404, "There is no person 999"),
    ("POST", "/ui/people/RED/forget", {"confirm": "no"}, 400, "Tick \"I understand\""),
    ("POST", "/ui/people/999/forget", {"confirm": "yes"}, 404, "There is no person 999"),
    ("POST", "/ui/people/cluster", {"source": "plain"}, 409, "does not allow grouping"),
    ("POST", "/ui/people/cluster", {"source": "nope"}, 404, "nope"),
])
def test_bad_input_is_a_clear_message_on_the_page_with_a_4xx_and_changes_nothing(server, method, path, data, status,
                                                                                   says):
    app, tokens, engine = server
    client, csrf = _signed_in(app, tokens[Role.INVESTIGATOR])
    people = _people(engine)
    red = people["red"]
    swap = {"RED": [str(red["id"])], "YELLOW": [str(people["yellow"]["id"])],
            "BLUE_FACE": [str(people["blue"]["faces"][0]["face_id"])],
            "RED_FACES": [str(f["face_id"]) for f in red["faces"]]}
    path = path.replace("RED", str(red["id"]))
    form = None
    if data is not None:
        form = {"csrf": csrf, **{k: [s for v in value for s in swap.get(v, [v])] if isinstance(value, list) else value
                                 for k, value in data.items()}}
    before = _state(engine)
    response = client.request(method, path, data=form, follow_redirects=False)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    message = _message(response.text)
    assert says.replace('"', "&#34;").replace("'", "&#39;") in message, message
    assert "Traceback" not in response.text
    assert _state(engine) == before
    if "/name" in path and data and len(data["name"]) > 100:
        assert f'value="{"A" * 201}"' in response.text  # what was typed is there to correct
    if path.endswith("/split") and form and form.get("faces") == swap["RED_FACES"]:
        assert response.text.count(" checked>") == len(red["faces"])  # the ticks are kept
