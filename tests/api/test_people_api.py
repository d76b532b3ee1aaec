"""The /v1/people routes in process, on the fake models: roles, corrections that survive a run, clear 4xx errors.

A coloured square is a person (:mod:`vultus.testing`), so these need neither dlib nor the shared photos.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vultus.store.accounts import Role


@pytest.fixture
def server(tmp_path: Path):
    """A deployment with a source 'news' that groups its faces (3 red, 2 blue, 1 green photos, clustered)
    and a source 'plain' that does not; one account per role; the app."""
    import vultus
    from vultus.server import create_app
    from vultus.testing import Square, square_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    for n, colour in enumerate(["red", "red", "red", "blue", "blue", "green"]):
        (folder / f"{n}-{colour}.jpg").write_bytes(square_photo([Square(colour, 20 + 9 * n, 40)]))
    engine = vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="setup")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d", clustering=True)
    engine.add_source("plain", basis="consent", purpose="p", retention="30d")
    engine.ingest([folder], source="news", workers=1)
    engine.people.cluster("news")
    tokens = {role: engine.add_user(f"{role.value}-1", role=role.value)[1] for role in Role}
    client = TestClient(create_app(engine=engine))
    yield client, tokens, engine
    engine.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _people(client, tokens, **params) -> dict[str, dict]:
    """The people, keyed by the colour of their photos."""
    response = client.get("/v1/people", headers=_auth(tokens[Role.INVESTIGATOR]), params=params)
    assert response.status_code == 200, response.text
    found = {}
    for person in response.json():
        colours = {f["path"].rsplit("-", 1)[-1].removesuffix(".jpg") for f in person["faces"]}
        found[colours.pop() if len(colours) == 1 else "mixed"] = person
    return found


def _recluster(client, tokens) -> dict:
    response = client.post("/v1/people/cluster", headers=_auth(tokens[Role.INVESTIGATOR]), json={"source": "news"})
    assert response.status_code == 200, response.text
    return response.json()


def test_people_are_listed_with_their_faces_and_the_listing_is_audited_as_the_account(server):
    client, tokens, engine = server
    people = _people(client, tokens, source="news")
    assert sorted(people) == ["blue", "red"] and people["red"]["count"] == 3
    for face in people["red"]["faces"]:
        assert {"face_id", "path", "box"} <= set(face)
    one = client.get(f"/v1/people/{people['red']['id']}", headers=_auth(tokens[Role.DPO]))
    assert one.status_code == 200 and one.json()["faces"] == people["red"]["faces"]
    assert [e.actor for e in engine.audit_entries(action="people.list")] == ["investigator-1"]
    assert [e.actor for e in engine.audit_entries(action="people.show")] == ["dpo-1"]
    sources = client.get("/v1/sources", headers=_auth(tokens[Role.AUDITOR])).json()
    assert {s["name"]: s["clustering"] for s in sources} == {"news": True, "plain": False}


def test_who_may_do_what(server):
    client, tokens, _ = server
    person = _people(client, tokens)["red"]["id"]
    calls = [
        ("GET", "/v1/people", None, {Role.INVESTIGATOR, Role.DPO}),
        ("POST", f"/v1/people/{person}/name", {"name": "Ann"}, {Role.INVESTIGATOR}),
        ("POST", "/v1/people/cluster", {"source": "news"}, {Role.INVESTIGATOR}),
        ("POST", "/v1/sources/plain/clustering", {"enabled": False}, {Role.ADMIN}),
    ]
    for method, path, body, allowed in calls:
        for role in Role:
            response = client.request(method, path, headers=_auth(tokens[role]), json=body)
            assert (response.status_code == 200) == (role in allowed), (method, path, role, response.text)
            if role not in allowed:
                assert response.status_code == 403


def test_rename_merge_split_and_forget_through_the_api_survive_a_run(server):
    client, tokens, engine = server
    investigator = _auth(tokens[Role.INVESTIGATOR])
    people = _people(client, tokens)
    red, blue = people["red"], people["blue"]
    named = client.post(f"/v1/people/{red['id']}/name", headers=investigator, json={"name": "Ann"})
    assert named.status_code == 200 and named.json()["name"] == "Ann"
    # A green photo joins blue by a user's merge; a red face is split off; blue is then forgotten.
    from vultus.testing import square_photo

    second_green = engine.data_dir.parent / "photos" / "6-green.jpg"
    second_green.write_bytes(square_photo(["green"]))
    engine.ingest([second_green], source="news", workers=1)
    _recluster(client, tokens)
    green = _people(client, tokens)["green"]
    merged = client.post("/v1/people/merge", headers=investigator, json={"ids": [blue["id"], green["id"]]})
    assert merged.status_code == 200 and merged.json()["count"] == 4
    leaving = red["faces"][0]["face_id"]
    split = client.post(f"/v1/people/{red['id']}/split", headers=investigator, json={"faces": [leaving]})
    assert split.status_code == 200 and [f["face_id"] for f in split.json()["faces"]] == [leaving]
    _recluster(client, tokens)
    shown = client.get(f"/v1/people/{red['id']}", headers=investigator).json()
    assert shown["name"] == "Ann" and {f["face_id"] for f in shown["faces"]} == {f["face_id"] for f in red["faces"]} - {leaving}
    assert client.get(f"/v1/people/{blue['id']}", headers=investigator).json()["count"] == 4
    assert client.get(f"/v1/people/{split.json()['id']}", headers=investigator).json()["count"] == 1
    forgot = client.post(f"/v1/people/{blue['id']}/forget", headers=_auth(tokens[Role.DPO]))
    assert forgot.status_code == 200 and forgot.json()["faces"] == 4
    _recluster(client, tokens)
    assert client.get(f"/v1/people/{blue['id']}", headers=investigator).status_code == 404
    assert not {"blue", "green", "mixed"} & set(_people(client, tokens))


@pytest.mark.parametrize("method,path,body,status,code", [
    ("GET", "/v1/people/999", None, 404, "unknown_person"),
    ("GET", "/v1/people/0", None, 422, "invalid_request"),
    ("GET", f"/v1/people/{2**63}", None, 422, "invalid_request"),
    ("GET", "/v1/people?source=plain", None, 409, "clustering_off"),
    ("GET", "/v1/people?source=nope", None, 404, "unknown_source"),
    ("POST", "/v1/people/cluster", {"source": "plain"}, 409, "clustering_off"),
    ("POST", "/v1/people/RED/name", {"name": ""}, 400, "people"),
    ("POST", "/v1/people/RED/name", {"name": "a\nb"}, 400, "people"),
    ("POST", "/v1/people/RED/name", {}, 422, "invalid_request"),
    ("POST", "/v1/people/merge", {"ids": ["RED"]}, 422, "invalid_request"),
    ("POST", "/v1/people/merge", {"ids": ["RED", 2**63]}, 422, "invalid_request"),
    ("POST", "/v1/people/merge", {"ids": ["RED", 999]}, 404, "unknown_person"),
    ("POST", "/v1/people/RED/split", {"faces": []}, 422, "invalid_request"),
    ("POST", "/v1/people/RED/split", {"faces": ["BLUE_FACE"]}, 400, "people"),
    ("POST", "/v1/people/999/forget", None, 404, "unknown_person"),
    ("POST", "/v1/sources/nope/clustering", {"enabled": True}, 404, "unknown_source"),
    ("POST", "/v1/sources/plain/clustering", {"enabled": True, "note": "x\x00y"}, 400, "people"),
    ("POST", "/v1/sources/news/clustering", {"enabled": False, "note": "why"}, 400, "people"),
])
def test_bad_input_is_a_clear_4xx_and_changes_nothing(server, method, path, body, status, code):
    client, tokens, engine = server
    people = _people(client, tokens)
    red, blue = people["red"], people["blue"]
    swap = {"RED": red["id"], "BLUE_FACE": blue["faces"][0]["face_id"]}
    path = path.replace("RED", str(red["id"]))
    if body is not None:
        body = {k: [swap.get(v, v) for v in value] if isinstance(value, list) else value for k, value in body.items()}
    role = Role.ADMIN if "/sources/" in path else Role.INVESTIGATOR
    before = (_people(client, tokens), [c.source for c in engine.people.clustering_sources()])
    response = client.request(method, path, headers=_auth(tokens[role]), json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    after = (_people(client, tokens), [c.source for c in engine.people.clustering_sources()])
    assert [(c, p["id"], p["name"], p["count"]) for c, p in after[0].items()] == \
        [(c, p["id"], p["name"], p["count"]) for c, p in before[0].items()] and after[1] == before[1]


def test_clustering_is_switched_per_source_by_an_admin_and_off_deletes_its_people(server):
    client, tokens, engine = server
    admin = _auth(tokens[Role.ADMIN])
    on = client.post("/v1/sources/plain/clustering", headers=admin, json={"enabled": True, "note": "DPIA 9"})
    assert on.status_code == 200 and on.json() == {"source": "plain", "clustering": True, "changed": True}
    off = client.post("/v1/sources/news/clustering", headers=admin, json={"enabled": False})
    assert off.status_code == 200 and off.json()["deleted"]["people"] == 2
    assert client.get("/v1/people", headers=_auth(tokens[Role.INVESTIGATOR])).json() == []
    entries = engine.audit_entries(action="people.clustering")
    assert [(e.actor, e.details["source"], e.details["enabled"]) for e in entries][-2:] == [
        ("admin-1", "plain", True), ("admin-1", "news", False)]
