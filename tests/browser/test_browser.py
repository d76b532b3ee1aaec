"""The web interface in a real browser: Playwright driving Debian's Chromium, headless.

Screenshots of each step are saved in ``test-artifacts/`` (or ``$VULTUS_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """A live server on loopback with two people ingested and an account per role."""
    data = tmp_path_factory.mktemp("browser") / "data"
    engine = vultus.open(data)
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="365d")
    engine.ingest([faces_root / "facerec_obama", faces_root / "facerec_rose_leslie"], source="news", workers=1)
    tokens = {role: engine.add_user(f"{role}-web", role=role)[1] for role in ("investigator", "dpo")}
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
    yield base, tokens
    server.should_exit = True
    thread.join(10)
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
