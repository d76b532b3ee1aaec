"""Video appearances stored and searched on the fake models, and the stills kept of them.

Video decoding and tracking are not needed here: a video is put in the store as ingest will put
it, with ``add_video`` and its appearances, their templates being the fake embedder's templates
of coloured squares, their stills synthetic frames of those squares. A coloured square is a
person; probes are square photos.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.media import face_crop_jpeg, still_jpeg
from vultus.report import clock
from vultus.store import NewAppearance, NewFace, iso, utcnow

VIDEO_SHA = hashlib.sha256(b"a street scene, 61.5 seconds").hexdigest()
#: (appearance number, colour, colour shift of each template, media times, range, square).
APPEARANCES = [
    (0, "red", [0, 6], [4.0, 7.5], (2.0, 8.5), (40, 60)),
    (1, "green", [0], [6.0], (5.0, 12.0), (300, 60)),
    (2, "red", [0], [41.0], (40.0, 45.5), (200, 200)),
]


def _frame(fakes, squares):
    return fakes.square_pixels([fakes.Square(colour, left, top) for colour, (left, top) in squares], size=(640, 480))


def _store_video(engine, fakes) -> dict:
    """The street video, its three appearances stored as ingest will store them; what was stored, by appearance."""
    # Red and green are on screen together at 5 to 8.5 s; their stills show both.
    frame = _frame(fakes, [("red", (40, 60)), ("green", (300, 60))])
    later = _frame(fakes, [("red", (200, 200))])
    stored: dict[int, dict] = {}
    appearances = []
    for number, colour, shifts, times, (start, end), (left, top) in APPEARANCES:
        pixels = later if number == 2 else frame
        box = (left, top, left + 96, top + 96)
        still_key = engine.blobs.still_key(VIDEO_SHA, number)
        engine.blobs.put(still_key, still_jpeg(pixels, box))
        faces, crops = [], []
        for n, shift in enumerate(shifts):
            crop_key = engine.blobs.crop_key(VIDEO_SHA, number * 10 + n)
            engine.blobs.put(crop_key, face_crop_jpeg(pixels, box))
            template = fakes.colour_template(np.asarray(fakes.PALETTE[colour]) + shift)
            faces.append(NewFace(box, (), 0.99, template, fakes.FAKE_SPEC.model_id, crop_key))
            crops.append(crop_key)
        seen = [round(start + 0.5 * k, 1) for k in range(int((end - start) * 2) + 1)]
        appearances.append(NewAppearance(faces=faces, media_times=times, time_start=start, time_end=end,
                                          seen_at=seen, still_key=still_key))
        stored[number] = {"still": still_key, "crops": crops, "range": [start, end]}
    source = engine.store.get_source("test")
    now = utcnow()
    ids = engine.store.add_video(
        source_id=source.id, sha256=VIDEO_SHA, original_path="/footage/street.mp4", size_bytes=9_000_000,
        width=640, height=480, duration=61.5, format="MP4", ingested_at=iso(now),
        expires_at=iso(now.replace(year=now.year + 1)), appearances=appearances,
    )
    assert ids is not None and len(ids) == 4
    for number, face_ids in ((0, ids[:2]), (1, ids[2:3]), (2, ids[3:])):
        stored[number]["faces"] = face_ids
    return stored


@pytest.fixture
def street(fake_engine, write_photo, fakes):
    """A deployment with a red photo, a blue photo and the street video; (engine, what the video stored)."""
    summary = fake_engine.ingest([write_photo("red-alone.jpg", ["red"]), write_photo("blue.jpg", ["blue"])],
                                 source="test", workers=1)
    assert summary.images == 2
    return fake_engine, _store_video(fake_engine, fakes)


def _red(fakes) -> bytes:
    return fakes.square_photo([fakes.Square("red", 200, 150, 140)])


def _blob_files(data: Path) -> set[str]:
    return {str(p.relative_to(data / "blobs")) for p in (data / "blobs").rglob("*") if p.is_file()}


def test_search_returns_each_appearance_once_with_where_it_was_seen(street, fakes):
    engine, stored = street
    result = engine.search(_red(fakes), purpose="unit test", case="V-1")
    found = [(c.media, c.video_time, c.video_time_end, c.path.rsplit("/", 1)[-1]) for c in result.candidates]
    # Appearance 0 has two templates that both match: one candidate, at its nearer template's frame.
    assert sorted(found, key=str) == sorted([("photo", None, None, "red-alone.jpg"), ("video", 4.0, 8.5, "street.mp4"),
                                             ("video", 41.0, 45.5, "street.mp4")], key=str)
    video = [c for c in result.candidates if c.media == "video"]
    assert {c.face_id for c in video} == {stored[0]["faces"][0], stored[2]["faces"][0]}
    assert {c.image_sha256 for c in video} == {VIDEO_SHA} and [c.rank for c in result.candidates] == [1, 2, 3]
    # Logged like any search, the video among the images it returned.
    entry = engine.audit_entries(action="search")[-1]
    assert {c["image_sha256"] for c in entry.details["candidates"]} >= {VIDEO_SHA}
    assert [e.id for e in engine.store.searches_hitting([VIDEO_SHA])] == [entry.id]


def test_top_counts_appearances_not_templates(street, fakes):
    engine, _ = street
    result = engine.search(_red(fakes), purpose="unit test", case="V-2", top=2)
    assert len(result.candidates) == 2 and len({(c.path, c.video_time) for c in result.candidates}) == 2


def test_a_still_blacks_out_the_faces_it_is_told_to_and_outlines_its_own(fakes):
    frame = _frame(fakes, [("red", (40, 60)), ("green", (300, 60))])
    before = frame.copy()
    jpeg = still_jpeg(frame, (40, 60, 136, 156), redact=[(300, 60, 396, 156)])
    assert np.array_equal(frame, before)  # the caller's frame is not changed
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert pixels[60 + 48, 300 + 48].max() < 40 and pixels[60 + 5, 300 + 5].max() < 40  # the objector: black
    assert abs(pixels[60 + 48, 40 + 48] - np.array(fakes.PALETTE["red"])).max() < 30  # the face itself: as it was
    assert abs(pixels[58, 80] - np.array([255, 196, 0])).max() < 60  # the outline, just above the box
    found = fakes.FakeDetector().detect(pixels.astype(np.uint8))
    colours = {tuple(int(v) for v in pixels[(d.box.top + d.box.bottom) // 2, (d.box.left + d.box.right) // 2]) for d in found}
    assert not any(abs(np.array(c) - np.array(fakes.PALETTE["green"])).max() < 40 for c in colours)


def test_an_interrupted_ingest_sweep_keeps_the_stills(street, fakes):
    engine, stored = street
    # Stills are referenced by the store: the crash sweep, which deletes unreferenced blobs, keeps them.
    assert {stored[n]["still"] for n in stored} <= engine.store.blob_keys()
    engine.deployment._sweep_after_crash()
    assert {stored[n]["still"] for n in stored} <= _blob_files(engine.data_dir)


def test_clock_reads_as_minutes_and_seconds():
    assert [clock(t) for t in (0, 4.99, 65.2, 3599.9, 3600, 7384.5)] == ["00:00", "00:04", "01:05", "59:59", "1:00:00",
                                                                          "2:03:04"]
    assert clock(None) == ""


# -- the interfaces: CLI, API and web -------------------------------------------------------


def test_the_cli_json_and_table_show_media_and_video_times(street, fakes, tmp_path: Path):
    from click.testing import CliRunner

    from vultus.cli import cli

    engine, _ = street
    probe = tmp_path / "probe.jpg"
    probe.write_bytes(_red(fakes))
    engine.close()
    runner = CliRunner()
    common = ["--data", str(engine.data_dir), "--detector", "fake", "--embedder", "fake", "search", str(probe),
              "--purpose", "unit test", "--case", "V-CLI"]
    listed = runner.invoke(cli, [*common, "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    candidates = json.loads(listed.stdout)
    assert sorted((c["media"], c["video_time"], c["video_time_end"]) for c in candidates if c["media"] == "video") == [
        ("video", 4.0, 8.5), ("video", 41.0, 45.5)]
    [photo] = [c for c in candidates if c["media"] == "photo"]
    assert photo["video_time"] is None and photo["path"].endswith("red-alone.jpg")
    assert {"path", "similarity", "source", "legal_basis", "face_id", "image_sha256", "box"} <= set(photo)
    table = runner.invoke(cli, common, catch_exceptions=False)
    assert table.exit_code == 0 and "video time" in table.stdout
    assert re.search(r"00:04 \(to 00:08\).*street\.mp4", table.stdout)


def test_the_api_and_the_web_page_show_video_candidates_with_their_still(street, fakes):
    from fastapi.testclient import TestClient

    from vultus.server import create_app

    engine, stored = street
    token = engine.add_user("inv", role="investigator")[1]
    client = TestClient(create_app(engine=engine))
    photo = {"photo": ("probe.jpg", _red(fakes), "image/jpeg")}
    response = client.post("/v1/search", files=photo, data={"purpose": "unit test", "case": "V-API"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    videos = [c for c in response.json()["candidates"] if c["media"] == "video"]
    assert sorted((c["video_time"], c["video_time_end"], c["path"]) for c in videos) == [
        (4.0, 8.5, "/footage/street.mp4"), (41.0, 45.5, "/footage/street.mp4")]

    login = client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login).group(1)
    page = client.post("/ui/login", data={"token": token, "csrf": csrf}, follow_redirects=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    results = client.post("/ui/search", files=photo, data={"purpose": "unit test", "case": "V-WEB", "csrf": csrf})
    assert results.status_code == 200, results.text
    first = stored[0]["faces"][0]
    assert f'src="/ui/stills/{first}"' in results.text and "at 00:04 (seen until 00:08)" in results.text
    assert 'src="/ui/crops/' in results.text  # the photo candidate keeps its crop
    still = client.get(f"/ui/stills/{first}")
    assert still.status_code == 200 and still.content == engine.blobs.get(stored[0]["still"])
    # Only stills of this session's results are served: green was never returned.
    assert client.get(f"/ui/stills/{stored[1]['faces'][0]}").status_code == 404
