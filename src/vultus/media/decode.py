"""Turn the bytes of a photo into an upright 8-bit RGB array, or say exactly why not."""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)
from .pixels import CONVERTIBLE_MODES, DecodeCost, decode_cost, orientation_of, to_upright_rgb8

__all__ = [
    "DecodedImage",
    "decode_image",
    "upright_size",
    "PhotoPixels",
    "sniff_format",
    "SUPPORTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_DECODE_MB",
]

#: The pixel limit when a caller gives none (the default of VULTUS_MAX_PIXELS).
DEFAULT_MAX_PIXELS = 120_000_000
#: The decode memory budget when a caller gives none (the default of VULTUS_MAX_DECODE_MB):
#: room for an 8-bit RGB photo at the default pixel limit (about 920 MB).
DEFAULT_MAX_DECODE_MB = 1024
_MB = 1024 * 1024

#: Pillow format names Vultus accepts, with the signature bytes that announce each.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")

#: The Pillow plugins tried on a file: the supported formats' (MPO opens through JPEG's).
_OPENERS = tuple(f for f in SUPPORTED_FORMATS if f != "MPO")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    # Every TIFF byte order and BigTIFF, as Pillow's TIFF plugin opens them.
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"MM*\x00", "TIFF"),
    (b"II\x00*", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"II+\x00", "TIFF"),
)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image (``rgb`` is height x width x 3, uint8) and what it was."""

    rgb: np.ndarray
    format: str
    #: (width, height) of the full image when ``rgb`` is a reduced (draft) decode of it.
    full_size: tuple[int, int] | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sniff_format(data: bytes) -> str | None:
    """Name the image format announced by the first bytes, or None if none is."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def decode_image(
    data: bytes,
    *,
    name: str = "image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
    draft_scale: float | None = None,
) -> DecodedImage:
    """Decode ``data`` into an upright RGB image.

    EXIF orientation is applied; greyscale, palette, alpha, CMYK and 16-bit images are
    converted to 8-bit RGB (alpha is composited on white); an animated GIF gives its first
    frame. Before any pixel is decoded, the header's size is checked against ``max_pixels``
    and the decode's estimated peak memory (:func:`~vultus.media.pixels.decode_cost`)
    against ``max_decode_mb``; decodes running at once in one process share that budget
    (one waits for another to finish rather than both exceeding it). Raises a specific
    :class:`~vultus.errors.MediaError` subclass for empty, non-image, corrupt, truncated
    and oversized files, naming ``name`` in the message.

    With ``draft_scale`` (under 1), a JPEG is decoded at the smallest of libjpeg's DCT
    scales (1/2, 1/4, 1/8) that is still at least ``draft_scale`` of its size: several
    times faster than a full decode, for a copy that is to be scaled down anyway.
    ``full_size`` then gives the size of the full image. Other formats decode in full.
    """
    announced = _announced(data, name, max_pixels)
    with _media_errors(name, announced, data, max_pixels):
        image = _open_checked(data, name, announced, max_pixels)
        fmt = image.format or announced or "UNKNOWN"
        full_size = _upright(image.size, orientation_of(image))
        if draft_scale is not None and draft_scale < 1 and fmt in ("JPEG", "MPO"):
            width, height = image.size
            image.draft(image.mode, (math.ceil(width * draft_scale), math.ceil(height * draft_scale)))
        cost = decode_cost(image)
        _check_budget(cost, image, max_decode_mb, name)
        with _BUDGET.reserve(cost.total, max_decode_mb * _MB):
            image.load()
            if image.mode not in CONVERTIBLE_MODES or image.size[0] * image.size[1] > max_pixels:
                raise CorruptImageError(
                    f"{name}: the {fmt} data decodes to a {image.mode} image of {image.size[0]}x"
                    f"{image.size[1]}, not what its header says; re-export it from the original."
                )
            orientation = orientation_of(image)
            rgb = to_upright_rgb8(image, orientation)
            image.close()
    return DecodedImage(rgb=rgb, format="JPEG" if fmt == "MPO" else fmt, full_size=full_size)


