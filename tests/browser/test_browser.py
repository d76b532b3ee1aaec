"""The web interface in a real browser: Playwright driving Debian's Chromium, headless.

Screenshots of each step are saved in ``test-artifacts/`` (or ``$VULTUS_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

import vultus
from vultus.server import create_app

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("VULTUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed; ./scripts/test.sh installs Debian's chromium package.", pytrace=False)
    return path


@contextmanager
def _serving(engine) -> Iterator[str]:
    """``engine``'s app served on a free loopback port, for the block; its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine=engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """A live server on loopback with two people ingested and an account per role."""
    data = tmp_path_factory.mktemp("browser") / "data"
    engine = vultus.open(data)
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_rose_leslie"], source="news", workers=1)
    tokens = {role: engine.add_user(f"{role}-web", role=role)[1] for role in ("investigator", "dpo")}
    with _serving(engine) as base:
        yield base, tokens
    engine.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("VULTUS_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_sign_in_and_search_by_upload_shows_result_cards(site, browser, artifacts: Path, faces_root: Path):
    base, tokens = site
    page = browser.new_page()
    _sign_in(page, base, tokens["investigator"])
    page.wait_for_url(f"{base}/ui/search")
    page.screenshot(path=str(artifacts / "01-search-form.png"), full_page=True)
    page.set_input_files("#photo", str(faces_root / "facerec_obama" / "2.jpg"))
    page.fill("#purpose", "verify a caption")
    page.fill("#case", "BROWSER-1")
    page.click("button[type=submit]:has-text('Search')")
    page.wait_for_selector("[data-testid=result]")
    cards = page.locator("[data-testid=result]")
    assert cards.count() == 4
    assert "never identifications" in page.inner_text("main")
    # Each card's face crop loads (the image has a width once decoded).
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / "02-search-results.png"), full_page=True)
    page.close()


def test_a_public_erasure_request_carried_out_by_the_dpo(site, browser, artifacts: Path, faces_root: Path):
    base, tokens = site
    person = browser.new_page()
    person.goto(f"{base}/request")
    person.select_option("#kind", "erasure")
    person.fill("#contact", "rose@example.org")
    person.set_input_files("#photo", str(faces_root / "facerec_rose_leslie" / "1.jpg"))
    person.screenshot(path=str(artifacts / "03-public-request-form.png"), full_page=True)
    person.click("button[type=submit]")
    person.wait_for_selector("[data-testid=confirmation]")
    assert "similarity" not in person.content()
    person.screenshot(path=str(artifacts / "04-public-request-sent.png"), full_page=True)
    person.close()

    dpo = browser.new_page()
    _sign_in(dpo, base, tokens["dpo"])
    dpo.wait_for_url(f"{base}/ui/requests")
    dpo.screenshot(path=str(artifacts / "05-dpo-queue.png"), full_page=True)
    dpo.click("button:has-text('Carry out erasure')")
    dpo.wait_for_selector("text=Download the receipt")
    assert "2 photo(s) erased" in dpo.inner_text("main")
    with dpo.expect_download() as download:
        dpo.click("text=Download the receipt")
    receipt = Path(download.value.path()).read_text()
    assert '"kind": "erasure"' in receipt and '"signature"' in receipt
    dpo.screenshot(path=str(artifacts / "06-erasure-done.png"), full_page=True)
    dpo.goto(f"{base}/ui/requests")
    assert "Carry out erasure" not in dpo.content()
    dpo.close()


#: Three people of the shared faces (4, 3 and 3 photos, one face each), for the People page.
PEOPLE = ("facerec_obama", "facerec_alex_lacamoire", "facerec_kit_harington")


