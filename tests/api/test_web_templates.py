"""The web pages as templates and static files: escaping, no inline script or style, packaging."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

import vultus
from vultus.server import create_app

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "src" / "vultus" / "server"
HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """One person ingested, a source whose purpose and controller are HTML, and an account per role."""
    engine = vultus.open(tmp_path_factory.mktemp("web") / "data")
    engine.add_source("news", basis="consent", purpose=f"archive {HOSTILE}", retention="30d",
                      controller=f"ACME {HOSTILE}")
    engine.ingest([faces_root / "facerec_biden"], source="news", workers=1)
    tokens = {role: engine.add_user(f"{role}-t", role=role)[1] for role in ("investigator", "auditor", "admin", "dpo")}
    yield create_app(engine=engine), tokens
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


class _Assets(HTMLParser):
    """The scripts and stylesheets a page loads, and whether it has inline ones."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self.urls.append(named["src"]) if named.get("src") else self.inline.append("<script>")
        elif tag == "link" and named.get("rel") == "stylesheet":
            self.urls.append(named["href"])
        elif tag == "style":
            self.inline.append("<style>")
        if "style" in named:
            self.inline.append(f"style= on <{tag}>")


def test_a_case_reference_with_html_comes_back_escaped_on_the_results_page(site, faces_root: Path):
    app, tokens = site
    client, csrf = _signed_in(app, tokens["investigator"])
    photo = faces_root / "facerec_biden" / "1.jpg"
    page = client.post("/ui/search", data={"purpose": f'"{HOSTILE}', "case": HOSTILE, "csrf": csrf},
                       files={"photo": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert page.status_code == 200 and 'data-testid="result"' in page.text
    assert HOSTILE not in page.text
    assert f'value="{ESCAPED}"' in page.text and f'value="&#34;{ESCAPED}"' in page.text


def test_source_details_with_html_come_out_escaped_on_the_sources_and_audit_pages(site):
    app, tokens = site
    admin, _ = _signed_in(app, tokens["admin"])
    sources = admin.get("/ui/sources").text
    assert HOSTILE not in sources and f"archive {ESCAPED}" in sources and f"ACME {ESCAPED}" in sources
    auditor, _ = _signed_in(app, tokens["auditor"])
    audit = auditor.get("/ui/audit").text
    assert "source.add" in audit and "<script>" not in audit and "&lt;script&gt;" in audit


def test_an_error_message_from_the_address_bar_is_escaped_on_the_sign_in_page():
    from vultus.server.web import _templates

    page = _templates.get_template("login.html").render(title="Sign in", account=None, nav=[], csrf="",
                                                        error=HOSTILE, login_csrf="t")
    assert HOSTILE not in page and f'<p class="error" role="alert">{ESCAPED}</p>' in page


def test_a_result_card_escapes_what_the_gallery_holds():
    from vultus.server.web import _templates

    card = SimpleNamespace(face_id=7, similarity=0.91234, source="news", legal_basis="consent",
                           ingested_at="2024-05-06T07:08:09", path=f"upload:{HOSTILE}.jpg", media="photo",
                           video_time=None, video_time_end=None)
    video = SimpleNamespace(face_id=8, similarity=0.8, source="news", legal_basis="consent",
                            ingested_at="2024-05-06T07:08:09", path=f"/clips/{HOSTILE}.mp4", media="video",
                            video_time=65.4, video_time_end=70.0)
    from vultus.policy import LeftOut

    result = SimpleNamespace(candidates=[card, video], threshold=0.6, expected_false_candidates=None,
                             category="journalism", sources_searched=["news"],
                             left_out=[LeftOut(f"x{HOSTILE}", ("investigation",))],
                             probe_faces_used=1, probes=[], unlike_probes=[])
    page = _templates.get_template("search.html").render(
        title="Search results", account=None, nav=[], csrf="c", result=result, error="", purpose="p", case="c",
        category="journalism", categories=["journalism", "archive"], default_category="archive")
    assert HOSTILE not in page and f"upload:{ESCAPED}.jpg" in page and f"/clips/{ESCAPED}.mp4" in page
    # The sources left out are named, escaped, with what they allow; the category asked stays chosen.
    assert f"Left out: x{ESCAPED} (allows investigation; not journalism)." in page
    assert "<option selected>journalism</option>" in page and "<option>archive</option>" in page
    assert "<strong>0.912</strong>" in page and "ingested 2024-05-06<" in page and "not calibrated yet" in page
    # A photo's card shows its face crop; a video's, the appearance's still and the time in the video.
    assert 'src="/ui/crops/7"' in page and 'src="/ui/stills/8"' in page and "/ui/crops/8" not in page
    assert "at 01:05 (seen until 01:10)" in page


def test_every_page_loads_its_script_and_style_from_static_files_that_are_served(site):
    app, tokens = site
    pages = {"/ui/login": TestClient(app), "/request": TestClient(app)}
    for role, paths in {"investigator": ["/ui/search", "/ui/ingest"], "admin": ["/ui/sources"],
                        "dpo": ["/ui/requests"], "auditor": ["/ui/audit", "/ui/audit?verify=true"]}.items():
        client, _ = _signed_in(app, tokens[role])
        pages.update({path: client for path in paths})
    anonymous = TestClient(app)
    loaded = set()
    for path, client in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assets = _Assets()
        assets.feed(response.text)
        assert assets.inline == [], f"{path} has inline {assets.inline}"
        assert "/ui/static/vultus.css" in assets.urls and "/ui/static/drop.js" in assets.urls, path
        loaded.update(assets.urls)
    for url in loaded:  # no account needed: the public request page loads them too
        asset = anonymous.get(url)
        assert asset.status_code == 200 and asset.content, url
        assert asset.headers["content-type"].split(";")[0] in ("text/css", "text/javascript", "application/javascript")
    assert anonymous.get("/ui/static/missing.js").status_code == 404


def test_the_ingest_progress_page_names_its_job_for_the_external_script(site, faces_root: Path):
    app, tokens = site
    client, csrf = _signed_in(app, tokens["investigator"])
    photo = faces_root / "facerec_biden" / "2.jpg"
    page = client.post("/ui/ingest", data={"source": "news", "csrf": csrf},
                       files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))])
    assert page.status_code == 200
    progress = re.search(r'<progress id="bar"[^>]* data-progress="(/ui/ingest/[0-9a-f]+\.json)"', page.text).group(1)
    assert '<script src="/ui/static/ingest.js"></script>' in page.text
    assert client.get(progress).json()["id"] in progress
    assert "bar.dataset.progress" in (SERVER / "static" / "ingest.js").read_text()


