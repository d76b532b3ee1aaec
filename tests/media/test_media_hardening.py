"""Memory from small files: each decode and each archive member is bounded by what it costs.

The big cases run in a child process that prints its own peak resident memory (VmHWM), so
the bound measured is that of one decode, not of the test runner. Memory bounds only;
nothing here is timed.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from vultus.config import Settings
from vultus.errors import (
    ArchiveMemberTooLargeError,
    DamagedArchiveMemberError,
    ImageTooLargeError,
    SettingsError,
)
from vultus.media import collect, decode_image, read_items
import importlib

collect_module = importlib.import_module("vultus.media.collect")
from vultus.media.pixels import decode_cost, to_upright_rgb8

SRC = Path(__file__).resolve().parents[2] / "src"
MIB = 1024 * 1024

_GENERATE = r"""
import sys
import numpy as np
from PIL import Image
out = sys.argv[1]
Image.fromarray(np.zeros((11000, 10000), np.float32), mode="F").save(
    out + "/float.tiff", compression="tiff_deflate")
Image.fromarray(np.zeros((10000, 10000), np.uint16)).save(out + "/sixteen.png")
# 180,900,000 pixels: over twice Pillow's own limit (Image.MAX_IMAGE_PIXELS), which it refuses.
Image.fromarray(np.zeros((13400, 13500), np.uint8)).save(out + "/huge.png")
"""

_DECODE = r"""
import json, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
from vultus.errors import MediaError
from vultus.media import decode_image
data = open(sys.argv[1], "rb").read()
kwargs = json.loads(sys.argv[2])
try:
    import io
    from PIL import Image
    from vultus.media.pixels import decode_cost
    Image.MAX_IMAGE_PIXELS = None
    estimate = decode_cost(Image.open(io.BytesIO(data))).total // (1024 * 1024)
    Image.MAX_IMAGE_PIXELS = 89478485
except ImportError:  # the code before decode_cost existed
    estimate = None
before = hwm()
try:
    image = decode_image(data, **kwargs)
    result = {"shape": list(image.rgb.shape)}
except MediaError as exc:
    result = {"error": type(exc).__name__, "message": str(exc)}
result.update(before_mb=before, peak_mb=hwm(), estimate_mb=estimate)
print(json.dumps(result))
"""

_ARCHIVE = r"""
import json, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
from vultus.media import collect, read_items
found = collect([sys.argv[1]])
results = []
for item, data in read_items(found.items):
    if isinstance(data, Exception):
        results.append({"error": type(data).__name__, "message": str(data)})
    else:
        results.append({"bytes": len(data)})
print(json.dumps({"refused": found.refused, "results": results, "peak_mb": hwm()}))
"""


def _child(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small files that decode to huge images (made in a child, to keep this process small)."""
    folder = tmp_path_factory.mktemp("big-images")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", _GENERATE, str(folder)], check=True, env=env)
    return folder


def test_the_float_tiff_is_small_on_disk_and_decodes_within_a_gigabyte(big_images: Path):
    path = big_images / "float.tiff"
    assert path.stat().st_size < 2 * MIB  # a few hundred KB that decode to 110 million floats
    result = _child(_DECODE, str(path), "{}")
    assert result.get("shape") == [11000, 10000, 3], result
    assert result["peak_mb"] < 1024, result
    # The estimate checked against the budget is what the decode really takes.
    assert result["peak_mb"] - result["before_mb"] <= result["estimate_mb"], result


def test_the_float_tiff_is_refused_under_a_smaller_budget(big_images: Path):
    result = _child(_DECODE, str(big_images / "float.tiff"), json.dumps({"max_decode_mb": 256}))
    assert result.get("error") == "ImageTooLargeError", result
    assert "VULTUS_MAX_DECODE_MB" in result["message"] and "8-bit" in result["message"]
    assert result["peak_mb"] < 200, result  # refused from the header: nothing was decoded


