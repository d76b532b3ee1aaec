"""schemathesis against the app's own OpenAPI document, in process: no input gives a 5xx.

Every operation is called with a token of a role it allows (so the route itself runs, not
only the 401), on a small deployment with one source, one ingested photo and an ingest
root, and a source that groups its faces with one person in it, for a bounded number of generated examples each. The web forms, which are not in the
OpenAPI document, get the same with Hypothesis: random text (non-ASCII, NUL, long) in every
field of every POST page, signed in with the page's role, with and without the right CSRF token.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

import vultus
from vultus.server import create_app
from vultus.server.routes import router
from vultus.store.accounts import Role

#: Generated examples per operation: enough to reach the edges of each parameter's range,
#: few enough that the whole run stays well under a minute on two cores.
EXAMPLES = 25
#: Integers at and past the edges of SQLite's int64, for integer path parameters.
INT_EDGES = [0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 10**40]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    root = tmp_path_factory.mktemp("schemathesis")
    photos = root / "incoming"
    photos.mkdir()
    shutil.copy(faces_root / "deepface_jack" / "5.jpg", photos / "jack.jpg")
    engine = vultus.open(root / "data", workers=1, ingest_root=photos)
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d", clustering=True)
    engine.ingest([photos / "jack.jpg"], source="news", workers=1)
    # A source that groups its faces, with one person (two photos of one man), for the people routes and pages.
    engine.add_source("grouped", basis="legitimate-interests", purpose="archive", retention="365d", clustering=True)
    engine.ingest([faces_root / "deepface_jack" / "1.jpg", faces_root / "deepface_jack" / "2.jpg"], source="grouped",
                  workers=1)
    engine.people.cluster("grouped")
    tokens = {role: engine.add_user(f"{role.value}-fuzz", role=role.value)[1] for role in Role}
    app = create_app(engine=engine)
    yield app, tokens
    engine.close()


def _roles(method: str, path: str) -> tuple[Role, ...]:
    """The roles the /v1 route of ``method`` and ``path`` (a template) allows; () for public ones."""
    for route in router.routes:
        if route.path == path and method.upper() in route.methods:
            return next(d.call.roles for d in route.dependant.dependencies if hasattr(d.call, "roles"))
    return ()


def _integer_path_parameters(method: str, path: str) -> list[str]:
    for route in router.routes:
        if route.path == path and method.upper() in route.methods:
            return [p.name for p in route.dependant.path_params if p.field_info.annotation is int]
    return []


def test_no_operation_answers_a_5xx(deployment):
    """Valid and invalid examples of every operation (schemathesis's positive and negative
    modes); plain Hypothesis drives them, since schemathesis's own pytest loader does not run
    under pytest 9."""
    app, tokens = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    faults: list[tuple] = []
    for operation in operations:
        roles = _roles(operation.method, operation.path)
        headers = {"Authorization": f"Bearer {tokens[roles[0]]}"} if roles else {}
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))
        numbers = _integer_path_parameters(operation.method, operation.path)
        if numbers:
            # Hypothesis rarely draws integers past SQLite's int64; try those edges on purpose.
            strategy = st.one_of(strategy, st.sampled_from(INT_EDGES).flatmap(
                lambda value: operation.as_strategy(path_parameters={name: value for name in numbers})))

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            if operation.method.upper() == "DELETE" and str((case.path_parameters or {}).get("name", "")).endswith("-fuzz"):
                return  # disabling the accounts this test calls with would leave the rest to the 401
            response = case.call(headers=headers)
            if response.status_code >= 500 or (response.status_code >= 400 and "error" not in response.json()):
                faults.append((operation.method, operation.path, response.status_code, response.text[:300]))

        call()
    assert not faults, faults


# -- the web forms: random text in every field of every POST page, signed in with its role -------

#: Each web POST route: the role it needs ("any" for any signed-in account, None for none), its
#: text fields and its file fields.
WEB_FORMS = {
    "/ui/login": (None, ["token", "name", "csrf"], []),
    "/ui/logout": ("any", ["csrf"], []),
    "/ui/search": (Role.INVESTIGATOR, ["purpose", "case", "csrf"], ["photo"]),
    "/ui/ingest": (Role.INVESTIGATOR, ["source", "csrf"], ["photos"]),
    "/ui/sources": (Role.ADMIN, ["name", "basis", "purpose", "retention", "controller", "consent_ref", "csrf"], []),
    "/ui/requests/{request_id}/fulfil": (Role.DPO, ["csrf"], []),
    "/request": (None, ["kind", "contact"], ["photo"]),
    "/ui/people/cluster": (Role.INVESTIGATOR, ["source", "view", "csrf"], []),
    "/ui/people/merge": (Role.INVESTIGATOR, ["ids", "view", "csrf"], []),
    "/ui/people/{person_id}/name": (Role.INVESTIGATOR, ["name", "clear", "csrf"], []),
    "/ui/people/{person_id}/split": (Role.INVESTIGATOR, ["faces", "csrf"], []),
    "/ui/people/{person_id}/forget": (Role.DPO, ["confirm", "csrf"], []),
}
#: Examples per web form.
FORM_EXAMPLES = 30

_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "é", "\x00", "news", "access", "legitimate-interests", "365d", "a@example.org"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=2000),
    st.integers(1000, 200_000).map(lambda n: "é\x00" * n),
)


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(out, format="PNG")
    return out.getvalue()


def test_no_web_form_answers_a_5xx(deployment):
    import re

    from fastapi.testclient import TestClient

    app, tokens = deployment
    from vultus.server.people_web import people_web
    from vultus.server.web import web

    posted = {route.path for route in [*web.routes, *people_web.routes] if "POST" in getattr(route, "methods", set())}
    assert posted == set(WEB_FORMS), "a web POST route is missing from WEB_FORMS (or one is gone)"
    files = st.tuples(st.sampled_from(["a.jpg", "é\x00.png", "x" * 300]),
                      st.sampled_from([b"", b"\xff\xd8\xff not a photo", _tiny_png(), bytes(range(256)) * 8]),
                      st.sampled_from(["image/jpeg", "image/png", "text/plain", ""]))

    def signed_in(role: Role) -> tuple[TestClient, str]:
        client = TestClient(app, raise_server_exceptions=False)
        page = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert client.post("/ui/login", data={"token": tokens[role], "csrf": csrf},
                           follow_redirects=False).status_code == 303
        home = client.get("/ui/sources")
        return client, re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)

    sessions = {role: signed_in(role) for role in (Role.INVESTIGATOR, Role.ADMIN, Role.DPO)}
    faults: list[tuple] = []
    for path, (role, fields, file_fields) in WEB_FORMS.items():
        form = st.fixed_dictionaries({}, optional={name: _TEXT for name in fields})
        uploads = st.fixed_dictionaries({}, optional={name: files for name in file_fields})

        @given(data=form, upload=uploads, right_csrf=st.booleans(), number=st.sampled_from(INT_EDGES + [1, 2]))
        @settings(max_examples=FORM_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(data, upload, right_csrf, number) -> None:
            if role is None:
                client = TestClient(app, raise_server_exceptions=False, client=("198.51.100.250", 5000))
                if path == "/ui/login" and right_csrf:
                    page = client.get("/ui/login")
                    data = {**data, "csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)}
            else:
                client, csrf = signed_in(Role.AUDITOR) if role == "any" else sessions[role]
                if right_csrf:
                    data = {**data, "csrf": csrf}
            url = path.replace("{request_id}", str(number)).replace("{person_id}", str(number))
            response = client.post(url, data=data, files=upload or None, follow_redirects=False)
            if response.status_code >= 500:
                faults.append((url, sorted(data), response.status_code, response.text[:300]))

        call()
    assert not faults, faults[:5]