def _package_data() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"]["vultus.server"]


def _web_files() -> list[str]:
    root = resources.files("vultus.server")
    return sorted(f"{folder}/{item.name}" for folder in ("templates", "static")
                  for item in (root / folder).iterdir() if item.is_file())


def test_the_package_data_names_every_template_and_static_file():
    files = _web_files()
    assert {"templates/base.html", "static/vultus.css", "static/drop.js", "static/ingest.js"} <= set(files)
    patterns = _package_data()
    unlisted = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert unlisted == [], f"not in [tool.setuptools.package-data]: {unlisted}"


def test_a_build_of_the_package_holds_the_templates_and_static_files(tmp_path: Path):
    # build_py is the step that fills a wheel (bdist_wheel packs its output); this venv has no
    # `wheel` package for bdist_wheel itself, so the test stops there.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = "import sys, setuptools; setuptools.setup(script_args=['-q', 'build_py', '--build-lib', sys.argv[1]])"
    out = subprocess.run([sys.executable, "-c", build, str(tmp_path / "lib")], cwd=source,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    built = tmp_path / "lib" / "vultus" / "server"
    assert (built / "web.py").is_file()
    missing = [name for name in _web_files() if not (built / name).is_file()]
    assert missing == [], f"a built package lacks {missing}"