def test_a_sixteen_bit_png_decodes_within_its_estimate(big_images: Path):
    path = big_images / "sixteen.png"
    assert path.stat().st_size < 1 * MIB
    result = _child(_DECODE, str(path), "{}")
    assert result.get("shape") == [10000, 10000, 3], result
    assert result["peak_mb"] < 700, result
    assert result["peak_mb"] - result["before_mb"] <= result["estimate_mb"], result


def test_vultus_pixel_limit_governs_pillows(big_images: Path):
    path = big_images / "huge.png"
    # Over twice Pillow's default limit but under Vultus's: it decodes.
    result = _child(_DECODE, str(path), json.dumps({"max_pixels": 200_000_000}))
    assert result.get("shape") == [13400, 13500, 3], result
    assert result["peak_mb"] - result["before_mb"] <= result["estimate_mb"], result
    # Under Vultus's limit: refused with Vultus's message, which names the setting.
    refused = _child(_DECODE, str(path), json.dumps({"max_pixels": 150_000_000}))
    assert refused.get("error") == "ImageTooLargeError", refused
    assert "VULTUS_MAX_PIXELS" in refused["message"] and "150,000,000" in refused["message"]


def test_the_budget_refuses_from_the_header_with_advice():
    data = _encode(Image.new("I;16", (3000, 3000)), "PNG")
    with pytest.raises(ImageTooLargeError, match="VULTUS_MAX_DECODE_MB") as caught:
        decode_image(data, max_decode_mb=64)
    assert "3000x3000" in str(caught.value) and "scale it" in str(caught.value)
    assert decode_image(data, max_decode_mb=128).rgb.shape == (3000, 3000, 3)


def test_the_estimate_counts_the_mode_and_the_result():
    eight = decode_cost(Image.open(io.BytesIO(_encode(Image.new("L", (1000, 1000)), "PNG"))))
    floats = decode_cost(Image.open(io.BytesIO(_encode(Image.new("F", (1000, 1000)), "TIFF"))))
    assert eight.raw == 1_000_000 and eight.output == 3_000_000
    assert floats.raw == 4_000_000 and floats.output == 3_000_000
    assert floats.total > eight.total


def test_max_decode_mb_is_a_setting():
    assert Settings.from_env({"VULTUS_MAX_DECODE_MB": "2048"}).max_decode_mb == 2048
    assert Settings.from_env({}).max_decode_mb == 1024
    with pytest.raises(SettingsError, match="max_decode_mb"):
        Settings.from_env({"VULTUS_MAX_DECODE_MB": "1"})


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_every_exif_orientation_is_applied_as_pillow_does(orientation: int, mode: str):
    rng = np.random.default_rng(orientation)
    source = Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(source, "PNG", exif=exif.tobytes())
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    decoded = decode_image(data).rgb
    assert decoded.shape == (reference.height, reference.width, 3)
    if mode == "I;16":  # values are scaled down from 16 bits: compare with the scaled reference
        expected = (np.asarray(reference, np.float64) * (255 / 65535) + 0.5).astype(np.uint8)
        assert np.array_equal(decoded[:, :, 0], expected)
    else:  # opaque, so compositing on white changes nothing
        assert np.array_equal(decoded, np.asarray(reference.convert("RGB")))


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "YCbCr", "HSV", "LA", "RGBA", "I", "F", "I;16"])
def test_strips_convert_each_mode_as_one_conversion_would(mode: str, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 255, (90, 70, 4), dtype=np.uint8), "RGBA").convert(mode)
    whole = to_upright_rgb8(image)
    # Strips of a few rows must give exactly the pixels of a single strip.
    monkeypatch.setattr("vultus.media.pixels.STRIP_PIXELS", 70 * 3 + 5)
    assert np.array_equal(to_upright_rgb8(image), whole)
    if mode not in ("I", "F", "I;16", "LA", "RGBA"):
        assert np.array_equal(whole, np.asarray(image.convert("RGB")))


def test_float_and_wide_integer_greyscale_scale_like_before():
    floats = Image.fromarray(np.array([[0.0, 127.5, 255.0, np.nan]], np.float32), "F")
    assert to_upright_rgb8(floats)[0, :, 0].tolist() == [0, 128, 255, 0]
    wide = Image.fromarray(np.array([[0, 32768, 65535]], np.int32), "I")
    assert to_upright_rgb8(wide)[0, :, 0].tolist() == [0, 128, 255]


