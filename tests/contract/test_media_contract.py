"""The media decoder contract, kept by every registered decoder and by the fake one with frames.

Decoders are read from the registry when the tests are collected, so a new one (a video
type) is held to the same promises without a line here; its sample is the first file of
the shared data set with one of its suffixes (photos from ``faces/_formats``). The fake
(``vultus.testing.media``) is registered inside its fixture only, so no other test sees it.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from vultus.errors import MediaError
from vultus.media import (
    HEAD_BYTES,
    PHOTO_FRAME,
    Decoder,
    MediaKind,
    accepted_suffixes,
    collect,
    content_type_of,
    content_types,
    decode_image,
    decoder_for,
    decoders,
    open_media,
    read_media,
    suffix_for,
)

FAKE = "fake frames (vultus.testing)"
DECODERS = [d.content_type for d in decoders() if d.sniff is not None] + [FAKE]
LIMITS = {"max_pixels": 50_000_000, "max_decode_mb": 1024}


class Subject(NamedTuple):
    decoder: Decoder
    data: bytes
    path: Path


#: content type -> (PyAV muxer, video encoder) for video samples made from the shared clip.
VIDEO_SAMPLES = {
    "video/quicktime": ("mov", "h264"), "video/x-m4v": ("ipod", "h264"), "video/x-matroska": ("matroska", "h264"),
    "video/webm": ("webm", "libvpx"), "video/x-msvideo": ("avi", "mpeg4"), "video/mp4": ("mp4", "h264"),
}


def _video_sample(decoder: Decoder, data_root: Path, folder: Path) -> Path:
    """The first second of the shared clip re-encoded into ``decoder``'s container (real pictures)."""
    import av

    muxer, codec = VIDEO_SAMPLES[decoder.content_type]
    path = folder / f"sample{decoder.suffixes[0]}"
    with av.open(str(data_root / "video" / "short_hamilton_clip.mp4")) as src, av.open(str(path), "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for index, frame in enumerate(src.decode(video=0)):
            if index >= 10:
                break
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24")[::2, ::2].copy(), format="rgb24")
            picture.pts = index
            out.mux(stream.encode(picture))
        out.mux(stream.encode())
    return path


def _sample(decoder: Decoder, data_root: Path, folder: Path) -> Path:
    folders = [data_root / "faces" / "_formats", data_root]
    for where in folders:
        for path in sorted(where.rglob("*")):
            if path.is_file() and path.name.lower().endswith(decoder.suffixes):
                return path
    if decoder.kind == MediaKind.VIDEO and decoder.content_type in VIDEO_SAMPLES:
        return _video_sample(decoder, data_root, folder)
    pytest.fail(f"No sample of {decoder.content_type} ({', '.join(decoder.suffixes)}) in {data_root}: "
                "add one to the shared data set.", pytrace=False)


@pytest.fixture(params=DECODERS)
def subject(request: pytest.FixtureRequest, data_root: Path, tmp_path: Path):
    """The decoder under test, a real sample of its type, and that sample as a file."""
    if request.param == FAKE:
        from vultus.testing.media import fake_frames_decoder, frames_file

        with fake_frames_decoder() as decoder:
            data = frames_file([["red"], [], ["blue", "green"]])
            path = tmp_path / "clip.frames"
            path.write_bytes(data)
            yield Subject(decoder, data, path)
        return
    decoder = decoder_for(request.param)
    path = _sample(decoder, data_root, tmp_path)
    yield Subject(decoder, path.read_bytes(), path)


def _frames(item):
    return list(item.frames(**LIMITS))


def test_sniffing_finds_its_own_type_in_real_bytes_whatever_the_name(subject: Subject):
    head = subject.data[:HEAD_BYTES]
    assert subject.decoder.sniff(head)
    for name in (subject.path.name, "", "upload", "renamed.bin"):
        assert content_type_of(head, name) == subject.decoder.content_type, name


def test_its_suffixes_and_content_types_are_reported(subject: Subject):
    decoder = subject.decoder
    assert decoder.suffixes and all(s.startswith(".") and s == s.lower() for s in decoder.suffixes)
    assert set(decoder.suffixes) <= set(accepted_suffixes()) and set(decoder.suffixes) <= set(accepted_suffixes(decoder.kind))
    assert suffix_for(decoder.content_type) == decoder.suffixes[0]
    assert {decoder.content_type, *decoder.aliases} <= content_types(decoder.kind)
    assert decoder.label and decoder.kind in tuple(MediaKind)
    # Collected in a folder by its suffix, as ingest does.
    assert [i.display for i in collect([subject.path.parent]).items if i.display == str(subject.path)]


def test_an_item_read_as_ingest_reads_it_yields_keyed_rgb_frames(subject: Subject):
    decoder = subject.decoder
    [(_, item)] = list(read_media(collect([subject.path]).items))
    assert not isinstance(item, Exception), item
    assert (item.content_type, item.kind) == (decoder.content_type, decoder.kind)
    assert item.sha256 == hashlib.sha256(subject.data).hexdigest() and item.size == len(subject.data)
    assert item.format and isinstance(item.format, str)
    # What a worker gets: the bytes when the decoder reads whole, else not.
    assert (item.data == subject.data) if decoder.whole else item.data is None
    frames = _frames(pickle.loads(pickle.dumps(item)))
    assert frames, "at least one frame"
    keys = [f.key for f in frames]
    assert all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)
    if decoder.kind == MediaKind.PHOTO:
        assert keys == [PHOTO_FRAME] and frames[0].time is None
    else:
        times = [f.time for f in frames]
        assert all(isinstance(t, float) for t in times) and times == sorted(times)
    for frame in frames:
        rgb = frame.rgb
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert frame.size == (rgb.shape[1], rgb.shape[0])
    # The same item from bytes in memory (a probe, an upload) has the same frames.
    again = _frames(open_media(subject.data, name=subject.path.name))
    assert [f.key for f in again] == keys
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(again, frames))


def test_the_still_kept_of_a_frame_is_a_photo(subject: Subject):
    item = open_media(subject.data, name=subject.path.name)
    frame = _frames(item)[-1]
    copy, fmt = item.still(frame)
    if copy is None:  # the item's own bytes, kept as they are: only an item read whole may say so
        assert subject.decoder.whole and item.kind == MediaKind.PHOTO
        copy = subject.data
    assert fmt and decode_image(copy).rgb.shape == frame.rgb.shape


@pytest.mark.parametrize("damage", ["empty", "head and zeros", "head and noise"])
def test_invalid_bytes_raise_a_media_error(subject: Subject, damage: str):
    head = subject.data[:32]
    bad = {"empty": b"", "head and zeros": head + bytes(4000),
           "head and noise": head + np.random.default_rng(13).integers(0, 256, 4000, dtype=np.uint8).tobytes()}[damage]
    item = open_media(bad, name=subject.path.name)  # opening decodes nothing: errors come with the frames
    with pytest.raises(MediaError):
        for frame in item.frames(**LIMITS):
            frame.rgb
