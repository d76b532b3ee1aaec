"""Videos read by vultus.media.video: the shared clip, and videos encoded here with PyAV in every container.

The encoded pictures are 96x64: the top-left quarter red (where it ends up shows how the
frame was turned), the bottom-right quarter grey at 20 + 10 * i for frame i (which frame a
sample is), the rest black.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vultus.errors import (
    CorruptVideoError,
    EmptyFileError,
    InputPathError,
    NotAVideoError,
    NoVideoStreamError,
    RemoteSourceRefused,
    SettingsError,
    TruncatedVideoError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from vultus.media.containers import VIDEO_SUFFIXES, sniff_video
from vultus.media.video import probe_video, sample_frames

WIDTH, HEIGHT = 96, 64
#: (PyAV muxer, video encoder, suffix, content type) for each supported container.
CONTAINERS = [
    ("mp4", "h264", ".mp4", "video/mp4"),
    ("mov", "h264", ".mov", "video/quicktime"),
    ("ipod", "h264", ".m4v", "video/x-m4v"),
    ("matroska", "h264", ".mkv", "video/x-matroska"),
    ("webm", "libvpx", ".webm", "video/webm"),
    ("avi", "mpeg4", ".avi", "video/x-msvideo"),
]


def picture(index: int) -> np.ndarray:
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[: HEIGHT // 2, : WIDTH // 2] = (255, 0, 0)
    rgb[HEIGHT // 2 :, WIDTH // 2 :] = 20 + 10 * (index % 24)
    return rgb


def frame_number(rgb: np.ndarray) -> int:
    """Which encoded picture ``rgb`` (upright, unrotated) is, from its grey quarter."""
    return round((float(rgb[HEIGHT * 3 // 4, WIDTH * 3 // 4].mean()) - 20) / 10)


def encode(path: Path, muxer: str = "mp4", codec: str | None = "h264", *, frames: int = 20, rate: int = 10,
           times_ms: list[int] | None = None, rotation: float | None = None, hflip: bool = False,
           audio: bool = False, audio_seconds: float = 2.0, options: dict[str, str] | None = None) -> Path:
    """Write a video of ``frames`` pictures at ``rate`` a second (or at ``times_ms``), optionally with audio."""
    container = av.open(str(path), "w", format=muxer, options=options or {})
    video = None
    if codec is not None:
        video = container.add_stream(codec, rate=1000 if times_ms is not None else rate)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 4_000_000
        if times_ms is not None:
            video.codec_context.max_b_frames = 0  # the mp4 muxer's duration is then the last picture's end
        if rotation is not None or hflip:
            # PyAV 18 writes the display matrix, as phones do (degrees counter-clockwise). The old
            # ``stream.metadata["rotate"]`` tag is ignored by FFmpeg 8's muxers: no matrix is written.
            video.set_display_rotation(rotation or 0, hflip=hflip)
    sound = container.add_stream("aac", rate=16000) if audio else None
    if sound is not None:
        sound.layout = "mono"
    if video is not None:
        for index in range(frames if times_ms is None else len(times_ms)):
            frame = av.VideoFrame.from_ndarray(picture(index), format="rgb24")
            frame.pts = index if times_ms is None else times_ms[index]
            container.mux(video.encode(frame))
        container.mux(video.encode())
    if sound is not None:
        for index in range(round(audio_seconds * 16000 / 1024)):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, index * 1024, Fraction(1, 16000)
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    container.close()
    return path


@pytest.fixture(scope="session")
def clip(data_root: Path) -> Path:
    return data_root / "video" / "short_hamilton_clip.mp4"


# -- the shared clip -------------------------------------------------------------------------


def test_the_shared_clip_is_described_from_its_headers(clip: Path):
    info = probe_video(clip)
    assert (info.content_type, info.codec, info.width, info.height) == ("video/mp4", "h264", 640, 360)
    assert (info.rotation, info.mirrored, info.has_audio) == (0, False, True)
    assert info.frame_rate == pytest.approx(29.97)
    assert info.duration == pytest.approx(10.02, abs=0.01)


def test_the_shared_clip_is_sampled_twice_a_second_by_presentation_time(clip: Path):
    frames = list(sample_frames(clip))
    frame_length = 1 / 29.97
    # Its first picture is shown at 0.844 s (the audio starts first): the first sample, for 0 s
    # and 0.5 s; each later one is the first picture at or after 1.0, 1.5, ... 9.5 s.
    assert frames[0].time == pytest.approx(0.844, abs=0.001)
    assert len(frames) == 19
    for number, frame in enumerate(frames[1:], start=2):
        assert number / 2 <= frame.time < number / 2 + frame_length
    # Numbered by the multiple of 0.5 s each was taken for: the first covers 0 and 1.
    assert [f.index for f in frames] == [0, *range(2, 20)]
    assert all(f.rgb.shape == (360, 640, 3) and f.rgb.dtype == np.uint8 and f.rgb.flags.c_contiguous for f in frames)


def test_stretches_of_a_video_sample_what_the_whole_does(clip: Path):
    """A long video can be shared out among workers: consecutive stretches give the whole's samples."""
    whole = [(f.time, f.index) for f in sample_frames(clip)]
    parts = [(f.time, f.index) for a, b in ((0, 3.3), (3.3, 6.0), (6.0, None))
             for f in sample_frames(clip, start=a, end=b)]
    assert parts == whole
    middle = list(sample_frames(clip, start=4.0, end=5.5))
    assert [f.index for f in middle] == [8, 9, 10] and 4.0 <= middle[0].time < 4.0 + 1 / 29.97
    with pytest.raises(ValueError):
        next(sample_frames(clip, start=5, end=5))


