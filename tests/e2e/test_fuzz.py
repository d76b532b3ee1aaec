"""Fuzzing the decoder and the archive reader: whatever the bytes, only the documented errors.

decode_image may only return an 8-bit RGB image or raise a MediaError; collect may only
list refusals as (path, reason); read_items may only yield bytes or an exception per item.
Example counts are bounded (no deadline: these are not timed), and the limits are small so
that a mutated header claiming a huge image is refused rather than decoded.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vultus.errors import MediaError
from vultus.media import collect, decode_image, read_items

# Damaged input is the point here: zipfile (repeated member names) and Pillow (corrupt
# EXIF, tags past the end) warn on it, and only an exception would be a finding.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LIMITS = {"max_pixels": 4_000_000, "max_decode_mb": 128}
#: Examples per fuzz test; VULTUS_FUZZ_EXAMPLES raises it for a longer hunt by hand.
EXAMPLES = int(os.environ.get("VULTUS_FUZZ_EXAMPLES") or 150)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _generated_seeds() -> list[bytes]:
    """Small images in the modes and encodings whose decoders differ most."""
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [rgb.convert("P"), Image.new("P", (32, 24), 3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], transparency=0)
    return [
        _encode(Image.fromarray(rng.integers(0, 65535, (24, 32), dtype=np.uint16)), "PNG"),
        _encode(Image.fromarray(rng.random((24, 32), dtype=np.float32), "F"), "TIFF", compression="tiff_deflate"),
        _encode(rgb.convert("CMYK"), "JPEG"),
        _encode(rgb, "JPEG", progressive=True, exif=exif.tobytes()),
        _encode(rgb.convert("RGBA"), "WEBP", lossless=True),
        _encode(rgb.convert("P"), "BMP"),
        _encode(rgb.convert("LA"), "PNG"),
        _encode(rgb, "TIFF", compression="jpeg"),
        _encode(rgb.convert("1"), "TIFF", compression="group4"),
        gif.getvalue(),
    ]


@pytest.fixture(scope="module")
def seeds(faces_root: Path) -> list[bytes]:
    real = sorted((faces_root / "_formats").iterdir()) + [
        faces_root / "_variants" / "facerec_obama_small.jpg",
        faces_root / "_variants" / "facerec_obama_240p.jpg",
    ]
    return [p.read_bytes() for p in real] + _generated_seeds()


_edit = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]),
    st.floats(0, 1),  # where, as a fraction of the file (mostly the header: see below)
    st.binary(min_size=1, max_size=16),
)


def _mutate(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, payload in edits:
        if not out:
            break
        # Half the edits land in the first 512 bytes, where headers and tables are.
        position = int(where * min(len(out), 512)) if where < 0.5 else int(where * len(out))
        position = min(position, len(out) - 1)
        if kind == "flip":
            out[position] ^= payload[0] or 0xFF
        elif kind == "insert":
            out[position:position] = payload
        elif kind == "delete":
            del out[position : position + len(payload) * 8]
        elif kind == "truncate":
            del out[position:]
        else:
            out[position : position + len(payload)] = payload
    return bytes(out)


def _decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, name="fuzzed", **LIMITS)
    except MediaError as exc:
        assert str(exc).startswith("fuzzed"), exc
        return
    assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3
    assert image.rgb.shape[0] * image.rgb.shape[1] <= LIMITS["max_pixels"]


@FUZZ
@given(seed=st.integers(0, 1000), edits=st.lists(_edit, min_size=1, max_size=4))
def test_mutated_photos_decode_or_raise_a_media_error(seeds: list[bytes], seed: int, edits):
    _decodes_or_refuses(_mutate(seeds[seed % len(seeds)], edits))


_SIGNATURES = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 "]


@FUZZ
@given(prefix=st.sampled_from(_SIGNATURES), body=st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_a_media_error(prefix: bytes, body: bytes):
    _decodes_or_refuses(prefix + body)


# Archives ------------------------------------------------------------------------------

_member = st.tuples(
    st.sampled_from(["a.jpg", "b.png", "c/d.tif", "notes.txt", "e.gif", "../up.jpg", "f.JPG"]),
    st.binary(max_size=300),
)


def _zip(members, method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def _tar(members, mode: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


_KINDS = {
    "zip": ("x.zip", lambda m: _zip(m, zipfile.ZIP_DEFLATED)),
    "zip-stored": ("x.zip", lambda m: _zip(m, zipfile.ZIP_STORED)),
    "tar": ("x.tar", lambda m: _tar(m, "w")),
    "tar.gz": ("x.tar.gz", lambda m: _tar(m, "w:gz")),
    "tar.bz2": ("x.tar.bz2", lambda m: _tar(m, "w:bz2")),
    "tar.xz": ("x.tar.xz", lambda m: _tar(m, "w:xz")),
}


def _read_all(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        found = collect([path])
        assert all(isinstance(reason, str) and reason for _, reason in found.refused)
        outcomes = list(read_items(found.items))
        assert len(outcomes) == len(found.items)  # every photo listed is answered for
        for item, outcome in outcomes:
            assert isinstance(outcome, (bytes, Exception)), (item, outcome)
            if isinstance(outcome, bytes):
                _decodes_or_refuses(outcome)  # what comes out of an archive goes on to decode


@FUZZ
@given(kind=st.sampled_from(sorted(_KINDS)), members=st.lists(_member, max_size=4), edits=st.lists(_edit, max_size=4))
def test_mutated_archives_are_read_or_refused_never_raise(kind: str, members, edits):
    name, build = _KINDS[kind]
    _read_all(name, _mutate(build(members), edits))


@FUZZ
@given(kind=st.sampled_from(sorted(_KINDS)), body=st.binary(max_size=600))
def test_arbitrary_bytes_named_as_archives_are_refused_never_raise(kind: str, body: bytes):
    name, build = _KINDS[kind]
    prefix = build([])[:8]  # the right magic, then anything
    _read_all(name, prefix + body)


def test_a_photo_inside_an_archive_survives_the_round_trip(seeds: list[bytes]):
    for kind, (name, build) in sorted(_KINDS.items()):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(build([("p.jpg", seeds[0])]))
            [(_, data)] = list(read_items(collect([path]).items))
            assert data == seeds[0], kind
