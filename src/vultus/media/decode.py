"""Turn the bytes of a photo into an upright 8-bit RGB array, or say exactly why not."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import (
    CorruptImageError,
    EmptyFileError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)

__all__ = ["DecodedImage", "decode_image", "sniff_format", "SUPPORTED_FORMATS"]

#: Pillow format names Vultus accepts, with the signature bytes that announce each.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image (``rgb`` is height x width x 3, uint8) and what it was."""

    rgb: np.ndarray
    format: str

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


def decode_image(data: bytes, *, name: str = "image", max_pixels: int = 120_000_000) -> DecodedImage:
    """Decode ``data`` into an upright RGB image.

    EXIF orientation is applied; greyscale, palette, alpha, CMYK and 16-bit images are
    converted to 8-bit RGB (alpha is composited on white); an animated GIF gives its first
    frame. Raises a specific :class:`~vultus.errors.MediaError` subclass for empty,
    non-image, corrupt, truncated and oversized files, naming ``name`` in the message.
    """
    if not data:
        raise EmptyFileError(f"{name}: the file is empty (0 bytes); there is no photo to read.")
    announced = sniff_format(data)
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; we enforce ours before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image.size, max_pixels, name)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise ImageTooLargeError(f"{name}: {exc}") from exc
        if announced is None:
            raise NotAnImageError(
                f"{name}: not an image ({_describe_content(data)}). Supported formats are "
                "JPEG, PNG, WebP, BMP, GIF and TIFF."
            ) from exc
        raise CorruptImageError(
            f"{name}: the file starts like a {announced} image but its data is damaged and "
            "cannot be decoded; re-export or re-copy it from the original."
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
    except (ValueError, SyntaxError, EOFError) as exc:
        # Pillow's plugins raise these for malformed headers and chunk tables.
        raise CorruptImageError(
            f"{name}: the {announced or 'image'} data is malformed ({exc}); re-export it."
        ) from exc
    fmt = image.format or announced or "UNKNOWN"
    if fmt not in SUPPORTED_FORMATS:
        raise NotAnImageError(
            f"{name}: {fmt} images are not supported; convert it to JPEG, PNG, WebP, BMP, "
            "GIF or TIFF."
        )
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        upright = image
    return DecodedImage(rgb=_to_rgb8(upright), format="JPEG" if fmt == "MPO" else fmt)


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


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an 8-bit, three-channel, C-contiguous array."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit and float greyscale: scale the full range down instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _describe_content(data: bytes) -> str:
    head = data[:64]
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos or MP4/MOV video
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "mif1", "msf1", "avif"):
            return f"a {brand.upper()} photo, which Vultus cannot read yet; convert it to JPEG or PNG"
        return "a video file; Vultus indexes photos only, so extract still frames first"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"{len(data)} bytes of plain text"
    return f"{len(data)} bytes in no format Vultus recognises"
