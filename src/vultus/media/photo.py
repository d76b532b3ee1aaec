"""Photos as media items: JPEG, PNG, WebP, BMP, GIF and TIFF, registered by content type.

A photo is read whole and its bytes go to the worker that decodes it: decoding needs every
byte, and the bytes are what is kept (location tags removed). It yields one frame,
:data:`~vultus.media.base.PHOTO_FRAME`, whose pixels are a :class:`PhotoPixels` (a JPEG's
draft decode for detection, the full resolution only once a face is found).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator

from .base import PHOTO_FRAME, UNRECOGNISED, Frame, MediaKind, register_decoder
from .decode import DEFAULT_MAX_DECODE_MB, DEFAULT_MAX_PIXELS, PhotoPixels, sniff_format
from .location import strip_location

__all__ = ["PHOTO_TYPES", "PhotoItem", "open_photo"]

#: (content type, format as sniffed, label, suffixes, aliases) of each photo format read.
PHOTO_TYPES: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("image/jpeg", "JPEG", "JPEG", (".jpg", ".jpeg", ".jpe"), ()),
    ("image/png", "PNG", "PNG", (".png",), ()),
    ("image/webp", "WEBP", "WebP", (".webp",), ()),
    ("image/bmp", "BMP", "BMP", (".bmp",), ("image/x-ms-bmp",)),
    ("image/gif", "GIF", "GIF", (".gif",), ()),
    ("image/tiff", "TIFF", "TIFF", (".tif", ".tiff"), ()),
)


class PhotoItem:
    """A photo held whole: its bytes, its name for messages and its content type.

    It pickles as its bytes and a few strings, which is what an ingest worker needs of it.
    """

    kind = MediaKind.PHOTO
    __slots__ = ("data", "name", "content_type", "_sha256")

    def __init__(self, data: bytes, *, name: str, content_type: str, sha256: str | None = None):
        self.data, self.name, self.content_type, self._sha256 = data, name, content_type, sha256

    def __getstate__(self) -> tuple:
        return self.data, self.name, self.content_type, self._sha256

    def __setstate__(self, state: tuple) -> None:
        self.data, self.name, self.content_type, self._sha256 = state

    def __repr__(self) -> str:
        return f"PhotoItem({self.name!r}, {self.content_type}, {len(self.data):,} bytes)"

    @property
    def sha256(self) -> str:
        if self._sha256 is None:  # a probe's is only computed if it is asked for
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def format(self) -> str:
        # The signatures are those of the plugins Pillow opens photos with, so what decodes
        # is always named here, as its decode would name it (an MPO is a JPEG).
        return sniff_format(self.data) or "UNKNOWN"

    def frames(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
               detection_scale: Callable[[int, int], float] | None = None) -> Iterator[Frame]:
        """The photo's one frame; its header is read now, its pixels when they are asked for."""
        yield Frame(PHOTO_FRAME, None, PhotoPixels(self.data, name=self.name, max_pixels=max_pixels,
                                                  max_decode_mb=max_decode_mb, detection_scale=detection_scale))

    def still(self, frame: Frame) -> tuple[bytes | None, str]:
        """The photo without location tags (None when it has none to remove), and its format."""
        copy, copy_format = strip_location(self.data, self.format, pixels=frame.rgb)
        return (None if copy is self.data else copy), copy_format


def open_photo(source: bytes, *, name: str, content_type: str, sha256: str | None = None,
               size: int | None = None) -> PhotoItem:
    """The photo item of ``source``, its bytes (nothing is decoded yet)."""
    if not isinstance(source, (bytes, bytearray)):
        raise TypeError("a photo is opened from its bytes (its decoder reads whole)")
    return PhotoItem(bytes(source), name=name, content_type=content_type, sha256=sha256)


def _sniffer(fmt: str) -> Callable[[bytes], bool]:
    def sniff(head: bytes) -> bool:
        return sniff_format(head) == fmt

    sniff.__qualname__ = f"sniff_{fmt.lower()}"
    return sniff


for _type, _format, _label, _suffixes, _aliases in PHOTO_TYPES:
    register_decoder(_type, kind=MediaKind.PHOTO, label=_label, suffixes=_suffixes, sniff=_sniffer(_format),
                     open=open_photo, aliases=_aliases)
# What nothing recognises is tried as a photo: its decode says what the file is (plain text,
# a video, a HEIC photo, damaged data) and what to do about it.
register_decoder(UNRECOGNISED, kind=MediaKind.PHOTO, label="unrecognised", suffixes=(), sniff=None, open=open_photo)