@pytest.fixture(scope="module")
def people_site(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """A live server over a source that groups its faces, with PEOPLE's photos ingested (not clustered
    yet), an investigator's token, and an API client for checking what the page did."""
    engine = vultus.open(tmp_path_factory.mktemp("people") / "data")
    engine.add_source("archive", basis="legitimate-interests", purpose="archive", retention="365d", clustering=True,
                      clustering_note="DPIA 2026-07")
    engine.ingest([faces_root / name for name in PEOPLE], source="archive", workers=1)
    token = engine.add_user("archivist", role="investigator")[1]
    with _serving(engine) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
        yield base, token, api
    engine.close()


def _groups(api: httpx.Client) -> dict[int, dict]:
    """The people of 'archive' through the API: id -> name, and the identity folder of each face by face id."""
    response = api.get("/v1/people", params={"source": "archive"})
    assert response.status_code == 200, response.text
    return {p["id"]: {"name": p["name"], "faces": {f["face_id"]: Path(f["path"]).parent.name for f in p["faces"]}}
            for p in response.json()}


def _of(groups: dict[int, dict], identity: str) -> list[int]:
    """The people holding a face of ``identity``."""
    return [pid for pid, g in groups.items() if identity in g["faces"].values()]


def test_people_page_cluster_rename_split_forget_and_merge_by_clicking(people_site, browser, artifacts: Path):
    base, token, api = people_site
    page = browser.new_page()
    _sign_in(page, base, token)
    page.wait_for_url(f"{base}/ui/search")
    page.click("header a:has-text('People')")
    page.wait_for_url(f"{base}/ui/people")
    assert page.locator("[data-testid=person]").count() == 0  # nothing was grouped before a first run

    page.click("button:has-text('Run clustering of archive')")
    page.wait_for_selector("[data-testid=flash]:has-text('Clustering of archive done: 10 face(s), 3 people')")
    groups = _groups(api)
    assert sorted(sorted(set(g["faces"].values())) for g in groups.values()) == [[n] for n in sorted(PEOPLE)]
    cards = page.locator("[data-testid=person]")
    assert cards.count() == 3
    for pid, group in groups.items():
        card = page.locator(f"[data-person='{pid}']")
        assert card.locator("[data-testid=count]").inner_text() == f"{len(group['faces'])} face(s)"
        assert card.locator("[data-testid=name]").inner_text() == f"Person {pid}"
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / "07-people-list.png"), full_page=True)

    # Rename Kit Harington's group by the form on its page.
    [kit] = _of(groups, "facerec_kit_harington")
    page.click(f"[data-person='{kit}'] [data-testid=name]")
    page.wait_for_url(f"{base}/ui/people/{kit}")
    page.fill("#name", "Kit Harington")
    page.click("button:has-text('Save name')")
    page.wait_for_selector("[data-testid=flash]:has-text('Named this person Kit Harington')")
    assert page.inner_text("h1") == "Kit Harington" and _groups(api)[kit]["name"] == "Kit Harington"

    # Split one of his faces off by clicking its crop, then forget the new group (confirmed by a tick).
    leaving = sorted(groups[kit]["faces"])[-1]
    page.click(f"[data-face='{leaving}'] img")
    assert page.is_checked(f"[data-face='{leaving}'] input")
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / "08-person-split-ticked.png"), full_page=True)
    page.click("button:has-text('Split off')")
    page.wait_for_selector("[data-testid=flash]:has-text('Split 1 face(s) off')")
    assert page.locator("[data-testid=face]").count() == 2
    after_split = _groups(api)
    [split] = [pid for pid in after_split if pid not in groups]
    assert list(after_split[split]["faces"]) == [leaving] and leaving not in after_split[kit]["faces"]
    page.click("[data-testid=flash] a")
    page.wait_for_url(f"{base}/ui/people/{split}")
    page.check("input[name=confirm]")
    page.click("button:has-text('Forget this person')")
    page.wait_for_selector(f"[data-testid=flash]:has-text('Person {split} forgotten')")
    assert split not in _groups(api) and api.get(f"/v1/people/{split}").status_code == 404

    # Merge Obama's and Alex Lacamoire's groups: tick both covers, then "Merge selected".
    [obama], [alex] = _of(groups, "facerec_obama"), _of(groups, "facerec_alex_lacamoire")
    page.click(f"[data-person='{obama}'] label.pick")
    page.click(f"[data-person='{alex}'] label.pick")
    page.screenshot(path=str(artifacts / "09-people-merge-ticked.png"), full_page=True)
    page.click("button:has-text('Merge selected')")
    page.wait_for_selector("[data-testid=flash]:has-text('into Person')")
    merged = _groups(api)
    [into] = _of(merged, "facerec_obama")
    assert into in (obama, alex) and _of(merged, "facerec_alex_lacamoire") == [into]
    assert page.url == f"{base}/ui/people/{into}" and page.locator("[data-testid=face]").count() == 7

    # A new run keeps every correction: the name, the merge, the split-off face forgotten.
    page.goto(f"{base}/ui/people")
    page.click("button:has-text('Run clustering of archive')")
    page.wait_for_selector("[data-testid=flash]:has-text('Clustering of archive done: 9 face(s), 2 people')")
    final = _groups(api)
    assert set(final) == {into, kit} and final[kit]["name"] == "Kit Harington"
    assert set(final[kit]["faces"]) == set(groups[kit]["faces"]) - {leaving}
    assert set(final[into]["faces"]) == set(groups[obama]["faces"]) | set(groups[alex]["faces"])
    assert page.locator("[data-person='%d'] [data-testid=count]" % into).inner_text() == "7 face(s)"
    assert page.locator("[data-person='%d'] [data-testid=name]" % kit).inner_text() == "Kit Harington"
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts / "10-people-after-rerun.png"), full_page=True)
    page.close()
