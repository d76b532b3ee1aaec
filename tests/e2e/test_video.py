"""Video end to end on real faces: the shared clip ingested beside the shared photos, searched,
erased by face, objected to, refused when it is bad.

Where Lin-Manuel Miranda is on screen in ``video/short_hamilton_clip.mp4`` (10 s, 640x360):
the clip has four shots, found from the mean absolute difference of consecutive decoded
pictures (28.5-30.9 at the three cuts, at most 14.3 anywhere else), and each shot was looked
at frame by frame (every fifth frame and full-size stills): 0.844-1.478 s is a wide stage
shot with Miranda at the right; 1.511-3.547 s a profile close-up of another man;
3.580-7.851 s Miranda in a medium shot, facing the camera, in every frame; 7.884-9.986 s the
audience. Times count from the container's start, as a player shows them (the first picture
is at 0.844 s). See ``tests/models/test_video_appearances.py`` and ``bench/appearances.py``.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli

#: The stretches of the clip in which Miranda is on screen (seconds), as described above.
MIRANDA_ON_SCREEN = [(0.844, 1.478), (3.580, 7.851)]


@pytest.fixture(scope="module")
def clip(data_root: Path) -> Path:
    return data_root / "video" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def miranda(faces_root: Path) -> list[Path]:
    return sorted((faces_root / "facerec_lin_manuel_miranda").iterdir())


@pytest.fixture(scope="module")
def video_gallery(tmp_path_factory: pytest.TempPathFactory, faces_root: Path, clip: Path):
    """The shared faces and the clip, ingested into one data directory (workers: a pool of two)."""
    from vultus.evaluation import identity_photos

    folder = tmp_path_factory.mktemp("video")
    engine = vultus.open(folder / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="30d")
    engine.reports = []
    engine.summary = engine.ingest([*(faces_root / name for name in identity_photos(faces_root)), clip],
                                   source="news", workers=2,
                                   video_progress=lambda *report: engine.reports.append(report))
    yield engine
    engine.close()


def _video_faces(engine) -> list:
    face_ids = engine.store.searchable_face_ids().tolist()
    return [hit for hit in engine.store.hydrate(face_ids).values() if hit.media == "video"]


def _on_screen(time: float) -> bool:
    return any(start - 1e-3 <= time <= end + 1e-3 for start, end in MIRANDA_ON_SCREEN)


def test_a_search_with_his_photo_finds_the_clip_at_a_time_he_is_on_screen(video_gallery, miranda: list[Path],
                                                                          clip: Path):
    summary = video_gallery.summary
    assert summary.videos == 1 and summary.refused == []
    stats = video_gallery.stats()
    assert (stats.videos, stats.appearances) == (1, summary.appearances)
    out = CliRunner().invoke(cli, ["--data", str(video_gallery.data_dir), "stats"])
    assert f"1 ({summary.appearances} appearances" in out.output
    for photo in miranda:
        out = CliRunner().invoke(cli, ["--data", str(video_gallery.data_dir), "search", str(photo), "--purpose",
                                       "verification", "--case", "V-1", "--json"])
        assert out.exit_code == 0, out.output
        candidates = json.loads(out.output)
        videos = [c for c in candidates if c["media"] == "video"]
        assert videos, f"{photo.name}: the clip is not among the candidates"
        assert all(c["path"] == str(clip) for c in videos)
        for candidate in videos:
            assert _on_screen(candidate["video_time"]), (photo.name, candidate)
            assert candidate["video_time"] <= candidate["video_time_end"] + 1e-6
        # Photos are candidates too, and say so.
        assert {c["media"] for c in candidates} <= {"photo", "video"}
        assert any(c["media"] == "photo" for c in candidates)


def test_the_progress_of_the_video_is_relayed_from_its_worker(video_gallery, clip: Path):
    reports = video_gallery.reports
    assert reports and {name for name, *_ in reports} == {str(clip)}
    frames = [done for _, done, _, _ in reports]
    assert frames == sorted(frames) and len(reports) >= 3  # every five frames of 19, then the end
    name, done, expected, appearances = reports[-1]
    assert done == expected == 19 and appearances == video_gallery.summary.appearances


def test_the_clip_is_stored_as_a_few_appearances_not_a_face_per_frame(video_gallery, miranda: list[Path]):
    faces = _video_faces(video_gallery)
    # Every face of the clip belongs to an appearance with a time range inside the clip.
    assert faces and all(0.8 <= hit.time_start <= hit.time_end <= 10.1 for hit in faces)
    assert len({hit.appearance for hit in faces}) == len(faces)  # one template per appearance
    match = video_gallery.match_person(miranda[0])
    his = [hit for hit, _ in match.faces if hit.media == "video"]
    # He is on screen in two shots: at most one appearance per shot, or a few more where a
    # shot's faces are lost and found again; never one per sampled frame (he is seen in 10).
    assert 1 <= len(his) <= 4
    seen = sum(len(hit.seen_at) for hit in his)
    assert seen > len(his)


def test_a_video_already_indexed_is_skipped(video_gallery, clip: Path):
    before = len(_video_faces(video_gallery))
    summary = video_gallery.ingest([clip], source="news", workers=1)
    assert summary.duplicates == 1 and summary.videos == 0
    assert len(_video_faces(video_gallery)) == before


def test_erasure_by_face_removes_his_appearances_and_their_stills_and_nothing_of_anyone_else(
        tmp_path: Path, clip: Path, miranda: list[Path]):
    engine = vultus.open(tmp_path / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="30d")
    engine.ingest([clip], source="news", workers=1)
    before = {hit.face_id: hit for hit in _video_faces(engine)}
    match = engine.match_person(miranda[0])
    his = {hit.face_id for hit, _ in match.faces if hit.media == "video"}
    assert his and len(his) < len(before)
    stills = {fid: engine.blobs.path(hit.still_key) for fid, hit in before.items()}
    assert all(path.is_file() for path in stills.values())
    # The still's bytes as stored (encrypted): after the erasure no file of the data directory holds them.
    sealed = {fid: stills[fid].read_bytes() for fid in his}
    receipt = engine.erase(match)
    after = {hit.face_id for hit in _video_faces(engine)}
    assert after == set(before) - his
    # The audience (the last shot, 7.884-9.986 s: the Obamas and others) is all still there.
    audience = {fid for fid, hit in before.items() if hit.time_start >= 7.88}
    assert audience and audience <= after
    assert not any(stills[fid].exists() for fid in his)
    assert all(stills[fid].is_file() for fid in after)
    assert [v["time_ranges"] for v in receipt["removed_videos"]] and receipt["removed_videos"][0]["sha256"]
    engine.close()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(blob[:64] in content for blob in sealed.values()), path
    with vultus.open(tmp_path / "data") as reopened:
        assert reopened.match_person(miranda[0]).faces == []
        assert reopened.verify_audit().ok


def test_an_objector_is_left_out_of_later_video_ingests(tmp_path: Path, clip: Path, miranda: list[Path],
                                                       faces_root: Path):
    engine = vultus.open(tmp_path / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="30d")
    engine.ingest([miranda[0]], source="news", workers=1)
    engine.object(engine.match_person(miranda[0]))
    summary = engine.ingest([clip], source="news", workers=1)
    assert summary.videos == 1 and summary.suppressed_faces >= 1
    assert _video_faces(engine)  # the other people in the clip are kept
    assert [hit for hit, _ in engine.match_person(miranda[0]).faces if hit.media == "video"] == []
    engine.close()


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for n in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = n * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_each_bad_video_gets_its_own_error_and_the_rest_of_the_batch_is_indexed(
        tmp_path: Path, clip: Path, miranda: list[Path]):
    batch = tmp_path / "batch"
    batch.mkdir()
    data = clip.read_bytes()
    _audio_only(batch / "sound.mp4")
    (batch / "cut.mp4").write_bytes(data[: len(data) // 2])
    # Damaged in the middle: its pictures there are noise to the decoder.
    noise = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (batch / "noise.mp4").write_bytes(data[:100_000] + noise + data[400_000:])
    shutil.copy(miranda[0], batch / ("photo" + miranda[0].suffix))
    engine = vultus.open(tmp_path / "data")
    engine.add_source("news", basis="legitimate-interests", purpose="archive", retention="30d")
    summary = engine.ingest([batch], source="news", workers=1)
    reasons = dict(summary.refused)
    assert set(reasons) == {str(batch / n) for n in ("sound.mp4", "cut.mp4", "noise.mp4")}, reasons
    assert "no video stream" in reasons[str(batch / "sound.mp4")]
    assert "the file ends at byte" in reasons[str(batch / "cut.mp4")]
    assert "damaged" in reasons[str(batch / "noise.mp4")]
    assert len(set(reasons.values())) == 3
    assert summary.images == 1  # the photo beside them
    engine.close()
    # Over the limits (settings): refused with the setting to raise; the batch goes on.
    shutil.copy(clip, batch / "long.mp4")
    for setting, words in (({"max_video_seconds": 5}, "VULTUS_MAX_VIDEO_SECONDS"),
                           ({"max_video_pixels": 320 * 180}, "VULTUS_MAX_VIDEO_PIXELS")):
        with vultus.open(tmp_path / "data", **setting) as limited:
            summary = limited.ingest([batch / "long.mp4"], source="news", workers=1)
            assert summary.videos == 0 and words in dict(summary.refused)[str(batch / "long.mp4")]
    # A stream address is refused before anything is read, as photo URLs are.
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "data"), "ingest", "--source", "news",
                                   "rtsp://camera.local/stream"])
    assert out.exit_code != 0 and "Traceback" not in out.output


def test_the_access_report_lists_his_appearances_with_their_times_and_stills(video_gallery, miranda: list[Path],
                                                                            clip: Path):
    from PIL import Image

    report = video_gallery.access(miranda[0], include_crops=True)
    [video] = report["videos"]
    assert video["original_path"] == str(clip) and video["duration"] == pytest.approx(10.02, abs=0.05)
    # Rights match more inclusively than search (VULTUS_RIGHTS_THRESHOLD): the report may list
    # a look-alike's appearance too, but the closest ones are his, where he is on screen.
    closest = max(video["appearances"], key=lambda a: a["similarity"])
    assert _on_screen(closest["time_start"]) and _on_screen(closest["time_end"])
    for appearance in video["appearances"]:
        assert appearance["time_range"].count(":") == 2 and appearance["seen_at"]
        still = Image.open(io.BytesIO(base64.b64decode(appearance["still_jpeg_base64"])))
        assert still.size == (640, 360)


def test_kill_9_during_a_long_video_then_rerun_stores_it_once_as_a_clean_run_does(tmp_path: Path, clip: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from vultus.testing.video import looped_video

    long = looped_video(clip, tmp_path / "long.mp4", copies=24)  # four minutes: far longer than loading the models

    def vultus_cli(data: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "vultus", "--data", str(data), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    for data in (tmp_path / "crashed", tmp_path / "clean"):
        assert vultus_cli(data, "source", "add", "news", "--basis", "legitimate-interests", "--purpose", "archive",
                          "--retention", "30d").wait() == 0
    ingest = ("ingest", "--source", "news", "--workers", "1", "--no-progress", str(long))
    crashing = vultus_cli(tmp_path / "crashed", *ingest)
    time.sleep(8)  # models loaded, the video part-way analysed (checked just below)
    assert crashing.poll() is None, "the ingest ended before it could be killed; make the video longer"
    os.killpg(crashing.pid, signal.SIGKILL)
    crashing.wait()
    for data in (tmp_path / "crashed", tmp_path / "clean"):
        finished = vultus_cli(data, *ingest)
        out, _ = finished.communicate(timeout=600)
        assert finished.returncode == 0, out
    runs = {}
    for name in ("crashed", "clean"):
        with vultus.open(tmp_path / name) as engine:
            faces = _video_faces(engine)
            stills = sorted((tmp_path / name / "blobs" / "stills").rglob("*.jpg"))
            runs[name] = (engine.stats().images, sorted((h.time_start, h.time_end, h.box) for h in faces), len(stills))
            assert len(stills) == len(faces)  # no still left over from the killed run
            assert engine.verify_audit().ok
    assert runs["crashed"] == runs["clean"] and runs["clean"][1]
