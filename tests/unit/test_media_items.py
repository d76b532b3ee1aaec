"""The media seam on a fake type with several frames: the registry finds it by content, ingest
analyses each of its frames, and an item shipped by location travels without its bytes.

The fake type is registered for one test at a time (``fake_frames_decoder``), so no other
test sees it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vultus.errors import NotAnImageError
from vultus.media import (
    PHOTO_FRAME,
    MediaKind,
    accepted_suffixes,
    collect,
    content_type_of,
    content_types,
    decode_image,
    read_media,
    read_photo,
)


@pytest.fixture
def fake_media(fakes):
    """The ``vultus.testing.media`` module; its type is registered only inside its context."""
    import vultus.testing.media

    yield vultus.testing.media
    assert vultus.testing.media.FAKE_FRAMES not in content_types()  # nothing left behind


def _read(paths):
    return [(item, media) for item, media in read_media(collect(paths).items)]


def test_the_registry_knows_the_fake_type_only_while_it_is_registered(fake_media):
    data = fake_media.frames_file([["red"]])
    assert content_type_of(data, "clip.frames") is None and ".frames" not in accepted_suffixes()
    with fake_media.fake_frames_decoder():
        # By content first, whatever the name says; the name only for what no content announces.
        assert content_type_of(data, "clip.jpg") == fake_media.FAKE_FRAMES
        assert content_type_of(data, "") == fake_media.FAKE_FRAMES
        assert content_type_of(b"garbage", "clip.frames") == fake_media.FAKE_FRAMES
        assert content_type_of(b"\xff\xd8\xff\xe0", "clip.frames") == "image/jpeg"
        assert ".frames" in accepted_suffixes() and ".frames" in accepted_suffixes(MediaKind.VIDEO)
        assert ".frames" not in accepted_suffixes(MediaKind.PHOTO)
    assert ".frames" not in accepted_suffixes() and content_type_of(data, "clip.frames") is None


def test_folders_and_archives_take_the_fake_type_by_its_suffix_and_its_content(tmp_path: Path, fake_media):
    folder = tmp_path / "in"
    folder.mkdir()
    data = fake_media.frames_file([["red"], [], ["blue"]])
    (folder / "a.frames").write_bytes(data)
    (folder / "b.jpg").write_bytes(fake_media.frames_file([["green"]]))  # a photo's name, the fake's content
    (folder / "notes.txt").write_text("not media")
    with zipfile.ZipFile(folder / "c.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inside.frames", data)
    with fake_media.fake_frames_decoder():
        found = collect([folder])
        assert [Path(p).name for p in found.ignored] == ["notes.txt"]
        read = {item.display[len(str(folder)) + 1:]: media for item, media in read_media(found.items)}
        assert set(read) == {"a.frames", "b.jpg", "c.zip!/inside.frames"}
        for media in read.values():
            assert media.content_type == fake_media.FAKE_FRAMES and media.kind == MediaKind.VIDEO
        assert read["a.frames"].sha256 == read["c.zip!/inside.frames"].sha256 == hashlib.sha256(data).hexdigest()
        assert [f.key for f in read["a.frames"].frames(max_pixels=10**7, max_decode_mb=64)] == \
            ["t=0.000", "t=0.500", "t=1.000"]
    # Once it is unregistered, the same folder has no fake items: b.jpg is tried as a photo.
    found = collect([folder])
    assert sorted(Path(p).name for p in found.ignored) == ["a.frames", "inside.frames", "notes.txt"]
    [(_, media)] = read_media([i for i in found.items if i.display.endswith("b.jpg")])
    assert media.kind == MediaKind.PHOTO
    with pytest.raises(NotAnImageError, match="plain text"):
        next(media.frames(max_pixels=10**7, max_decode_mb=64))


def test_an_item_read_from_its_location_is_hashed_and_shipped_without_its_bytes(tmp_path: Path, fake_media, fakes):
    data = fake_media.frames_file([[], ["red"], ["blue", "green"]], padding=1 << 20)
    (tmp_path / "big.frames").write_bytes(data)
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("in/big.frames")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    photo = fakes.square_photo(["red"])
    (tmp_path / "photo.jpg").write_bytes(photo)
    with fake_media.fake_frames_decoder(whole=False):
        read = _read([tmp_path / "big.frames", tmp_path / "t.tar.gz", tmp_path / "photo.jpg"])
    (_, plain), (_, member), (_, still) = read
    for media in (plain, member):
        assert media.data is None and media.size == len(data)
        assert media.sha256 == hashlib.sha256(data).hexdigest()
        shipped = pickle.dumps(media)
        assert len(shipped) < 4096 < len(data)  # the location travels, not the megabyte
        frames = list(pickle.loads(shipped).frames(max_pixels=10**7, max_decode_mb=64))  # read where it is
        assert [(f.key, f.time) for f in frames] == [("t=0.000", 0.0), ("t=0.500", 0.5), ("t=1.000", 1.0)]
        assert all(f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)
    # A photo beside them is still read whole, its bytes exactly the file's.
    assert still.kind == MediaKind.PHOTO and still.data == photo and still.sha256 == hashlib.sha256(photo).hexdigest()
    with fake_media.fake_frames_decoder(whole=True):
        [(_, whole)] = _read([tmp_path / "big.frames"])
    assert whole.data == data and len(pickle.dumps(whole)) > len(data)


def test_analysis_looks_at_every_frame_and_names_the_one_each_face_is_in(fake_media, fakes):
    from vultus.ingest import analyze_item
    from vultus.media import open_media

    with fake_media.fake_frames_decoder():
        item = open_media(fake_media.frames_file([[], [], ["red", "blue"]]), name="clip")
        result = analyze_item(fakes.fake_analyzer(), item, max_pixels=10**7)
    assert [(f.frame, f.time) for f in result.faces] == [("t=1.000", 1.0)] * 2
    assert (result.width, result.height, result.format) == (640, 480, "FAKE-FRAMES")
    for face, colour in zip(result.faces, ("red", "blue")):
        assert np.linalg.norm(face.embedding - fakes.colour_template(fakes.PALETTE[colour])) < 0.2
    # The copy kept is a still of that frame: a photo, whatever the item was.
    assert result.copy_format == "JPEG" and decode_image(result.copy).rgb.shape == (480, 640, 3)
    # A photo's one frame is the item itself.
    photo = analyze_item(fakes.fake_analyzer(), open_media(fakes.square_photo(["red"]), name="p.jpg"), max_pixels=10**7)
    assert [(f.frame, f.time) for f in photo.faces] == [(PHOTO_FRAME, None)]


@pytest.mark.parametrize("whole", [False, True], ids=["by-location", "whole"])
def test_ingest_stores_items_of_many_frames_as_appearances_by_their_sha256(
        fake_engine, tmp_path: Path, fake_media, fakes, whole: bool):
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = fake_media.frames_file([[], ["red"], []])
    (folder / "clip.frames").write_bytes(clip)
    (folder / "nobody.frames").write_bytes(fake_media.frames_file([[], []]))
    (folder / "both.frames").write_bytes(fake_media.frames_file([["green"], ["blue"]]))
    with fake_media.fake_frames_decoder(whole=whole):
        summary = fake_engine.ingest([folder], source="test", workers=1)
    # Items of many frames are linked into appearances, as videos are: one for the red square,
    # one each for the green and the blue one; the item with no face is stored with none.
    assert (summary.images, summary.videos, summary.appearances, summary.refused) == (0, 3, 3, [])
    result = fake_engine.search(fakes.square_photo(["red"]), purpose="unit test", case="M-1")
    [candidate] = result.candidates
    assert candidate.path.endswith("clip.frames") and candidate.image_sha256 == hashlib.sha256(clip).hexdigest()
    assert candidate.media == "video" and candidate.video_time == pytest.approx(1 * fake_media._STEP)
    [green] = fake_engine.search(fakes.square_photo(["green"]), purpose="unit test", case="M-2").candidates
    assert green.path.endswith("both.frames") and green.video_time == 0


def test_a_probe_must_be_a_photo(fake_media, fakes):
    with fake_media.fake_frames_decoder():
        with pytest.raises(NotAnImageError, match="photo is needed"):
            read_photo(fake_media.frames_file([["red"]]), name="clip")
        assert read_photo(fakes.square_photo(["red"]), name="p").rgb.shape == (480, 640, 3)