def test_decodes_running_at_once_share_the_budget():
    from vultus.media.decode import _SharedBudget

    budget = _SharedBudget()
    entered = threading.Event()
    with budget.reserve(600, 1000):
        second = threading.Thread(target=lambda: _hold(budget, entered))
        second.start()
        second.join(0.3)
        assert not entered.is_set()  # 600 + 600 does not fit in 1000: it waits for the first
    second.join()
    assert entered.is_set()
    with budget.reserve(900, 1000):  # alone, anything checked against the budget runs
        pass


def _hold(budget, entered: threading.Event) -> None:
    with budget.reserve(600, 1000):
        entered.set()


# Archives ------------------------------------------------------------------------------


def _lying_zip(path: Path, real: int, claimed: int, *, crc_of_claimed: bool) -> Path:
    """A zip whose one member really inflates to ``real`` bytes while its headers say ``claimed``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("photo.jpg", "w") as member:
            chunk = bytes(MIB)
            for _ in range(real // MIB):
                member.write(chunk)
            member.write(bytes(real % MIB))
    data = bytearray(path.read_bytes())
    crc = zlib.crc32(bytes(claimed)) if crc_of_claimed else struct.unpack_from("<I", data, 14)[0]
    struct.pack_into("<II", data, 14, crc, struct.unpack_from("<I", data, 18)[0])
    struct.pack_into("<I", data, 22, claimed)  # local header: uncompressed size
    central = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]
    assert data[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, central + 16, crc)
    struct.pack_into("<I", data, central + 24, claimed)  # central directory: uncompressed size
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("crc_of_claimed", [True, False])
def test_a_zip_member_that_lies_about_its_size_is_refused_within_bounded_memory(tmp_path: Path, crc_of_claimed: bool):
    bomb = _lying_zip(tmp_path / "bomb.zip", 1000 * MIB, 1000, crc_of_claimed=crc_of_claimed)
    assert bomb.stat().st_size < 2 * MIB
    result = _child(_ARCHIVE, str(bomb))
    [outcome] = result["results"]
    assert outcome.get("error") == "DamagedArchiveMemberError", result
    assert "more than the 1,000 bytes its header says" in outcome["message"]
    assert result["peak_mb"] < 100, result


def test_a_zip_member_a_little_longer_or_shorter_than_its_header_is_damaged(tmp_path: Path):
    for real in (5000, 500):
        for crc_of_claimed in (True, False):
            forged = _lying_zip(tmp_path / f"forged{real}{crc_of_claimed}.zip", real, 1000, crc_of_claimed=crc_of_claimed)
            [(item, outcome)] = list(read_items(collect([forged]).items))
            assert isinstance(outcome, DamagedArchiveMemberError), outcome
            assert "re-create" in str(outcome).lower()


def test_the_member_limit_holds_whatever_the_headers_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(collect_module, "MAX_MEMBER_BYTES", 3 * MIB)
    honest = tmp_path / "honest.zip"
    with zipfile.ZipFile(honest, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.jpg", bytes(4 * MIB))
        archive.writestr("small.jpg", bytes(2 * MIB))
    found = collect([honest])
    assert [display.rsplit("/", 1)[1] for display, _ in found.refused] == ["big.jpg"]
    assert [len(data) for _, data in read_items(found.items)] == [2 * MIB]
    # Read without listing first (an Item made by hand): the header's size is still checked.
    [(_, outcome)] = list(read_items([collect_module.Item("big", str(honest), "big.jpg", "zip")]))
    assert isinstance(outcome, ArchiveMemberTooLargeError) and "3,145,728" in str(outcome)


def test_zip_members_with_unbounded_methods_are_refused_unread(tmp_path: Path):
    path = tmp_path / "bz.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.jpg", b"x" * 100, compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("b.jpg", b"y" * 100, compress_type=zipfile.ZIP_LZMA)
        archive.writestr("c.jpg", b"z" * 100, compress_type=zipfile.ZIP_DEFLATED)
    found = collect([path])
    assert [item.member for item in found.items] == ["c.jpg"]
    assert sorted(reason.split(",")[0] for _, reason in found.refused) == [
        "the archive member is compressed with bzip2",
        "the archive member is compressed with lzma",
    ]


def test_a_tar_member_is_read_in_counted_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "photos.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, size in (("a.jpg", 1000), ("b.jpg", 3 * MIB)):
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(bytes(size)))
    found = collect([path])
    assert [len(data) for _, data in read_items(found.items)] == [1000, 3 * MIB]
    # A member cut short by the end of the stream is damaged, not a short photo.
    cut = tmp_path / "cut.tar"
    with tarfile.open(cut, "w") as archive:
        info = tarfile.TarInfo("a.jpg")
        info.size = 100_000
        archive.addfile(info, io.BytesIO(bytes(100_000)))
    cut.write_bytes(cut.read_bytes()[:60_000])
    assert collect([cut]).refused  # listing it already sees the end come early
    # Cut after it was listed (a file changed under the ingest): the member is reported, not lost.
    item = collect_module.Item(str(cut), str(cut), "a.jpg", "tar")
    [(_, outcome)] = list(read_items([item]))
    assert isinstance(outcome, DamagedArchiveMemberError) and "complete archive" in str(outcome)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_the_budget_setting_reaches_ingest_and_search(tmp_path: Path):
    import vultus

    photo = tmp_path / "deep.png"
    photo.write_bytes(_encode(Image.new("I;16", (3000, 3000)), "PNG"))  # about 93 MB to decode
    with vultus.open(tmp_path / "data", max_decode_mb=64) as eng:
        eng.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        summary = eng.ingest([photo], source="test", workers=1)
        assert [reason for _, reason in summary.refused if "VULTUS_MAX_DECODE_MB" in reason], summary.refused
        with pytest.raises(ImageTooLargeError, match="VULTUS_MAX_DECODE_MB"):
            eng.search(photo.read_bytes(), purpose="testing", case="T-1")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_sharing_a_name_are_refused_not_lost_or_mixed_up(tmp_path: Path, kind: str):
    # Found by tests/test_fuzz.py: two tar members named alike gave one answer for two photos.
    path = tmp_path / f"twice.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("a.jpg", b"first")
            archive.writestr("a.jpg", b"second")
            archive.writestr("b.jpg", b"other")
    else:
        with tarfile.open(path, "w") as archive:
            for name, data in (("a.jpg", b"first"), ("a.jpg", b"second"), ("b.jpg", b"other")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    found = collect([path])
    assert [(display.rsplit("/", 1)[1], "2 members under this name" in reason) for display, reason in found.refused] == [
        ("a.jpg", True),
        ("a.jpg", True),
    ]
    assert [(item.member, data) for item, data in read_items(found.items)] == [("b.jpg", b"other")]


def test_a_zip_needing_an_unknown_version_is_refused_not_raised(tmp_path: Path):
    # Found by tests/test_fuzz.py: zipfile raises NotImplementedError for such a header.
    path = tmp_path / "future.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.jpg", b"photo")
    data = bytearray(path.read_bytes())
    central = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]
    struct.pack_into("<H", data, central + 6, 235)  # version needed to extract: 23.5
    path.write_bytes(bytes(data))
    found = collect([path])
    assert found.items == [] and "zip archive cannot be read" in found.refused[0][1]
    [(_, outcome)] = list(read_items([collect_module.Item("a", str(path), "a.jpg", "zip")]))
    assert isinstance(outcome, Exception)


def test_a_colour_mode_vultus_cannot_convert_is_refused_before_decoding():
    from vultus.errors import NotAnImageError

    data = _encode(Image.new("LAB", (20, 20), (50, 10, 10)), "TIFF")
    with pytest.raises(NotAnImageError, match="LAB colour mode"):
        decode_image(data)


def test_location_tags_are_never_kept_when_the_format_cannot_be_re_encoded():
    """A CMYK TIFF with a GPS block cannot become a PNG as it is: its pixels are stored instead."""
    import io

    import numpy as np
    from PIL import Image

    from vultus.errors import MediaError
    from vultus.media import decode_image, strip_location
    from vultus.media.location import GPS_IFD

    exif = Image.Exif()
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 0.0)}
    buffer = io.BytesIO()
    Image.new("CMYK", (64, 48), (10, 200, 30, 0)).save(buffer, format="TIFF", exif=exif.tobytes())
    data = buffer.getvalue()
    rgb = decode_image(data, name="gps.tif").rgb
    clean, fmt = strip_location(data, "TIFF", pixels=rgb)
    assert fmt == "PNG"
    with Image.open(io.BytesIO(clean)) as stored:
        assert not stored.getexif().get_ifd(GPS_IFD) and GPS_IFD not in stored.getexif()
        assert np.array_equal(np.asarray(stored.convert("RGB")), rgb)
    with pytest.raises(MediaError):
        strip_location(data, "TIFF")


@pytest.mark.parametrize("shape", [(4000, 3000), (3001, 4003), (6000, 4000), (999, 5000), (1700, 1200), (500, 700)])
@pytest.mark.parametrize("shrink", [None, 0.61, 0.5, 0.37])
def test_the_detection_copy_is_pillows_resize_without_its_full_size_copy(shape, shrink, data_root: Path):
    """Strip-wise reduction gives exactly Pillow's pixels (random data, and a real group photo)."""
    import numpy as np
    from PIL import Image

    from vultus.faces.pipeline import scaled_for_detection
    from vultus.media import decode_image

    rng = np.random.default_rng(sum(shape))
    group = next(iter(sorted((data_root / "faces" / "_group").glob("*.jpg"))))
    for rgb in (rng.integers(0, 256, (*shape, 3), dtype=np.uint8), decode_image(group.read_bytes()).rgb):
        height, width = rgb.shape[:2]
        # A long side of 1600 scaled by the shape (the old fixed size), or a shrink by under 2
        # (half-size detection: no integer reduction first).
        scale = shrink or 1600 / max(height, width) * (shape[0] / 4000)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        expected = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0 if scale < 1 else None))
        ours = scaled_for_detection(rgb, size)
        banded = size[0] < width and int(width / size[0] / 2) <= 1 and int(height / size[1] / 2) <= 1
        if not banded:
            assert np.array_equal(ours, expected)
        else:
            # Band by band, the filter's weights are computed from each band's offset: the
            # same up to float rounding, a level apart on a few pixels.
            difference = np.abs(ours.astype(np.int16) - expected)
            assert difference.max() <= 1 and (difference > 0).mean() < 0.005