def upright_size(data: bytes, *, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The (width, height) ``data`` decodes to, EXIF orientation applied, from its header alone.

    Raises the same errors as :func:`decode_image` for what the header shows (empty, not an
    image, an unsupported mode, over ``max_pixels``); damage further in shows only on decode.
    """
    announced = _announced(data, name, max_pixels)
    with _media_errors(name, announced, data, max_pixels):
        image = _open_checked(data, name, announced, max_pixels)
        return _upright(image.size, orientation_of(image))


def _announced(data: bytes, name: str, max_pixels: int) -> str | None:
    """The format ``data`` announces, once it is known not to be empty and Vultus's limit governs."""
    if not data:
        raise EmptyFileError(f"{name}: the file is empty (0 bytes); there is no photo to read.")
    _let_vultus_limit_govern(max_pixels)
    return sniff_format(data)


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _open_checked(data: bytes, name: str, announced: str | None, max_pixels: int) -> Image.Image:
    """The opened image (its first frame), its size and mode checked; nothing is decoded."""
    image = _open(data, name, announced)
    _check_size(image.size, max_pixels, name)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    _check_size(image.size, max_pixels, name)
    if image.mode not in CONVERTIBLE_MODES:
        raise NotAnImageError(
            f"{name}: the {image.format or announced or 'UNKNOWN'} image uses the {image.mode} colour mode, "
            "which Vultus cannot convert; re-export it as an 8-bit RGB JPEG or PNG."
        )
    return image


@contextmanager
def _media_errors(name: str, announced: str | None, data: bytes, max_pixels: int) -> Iterator[None]:
    """Pillow's and the codecs' exceptions, as the MediaError that says what to do."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; we enforce ours before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{name}: the image is over the limit of {max_pixels:,} pixels (a guard against "
            "decompression bombs). Scale the photo down, or raise VULTUS_MAX_PIXELS if it is genuine."
        ) from exc
    except OSError as exc:
        message = str(exc)
        if "truncated" in message.lower() or "premature end" in message.lower():
            raise TruncatedImageError(
                f"{name}: the {announced or 'image'} data ends early (the file is truncated, "
                f"{len(data)} bytes); copy the complete file again."
            ) from exc
        raise CorruptImageError(
            f"{name}: the {announced or 'image'} data cannot be decoded ({message}); "
            "re-export or re-copy it from the original."
        ) from exc
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, struct.error,
            ZeroDivisionError, OverflowError) as exc:
        # Pillow's plugins raise these for malformed headers, chunk tables and tags.
        raise CorruptImageError(
            f"{name}: the {announced or 'image'} data is malformed ({exc}); re-export it."
        ) from exc


def _open(data: bytes, name: str, announced: str | None) -> Image.Image:
    """Open ``data`` with the plugins of the supported formats only (nothing is decoded)."""
    try:
        return Image.open(io.BytesIO(data), formats=_OPENERS)
    except UnidentifiedImageError as exc:
        if announced is not None:
            raise CorruptImageError(
                f"{name}: the file starts like a {announced} image but its data is damaged and "
                "cannot be decoded; re-export or re-copy it from the original."
            ) from exc
        other = _other_format(data)
        if other is not None:
            raise NotAnImageError(
                f"{name}: {other} images are not supported; convert it to JPEG, PNG, WebP, BMP, "
                "GIF or TIFF."
            ) from exc
        raise NotAnImageError(
            f"{name}: not an image ({_describe_content(data)}). Supported formats are "
            "JPEG, PNG, WebP, BMP, GIF and TIFF photos, and MP4, MOV, M4V, MKV, WebM and AVI videos."
        ) from exc


def _other_format(data: bytes) -> str | None:
    """The name of an unsupported format Pillow recognises in ``data``, for the message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:  # header only: nothing is decoded
                return image.format
    except Exception:  # noqa: BLE001 - only a name for the message is at stake
        return None


def _let_vultus_limit_govern(max_pixels: int) -> None:
    """Raise Pillow's own bomb limit, if needed, so that Vultus's ``max_pixels`` decides.

    Pillow refuses in ``Image.open`` above twice ``Image.MAX_IMAGE_PIXELS``, before Vultus
    can look at the header. The limit is only ever raised: every decode checks its own
    ``max_pixels`` before loading, so a higher Pillow limit admits nothing unchecked.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and 2 * limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = -(-max_pixels // 2)


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{name}: the header says the image is {width}x{height} pixels.")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a guard against decompression bombs). Scale the photo down, or "
            "raise VULTUS_MAX_PIXELS if it is genuine."
        )


def _check_budget(cost: DecodeCost, image: Image.Image, max_decode_mb: int, name: str) -> None:
    if cost.total <= max_decode_mb * _MB:
        return
    width, height = image.size
    # Only a float, 16- or 32-bit image is made cheaper by converting it to 8 bits.
    advice = "Scale it down" if image.mode in ("1", "L", "P", "RGB") else "Convert it to 8-bit RGB (JPEG or 8-bit PNG) or scale it down"
    raise ImageTooLargeError(
        f"{name}: decoding this {width}x{height} {image.mode} {image.format or ''} image would take "
        f"about {-(-cost.total // _MB):,} MB of memory ({cost.describe()}), over the "
        f"{max_decode_mb:,} MB budget. {advice}; or, if the machine has the memory, raise "
        "VULTUS_MAX_DECODE_MB."
    )


class _SharedBudget:
    """Memory reserved by the decodes running in this process, so that together they fit.

    A decode waits until its estimate fits beside those already running; one that is alone
    always runs (its estimate was checked against the budget before it got here).
    """

    def __init__(self) -> None:
        self._in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, size: int, budget: int) -> Iterator[None]:
        with self._changed:
            while self._in_use and self._in_use + size > budget:
                self._changed.wait()
            self._in_use += size
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= size
                self._changed.notify_all()


_BUDGET = _SharedBudget()


def _describe_content(data: bytes) -> str:
    head = data[:64]
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos or MP4/MOV video
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "mif1", "msf1", "avif"):
            return f"a {brand.upper()} photo, which Vultus cannot read yet; convert it to JPEG or PNG"
        return "an ISO media file of a kind Vultus does not read (not MP4, MOV or M4V video); convert it to MP4"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"{len(data)} bytes of plain text"
    return f"{len(data)} bytes in no format Vultus recognises"


class PhotoPixels:
    """A photo's pixels for face analysis, each decoded only when needed.

    ``reduced`` is a smaller upright copy of the whole photo to detect on (a JPEG's draft
    decode, when ``detection_scale(width, height)`` says detection runs at half size or less;
    without it, never), else None; ``rgb`` is the photo at
    full resolution, for the face chips, decoded the first time it is asked for, so a photo
    in which no face is found is never decoded in full. Errors are
    :func:`decode_image`'s, raised by whichever decode meets them.
    """

    def __init__(self, data: bytes, *, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
                 detection_scale: Callable[[int, int], float] | None = None):
        self._data, self._name, self._limits = data, name, (max_pixels, max_decode_mb)
        self.width, self.height = upright_size(data, name=name, max_pixels=max_pixels)
        self.reduced: np.ndarray | None = None
        self._full: DecodedImage | None = None
        self._format = sniff_format(data)
        scale = detection_scale(self.width, self.height) if detection_scale is not None else 1.0
        if scale <= 0.5 and self._format == "JPEG":
            small = decode_image(data, name=name, max_pixels=max_pixels, max_decode_mb=max_decode_mb,
                                 draft_scale=scale)
            if small.width < self.width:
                self.reduced, self._format = small.rgb, small.format
            else:
                self._full = small

    @property
    def decoded(self) -> DecodedImage:
        """The full-resolution decode (made now if it was not yet)."""
        if self._full is None:
            max_pixels, max_decode_mb = self._limits
            self._full = decode_image(self._data, name=self._name, max_pixels=max_pixels, max_decode_mb=max_decode_mb)
        return self._full

    @property
    def rgb(self) -> np.ndarray:
        return self.decoded.rgb

    @property
    def format(self) -> str:
        """The format's name; what the decode reports once there has been one."""
        if self._full is not None:
            return self._full.format
        return self._format or self.decoded.format