def test_a_higher_rate_takes_more_samples_and_never_the_same_picture_twice(clip: Path):
    times = [f.time for f in sample_frames(clip, rate=10)]
    assert len(times) == len(set(times)) and times == sorted(times)
    assert 90 <= len(times) <= 92


# -- containers, by content ------------------------------------------------------------------


@pytest.mark.parametrize("muxer, codec, suffix, content_type", CONTAINERS, ids=[c[2] for c in CONTAINERS])
def test_every_container_is_probed_and_sampled(tmp_path: Path, muxer, codec, suffix, content_type):
    path = encode(tmp_path / f"clip{suffix}", muxer, codec)
    assert sniff_video(path.read_bytes()[:4096]) == content_type
    info = probe_video(path)
    assert (info.content_type, info.width, info.height, info.rotation) == (content_type, WIDTH, HEIGHT, 0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    frames = list(sample_frames(path))
    assert [round(f.time, 3) for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert [frame_number(f.rgb) for f in frames] == [0, 5, 10, 15]
    assert all(f.rgb[2, 2, 0] > 200 and f.rgb[2, 2, 1] < 60 for f in frames)


def test_the_content_decides_not_the_suffix(tmp_path: Path):
    mkv = encode(tmp_path / "made.mkv", "matroska")
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(mkv.read_bytes())
    assert probe_video(disguised).content_type == "video/x-matroska"
    avi = encode(tmp_path / "made.avi", "avi", "mpeg4")
    wrong = tmp_path / "clip.mp4"
    wrong.write_bytes(avi.read_bytes())
    assert probe_video(wrong).content_type == "video/x-msvideo"
    assert len(list(sample_frames(wrong))) == 4


def test_sniffing_names_containers_and_nothing_else(faces_root: Path):
    assert sniff_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "video/quicktime"
    assert sniff_video(b"\x00\x00\x00\x1cftypM4V \x00\x00\x00\x01") == "video/x-m4v"
    assert sniff_video(b"\x00\x00\x00\x1cftypmp42\x00\x00\x00\x00") == "video/mp4"
    assert sniff_video(b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat") == "video/quicktime"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") is None  # a HEIC photo
    assert sniff_video(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00") is None
    assert sniff_video(b"RIFF\x24\x00\x00\x00WAVEfmt ") is None
    assert sniff_video(b"RIFF\x24\x00\x00\x00WEBPVP8 ") is None
    assert sniff_video(b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.org/a.ts\n") is None
    for photo in (faces_root / "facerec_obama" / "1.jpg", faces_root / "facerec_lin_manuel_miranda" / "1.png"):
        assert sniff_video(photo.read_bytes()[:4096]) is None
    assert VIDEO_SUFFIXES == (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def test_bytes_open_files_and_archive_members_are_read_like_paths(tmp_path: Path):
    path = encode(tmp_path / "clip.mp4")
    assert probe_video(path.read_bytes()).duration == pytest.approx(2.0, abs=0.05)
    with path.open("rb") as handle:
        assert len(list(sample_frames(handle))) == 4
    archive = tmp_path / "clips.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(path, "inside/clip.mp4")
    with zipfile.ZipFile(archive) as zipped, zipped.open("inside/clip.mp4") as member:
        assert [frame_number(f.rgb) for f in sample_frames(member, name="clips.zip!/inside/clip.mp4")] == [0, 5, 10, 15]


# -- rotation and frame rate -----------------------------------------------------------------


def red_corner(rgb: np.ndarray) -> str:
    height, width = rgb.shape[:2]
    corners = {"top-left": (2, 2), "top-right": (2, width - 3), "bottom-left": (height - 3, 2),
               "bottom-right": (height - 3, width - 3)}
    red = [name for name, (y, x) in corners.items() if rgb[y, x, 0] > 200 and rgb[y, x, 1] < 60]
    assert len(red) == 1, red
    return red[0]


@pytest.mark.parametrize("muxer, suffix", [("mp4", ".mp4"), ("mov", ".mov"), ("matroska", ".mkv")])
@pytest.mark.parametrize(
    "counter_clockwise, hflip, clockwise, mirrored, corner",
    [
        # A phone held upright stores landscape pictures and a matrix that turns them 90
        # degrees clockwise (ffprobe: "rotation of -90.00 degrees"): the red corner goes top-right.
        (-90, False, 90, False, "top-right"),
        (90, False, 270, False, "bottom-left"),
        (180, False, 180, False, "bottom-right"),
        (0, True, 0, True, "top-right"),
        (90, True, 270, True, "bottom-right"),
    ],
)
def test_the_display_matrix_is_applied(tmp_path: Path, muxer, suffix, counter_clockwise, hflip, clockwise, mirrored,
                                       corner):
    path = encode(tmp_path / f"turned{suffix}", muxer, rotation=counter_clockwise, hflip=hflip)
    info = probe_video(path)
    turned = clockwise in (90, 270)
    assert (info.rotation, info.mirrored) == (clockwise, mirrored)
    assert (info.width, info.height) == ((HEIGHT, WIDTH) if turned else (WIDTH, HEIGHT))
    frames = list(sample_frames(path))
    assert all(f.rgb.shape == (info.height, info.width, 3) and f.rgb.flags.c_contiguous for f in frames)
    assert {red_corner(f.rgb) for f in frames} == {corner}


@pytest.mark.parametrize("muxer, suffix", [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_a_variable_frame_rate_is_sampled_by_presentation_time(tmp_path: Path, muxer, suffix):
    shown_ms = [0, 100, 200, 900, 950, 1000, 1400, 2600, 2700]
    path = encode(tmp_path / f"vfr{suffix}", muxer, times_ms=shown_ms)
    frames = list(sample_frames(path, rate=2))
    # 0 s: picture 0; 0.5 s: the first shown after is picture 3 (0.9 s); 1.0 s: picture 5;
    # 1.5, 2.0 and 2.5 s: all picture 7 (2.6 s), taken once; nothing is shown after 3.0 s.
    assert [round(f.time, 3) for f in frames] == [0.0, 0.9, 1.0, 2.6]
    assert [frame_number(f.rgb) for f in frames] == [0, 3, 5, 7]
    assert probe_video(path).duration == pytest.approx(2.7, abs=0.01)


def test_a_header_with_no_duration_is_measured_from_its_packets(tmp_path: Path):
    # A live-recorded Matroska file: the segment's size is unknown and no duration is written.
    path = encode(tmp_path / "live.mkv", "matroska", options={"live": "1"})
    assert av.open(str(path)).duration is None
    assert probe_video(path).duration == pytest.approx(2.0, abs=0.05)
    assert len(list(sample_frames(path))) == 4
    with pytest.raises(VideoTooLongError):
        probe_video(path, max_duration_s=1.0)


# -- what is refused -------------------------------------------------------------------------


def test_an_audio_only_file_has_no_video_stream(tmp_path: Path):
    for muxer, suffix in (("mp4", ".m4a"), ("matroska", ".mka")):
        path = encode(tmp_path / f"sound{suffix}", muxer, codec=None, audio=True)
        with pytest.raises(NoVideoStreamError, match="only audio") as caught:
            probe_video(path)
        assert "export it again with its video track" in str(caught.value)
        with pytest.raises(NoVideoStreamError):
            next(sample_frames(path))


@pytest.mark.parametrize("muxer, suffix", [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_sound_that_outlasts_the_pictures_is_not_taken_for_truncation(tmp_path: Path, muxer, suffix):
    path = encode(tmp_path / f"with_sound{suffix}", muxer, audio=True, audio_seconds=4.0)
    info = probe_video(path)
    assert info.has_audio and info.duration == pytest.approx(4.0, abs=0.1)  # the file's, as a player shows
    assert [round(f.time, 3) for f in sample_frames(path)] == [0.0, 0.5, 1.0, 1.5]


@pytest.mark.parametrize(
    "muxer, codec, suffix, options",
    [("mp4", "h264", ".mp4", {}), ("mp4", "h264", ".mp4", {"movflags": "faststart"}),
     ("matroska", "h264", ".mkv", {}), ("webm", "libvpx", ".webm", {}), ("avi", "mpeg4", ".avi", {})],
    ids=["mp4", "mp4-faststart", "mkv", "webm", "avi"],
)
def test_a_truncated_file_is_refused_before_any_frame(tmp_path: Path, muxer, codec, suffix, options):
    whole = encode(tmp_path / f"whole{suffix}", muxer, codec, options=options).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    with pytest.raises(TruncatedVideoError, match="incomplete copy") as caught:
        probe_video(cut)
    assert f"ends at byte {len(whole) * 6 // 10:,}" in str(caught.value)
    assert "Copy the complete file again" in str(caught.value)
    frames = sample_frames(cut)
    with pytest.raises(TruncatedVideoError):
        next(frames)  # raised before the first frame: nothing of it is used


def test_a_truncated_live_recording_is_refused_when_its_end_was_declared(tmp_path: Path):
    """A Matroska segment of unknown size hides the cut; the duration in its header shows it after decoding."""
    whole = bytearray(encode(tmp_path / "whole.mkv", "matroska", frames=60).read_bytes())
    segment = whole.index(b"\x18\x53\x80\x67")
    whole[segment + 4 : segment + 12] = b"\x01\xff\xff\xff\xff\xff\xff\xff"  # size: unknown
    cut = bytes(whole[: len(whole) // 2])
    frames = []
    with pytest.raises(TruncatedVideoError, match="pictures stop at"):
        for frame in sample_frames(cut):
            frames.append(frame)
    assert frames  # the error comes after the readable frames; the caller drops them


def test_damage_to_a_few_packets_is_skipped_and_to_many_is_refused(clip: Path):
    data = clip.read_bytes()
    with av.open(io.BytesIO(data)) as container:
        packets = [(e.pos, e.size) for e in container.streams.video[0].index_entries]

    def damaged(count: int) -> bytes:
        copy = bytearray(data)
        rng = np.random.default_rng(count)
        for number in rng.choice(np.arange(1, len(packets)), size=count, replace=False):
            pos, size = packets[number]
            copy[pos + 4 : pos + size] = rng.integers(0, 256, size - 4, dtype=np.uint8).tobytes()
        return bytes(copy)

    assert len(list(sample_frames(damaged(2)))) == 19
    with pytest.raises(CorruptVideoError, match=r"of its 275 video packets cannot be decoded"):
        list(sample_frames(damaged(40)))


def test_corrupt_and_foreign_content_get_their_own_errors(tmp_path: Path, faces_root: Path):
    rng = np.random.default_rng(7)
    garbage = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + rng.integers(0, 256, 5000, np.uint8).tobytes()
    with pytest.raises(CorruptVideoError, match="cannot be read"):
        probe_video(garbage)
    with pytest.raises(NotAVideoError, match="MP4, MOV, M4V, MKV, WebM and AVI"):
        probe_video(rng.integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(NotAVideoError):
        probe_video(faces_root / "facerec_obama" / "1.jpg")
    playlist = tmp_path / "stream.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/segment.ts\n")
    with pytest.raises(NotAVideoError):
        probe_video(playlist)  # never handed to FFmpeg's playlist demuxer, which would fetch the address
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError):
        probe_video(empty)


def test_a_stream_whose_pictures_do_not_decode_is_corrupt(tmp_path: Path):
    data = bytearray(encode(tmp_path / "clip.mp4", frames=10).read_bytes())
    mdat = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4
    data[mdat:end] = bytes(end - mdat)  # every picture zeroed, the container intact
    with pytest.raises(CorruptVideoError, match="no frame of its video stream can be decoded"):
        list(sample_frames(bytes(data)))


def test_the_limits_are_checked_from_the_header_before_decoding(tmp_path: Path, clip: Path):
    path = encode(tmp_path / "clip.mkv", "matroska")
    with pytest.raises(VideoTooLargeError, match=r"96x64, 6,144 pixels, over the limit of 6,143") as caught:
        probe_video(path, max_pixels=WIDTH * HEIGHT - 1)
    assert "VULTUS_MAX_VIDEO_PIXELS" in str(caught.value)
    with pytest.raises(VideoTooLargeError):
        next(sample_frames(path, max_pixels=WIDTH * HEIGHT - 1))
    assert probe_video(path, max_pixels=WIDTH * HEIGHT).width == WIDTH
    with pytest.raises(VideoTooLongError, match=r"lasts 10 s, over the limit of 5 s") as caught:
        next(sample_frames(clip, max_duration_s=5))
    assert "VULTUS_MAX_VIDEO_SECONDS" in str(caught.value)
    assert probe_video(clip, max_duration_s=10.1).duration < 10.1


def test_pictures_larger_than_the_header_says_are_refused_unallocated():
    """A header that says 96x64 over 192x128 JPEG pictures: FFmpeg's own guard refuses them."""
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.time_base = 192, 128, "yuvj420p", Fraction(1, 10)
    packets = []
    for index in range(10):
        big = av.VideoFrame.from_ndarray(np.full((128, 192, 3), 10 * index, np.uint8), format="rgb24")
        big = big.reformat(format="yuvj420p")
        big.pts = index
        packets += encoder.encode(big)
    packets += encoder.encode()
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        for index, packet in enumerate(packets):
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 10)
            container.mux(packet)
    with pytest.raises(VideoTooLargeError, match="far over the limit of 6,144 pixels"):
        list(sample_frames(buffer.getvalue(), max_pixels=WIDTH * HEIGHT))
    assert len(list(sample_frames(buffer.getvalue()))) == 2  # within the default limit it is a video


def test_a_bad_sampling_rate_is_a_settings_error(clip: Path):
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(SettingsError):
            next(sample_frames(clip, rate=rate))


# -- what is never opened --------------------------------------------------------------------


@pytest.mark.parametrize("address", ["rtsp://camera.local/stream1", "http://example.org/clip.mp4",
                                     "https://example.org/clip.mp4", "HTTP://EXAMPLE.ORG/a.mkv"])
def test_network_addresses_are_refused_unread(address: str):
    with pytest.raises(RemoteSourceRefused, match="network address"):
        probe_video(address)
    with pytest.raises(RemoteSourceRefused):
        next(sample_frames(address))


def test_devices_pipes_and_folders_are_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    for path in ("/dev/null", "/dev/zero", fifo, tmp_path):
        with pytest.raises(InputPathError, match="not a regular file|cannot be read"):
            probe_video(path)
    with pytest.raises(InputPathError, match="cannot be read"):
        probe_video(tmp_path / "missing.mp4")


def test_a_name_that_looks_like_an_ffmpeg_protocol_is_just_a_file_name(tmp_path: Path, monkeypatch):
    """FFmpeg is handed the opened file, never the name, so ``concat:`` or ``pipe:`` mean nothing."""
    monkeypatch.chdir(tmp_path)
    encode(tmp_path / "concat:clip.mp4")
    assert probe_video("concat:clip.mp4").width == WIDTH
    with pytest.raises(InputPathError):
        probe_video("pipe:0")


def test_every_video_error_is_a_media_error_with_advice():
    from vultus.errors import MediaError

    for kind in (NotAVideoError, NoVideoStreamError, CorruptVideoError, TruncatedVideoError, VideoTooLongError,
                 VideoTooLargeError):
        assert issubclass(kind, VideoError) and issubclass(kind, MediaError)


def test_importing_the_video_module_does_not_import_pyav():
    code = "import sys, vultus.media.video, vultus.faces.tracks; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
