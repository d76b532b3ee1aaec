"""Video appearances stored, searched, reported, erased, restricted and purged, on the fake models.

Video decoding and tracking are not needed here: a video is put in the store as ingest will put
it, with ``add_video`` and its appearances, their templates being the fake embedder's templates
of coloured squares, their stills synthetic frames of those squares. A coloured square is a
person; probes are square photos.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.media import face_crop_jpeg, still_jpeg
from vultus.report import access_report_html, clock
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


def _files_containing(data: Path, needle: bytes) -> list[str]:
    return [str(p) for p in data.rglob("*") if p.is_file() and needle in p.read_bytes()]


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


def test_erasure_removes_the_persons_appearances_and_nothing_of_anyone_elses(street, fakes):
    engine, stored = street
    data = engine.data_dir
    erased = stored[0]["faces"] + stored[2]["faces"]
    with sqlite3.connect(data / "vultus.db") as conn:
        sealed = [row[0] for row in conn.execute(f"SELECT embedding FROM faces WHERE id IN ({','.join('?' * len(erased))})",
                                                 erased)]
    still_bytes = [engine.blobs.raw(stored[n]["still"]) for n in (0, 2)]
    assert all(_files_containing(data, needle) for needle in [*sealed, *still_bytes]), "the check below could not fail"
    match = engine.match_person(_red(fakes))
    [video_id] = engine.store.images_of_faces(erased)
    assert match.appearances == [(video_id, 0), (video_id, 2)] and len(match.image_ids) == 1
    receipt = engine.erase(match)

    assert len(receipt["removed_images"]) == 1  # the red photo, whole
    assert receipt["removed_videos"] == [{"sha256": VIDEO_SHA, "time_ranges": [[2.0, 8.5], [40.0, 45.5]]}]
    assert receipt["faces_removed"] == 1 + len(erased)
    assert engine.check_receipt(receipt) == "a valid signature by this deployment's key"
    # The person's rows, vectors, stills and crops are gone...
    assert engine.store.hydrate(erased) == {}
    assert not set(erased) & set(engine.gallery.open_index(writable=False).ids().tolist())
    removed_blobs = {stored[n]["still"] for n in (0, 2)} | {k for n in (0, 2) for k in stored[n]["crops"]}
    assert not removed_blobs & _blob_files(data)
    for needle in [*sealed, *still_bytes]:
        assert not _files_containing(data, needle), "a removed template or still is left in the data directory"
    # ...and the green person, seen beside them in the same video, keeps everything.
    [green] = stored[1]["faces"]
    assert engine.store.hydrate([green])[green].time_start == 5.0
    assert {stored[1]["still"], *stored[1]["crops"]} <= _blob_files(data)
    assert engine.store.known_sha256([VIDEO_SHA]) == {VIDEO_SHA}  # the video stays indexed: not ingested again
    found = engine.search(fakes.square_photo(["green"]), purpose="unit test", case="V-3").candidates
    assert [(c.media, c.video_time) for c in found] == [("video", 6.0)]
    assert engine.search(_red(fakes), purpose="unit test", case="V-4").candidates == []
    assert engine.verify_audit().ok
    assert engine.audit_entries(action="erasure")[-1].details["removed_videos"] == [
        {"sha256": VIDEO_SHA, "source": "test", "time_ranges": [[2.0, 8.5], [40.0, 45.5]]}]


def test_the_video_row_goes_once_its_last_appearance_is_erased(street, fakes):
    engine, stored = street
    engine.erase(engine.match_person(_red(fakes)))
    receipt = engine.erase(engine.match_person(fakes.square_photo(["green"])))
    assert receipt["removed_videos"] == [{"sha256": VIDEO_SHA, "time_ranges": [[5.0, 12.0]]}]
    assert engine.store.known_sha256([VIDEO_SHA]) == set()
    assert not any(k.startswith("stills/") for k in _blob_files(engine.data_dir))
    assert [(r.kind, r.images_removed, r.appearances_removed) for r in engine.receipts()] == [
        ("erasure", 1, 2), ("erasure", 0, 1)]


def test_an_access_report_lists_each_appearance_with_its_times_and_still(street, fakes):
    engine, stored = street
    report = engine.access(_red(fakes), include_crops=True)
    assert [i["original_path"].rsplit("/", 1)[-1] for i in report["images"]] == ["red-alone.jpg"]
    [video] = report["videos"]
    assert (video["video_sha256"], video["original_path"], video["duration"], video["source"]) == (
        VIDEO_SHA, "/footage/street.mp4", 61.5, "test")
    first, second = video["appearances"]
    assert (first["appearance"], first["time_start"], first["time_end"], first["time_range"]) == (0, 2.0, 8.5, "00:02-00:08")
    assert first["face_ids"] == stored[0]["faces"] and first["seen_at"][:3] == [2.0, 2.5, 3.0]
    assert second["time_range"] == "00:40-00:45" and not second["restricted"]
    assert base64.b64decode(first["still_jpeg_base64"]) == engine.blobs.get(stored[0]["still"])
    page = access_report_html(report)
    assert "Appearances in videos (2)" in page and "seen 00:02-00:08" in page and "/footage/street.mp4" in page
    entry = engine.audit_entries(action="access")[-1]
    assert (entry.details["videos"], entry.details["appearances"], entry.details["images"]) == (1, 2, 1)
    # Nobody else's appearance is in it.
    assert all(a["appearance"] != 1 for a in video["appearances"])
    without = engine.access(_red(fakes), include_crops=False)
    assert "still_jpeg_base64" not in without["videos"][0]["appearances"][0]


def test_restriction_takes_every_template_of_a_matched_appearance(street, fakes):
    engine, stored = street
    match = engine.match_person(_red(fakes))
    _, changed = engine.restrict(match)
    assert changed == 1 + 3
    assert set(engine.store.restricted_face_ids().tolist()) >= set(stored[0]["faces"] + stored[2]["faces"])
    assert engine.search(_red(fakes), purpose="unit test", case="V-5").candidates == []
    report = engine.access(_red(fakes))
    assert all(a["restricted"] for a in report["videos"][0]["appearances"])
    _, released = engine.restrict(engine.match_person(_red(fakes)), lift=True)
    assert released == 4
    assert len(engine.search(_red(fakes), purpose="unit test", case="V-6").candidates) == 3


def test_an_objection_erases_the_appearances_and_keeps_a_suppression_entry(street, fakes):
    engine, stored = street
    receipt = engine.object(engine.match_person(_red(fakes)))
    assert receipt["kind"] == "objection" and receipt["suppression_id"] >= 1
    assert [t for v in receipt["removed_videos"] for t in v["time_ranges"]] == [[2.0, 8.5], [40.0, 45.5]]
    assert engine.store.registers.suppression_models() == [fakes.FAKE_SPEC.model_id]
    assert engine.store.hydrate(stored[1]["faces"])


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


def test_a_purge_removes_an_expired_video_with_its_stills(street, fakes):
    engine, stored = street
    receipt = engine.purge(now=datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert receipt["kind"] == "purge" and len(receipt["removed_images"]) == 2  # the two photos
    assert receipt["removed_videos"] == [{"sha256": VIDEO_SHA, "time_ranges": [[2.0, 8.5], [5.0, 12.0], [40.0, 45.5]]}]
    assert receipt["faces_removed"] == 2 + 4
    assert _blob_files(engine.data_dir) == set()
    assert engine.store.counts()["faces"] == 0 and engine.store.known_sha256([VIDEO_SHA]) == set()


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