def test_redaction_decodes_under_the_deployments_limits_not_the_defaults():
    """A photo showing an objector is redacted under VULTUS_MAX_PIXELS as raised, or refused."""
    import io

    import numpy as np
    from PIL import Image

    from vultus.errors import ImageTooLargeError
    from vultus.media import redact_regions

    buffer = io.BytesIO()
    Image.fromarray(np.full((12000, 11000), 200, dtype=np.uint8)).save(buffer, format="PNG")  # 132 megapixels
    data = buffer.getvalue()
    with pytest.raises(ImageTooLargeError):
        redact_regions(data, [(10, 10, 50, 50)], max_pixels=120_000_000, max_decode_mb=1024)
    redacted = redact_regions(data, [(100, 100, 300, 300)], max_pixels=200_000_000, max_decode_mb=2048)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # this test's own look at it
        image = Image.open(io.BytesIO(redacted))
    with image:
        assert image.size == (11000, 12000) and image.getpixel((200, 200)) == (0, 0, 0)


def test_a_plain_file_over_the_photo_limit_is_refused_unread(tmp_path: Path):
    from vultus.errors import ImageTooLargeError
    from vultus.media import collect, read_items
    from vultus.media.collect import MAX_MEMBER_BYTES

    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as handle:  # sparse: no disk is spent on it
        handle.truncate(MAX_MEMBER_BYTES + 1)
    [(_, result)] = list(read_items(collect([huge]).items))
    assert isinstance(result, ImageTooLargeError) and "over the" in str(result)
