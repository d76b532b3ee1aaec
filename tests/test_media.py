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
