"""Media decoding: formats, orientation, modes, and a specific error for each bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from vultus.media import collect, decode_image, sniff_format


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_all_formats_decode_to_the_same_pixels(faces_root: Path):
    decoded = {p.suffix: decode_image(p.read_bytes(), name=p.name) for p in sorted((faces_root / "_formats").iterdir())}
    assert set(decoded) == {".bmp", ".gif", ".jpeg", ".png", ".tiff", ".webp"}
    reference = decoded[".png"].rgb.astype(np.int16)
    for suffix, image in decoded.items():
        assert image.rgb.shape == reference.shape, suffix
        assert image.rgb.dtype == np.uint8
        # Lossy formats (JPEG, WebP, the 256-colour GIF) differ a little, never wholesale.
        assert np.abs(image.rgb.astype(np.int16) - reference).mean() < 12, suffix


def test_invalid_files_each_get_a_specific_error(faces_root: Path):
    invalid = faces_root / "_invalid"
    with pytest.raises(NotAnImageError, match="plain text"):
        decode_image((invalid / "empty.png").read_bytes(), name="empty.png")
    with pytest.raises(CorruptImageError, match="PNG"):
        decode_image((invalid / "corrupted.png").read_bytes(), name="corrupted.png")
    with pytest.raises(TruncatedImageError, match="truncated"):
        decode_image((invalid / "truncated.jpg").read_bytes(), name="truncated.jpg")
    with pytest.raises(EmptyFileError):
        decode_image(b"", name="zero.jpg")


def test_rgba_is_composited_to_rgb(faces_root: Path):
    image = decode_image((faces_root / "_variants" / "facerec_obama_32bit.png").read_bytes())
    assert image.rgb.ndim == 3 and image.rgb.shape[2] == 3


def test_exif_orientation_is_applied():
    tall = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _encode(tall, "JPEG", exif=exif.tobytes())
    image = decode_image(data)
    assert (image.width, image.height) == (20, 40)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.full((8, 8), 32768, dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    image = decode_image(data)
    assert image.rgb.shape == (8, 8, 3)
    assert 120 <= int(image.rgb[0, 0, 0]) <= 135  # half of the range, not 255


def test_cmyk_and_greyscale_convert_to_rgb():
    cmyk = decode_image(_encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.rgb.shape == (10, 10, 3)
    assert cmyk.rgb[5, 5, 0] > 200 and cmyk.rgb[5, 5, 1] < 60  # red stays red
    grey = decode_image(_encode(Image.new("L", (10, 10), 77), "PNG"))
    assert grey.rgb.shape == (10, 10, 3) and int(grey.rgb[0, 0, 1]) == 77


def test_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    image = decode_image(out.getvalue())
    assert image.rgb[0, 0, 0] > 200 and image.rgb[0, 0, 2] < 50


def test_pixel_limit_refuses_decompression_bombs():
    data = _encode(Image.new("RGB", (1000, 1000)), "PNG")
    with pytest.raises(ImageTooLargeError, match="VULTUS_MAX_PIXELS"):
        decode_image(data, max_pixels=500_000)


def test_sniff_format_names_the_signature():
    assert sniff_format(b"\xff\xd8\xff\xe0rest") == "JPEG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"hello") is None


def test_collect_walks_folders_and_archives(tmp_path: Path, faces_root: Path):
    import tarfile
    import zipfile

    einstein = (faces_root / "_formats" / "einstein.jpeg").read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(einstein)
    (tmp_path / "notes.txt").write_text("not a photo")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        archive.writestr("in/zip.jpg", einstein)
        archive.writestr("readme.md", "x")
    with tarfile.open(tmp_path / "photos.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "sub" / "a.jpg", arcname="t/tar.jpg")
    found = collect([tmp_path])
    names = sorted(Path(i.display.split("!/")[-1]).name for i in found.items)
    assert names == ["a.jpg", "tar.jpg", "zip.jpg"]
    assert all(item.read() == einstein for item in found.items)
    assert any(p.endswith("notes.txt") for p in found.ignored)
    assert any(p.endswith("readme.md") for p in found.ignored)


def _with_gps(image: Image.Image, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    exif[0x8769] = {0x9003: "2024:01:01 10:00:00"}
    return _encode(image, fmt, exif=exif.tobytes())


def _gps(data: bytes) -> dict:
    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825))


def test_location_is_stripped_from_jpeg_losslessly(faces_root: Path):
    from vultus.media import strip_location

    photo = Image.open(faces_root / "_formats" / "einstein.png").convert("RGB")
    data = _with_gps(photo, "JPEG")
    assert _gps(data), "the test photo must carry GPS tags"
    clean, fmt = strip_location(data, "JPEG")
    assert fmt == "JPEG" and _gps(clean) == {}
    exif = Image.open(io.BytesIO(clean)).getexif()
    assert exif[0x010F] == "CameraMaker"  # other tags are kept
    assert exif.get_ifd(0x8769)[0x9003] == "2024:01:01 10:00:00"
    # The compressed image data is untouched, so the pixels are identical.
    assert np.array_equal(decode_image(clean).rgb, decode_image(data).rgb)
    assert clean.endswith(data[data.index(b"\xff\xda"):])


def test_location_is_stripped_from_other_formats_and_xmp():
    from vultus.media import strip_location

    image = Image.new("RGB", (32, 32), (90, 30, 200))
    clean, fmt = strip_location(_with_gps(image, "PNG"), "PNG")
    assert fmt == "PNG" and _gps(clean) == {}
    assert np.array_equal(decode_image(clean).rgb, np.asarray(image))
    plain = _encode(image, "JPEG")
    assert strip_location(plain, "JPEG") == (plain, "JPEG")  # nothing to strip: same bytes
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><exif:GPSLatitude>51,30N</exif:GPSLatitude></x:xmpmeta>"
    segment = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    with_xmp = plain[:2] + segment + plain[2:]
    clean, _ = strip_location(with_xmp, "JPEG")
    assert b"GPSLatitude" not in clean and clean == plain


def test_read_items_reads_each_archive_once_in_order(tmp_path: Path):
    import tarfile

    from vultus.media import read_items

    members = {f"p{i}.jpg": bytes([i]) * (i + 1) for i in range(5)}
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    found = collect([tmp_path / "a.tar.gz"])
    got = {item.member: data for item, data in read_items(found.items)}
    assert got == members
    # A damaged archive gives each of its photos an error instead of stopping the batch.
    (tmp_path / "a.tar.gz").write_bytes((tmp_path / "a.tar.gz").read_bytes()[:40])
    results = list(read_items(found.items))
    assert len(results) == 5 and all(isinstance(data, Exception) for _, data in results)


def test_videos_and_heic_are_named_as_such():
    with pytest.raises(NotAnImageError, match="video"):
        decode_image(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40, name="clip.mp4")
    with pytest.raises(NotAnImageError, match="HEIC"):
        decode_image(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, name="IMG_0001.HEIC")
