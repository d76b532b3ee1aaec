"""Media items from what is collected or given: each one's content type found from its bytes,
and the item opened by that type's registered decoder."""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Iterator

from ..errors import NotAnImageError
from .base import HEAD_BYTES, Frame, MediaItem, MediaKind, content_type_of, decoder_for, decoders, format_names
from .collect import Item, Streamed, read_items
from .decode import DEFAULT_MAX_DECODE_MB, DEFAULT_MAX_PIXELS

__all__ = ["first_frame", "no_picture", "open_media", "read_media", "read_photo"]


def read_media(items: Iterable[Item]) -> Iterator[tuple[Item, MediaItem | Exception]]:
    """Yield each collected item as a media item, or with the exception that stopped its reading.

    An item whose decoder reads whole is read into memory and hashed; one whose decoder
    reads from where it is (``whole=False``) is hashed as it streams past and opened from
    its location, which is then all that travels to a worker.
    """
    # Only when such a decoder is registered are the heads read first: photos alone are
    # read exactly as before, one read of each file.
    streamed = _read_through if any(not d.whole for d in decoders()) else None
    for item, got in read_items(items, streamed=streamed):
        if isinstance(got, Exception):
            yield item, got
        elif isinstance(got, Streamed):
            content_type = content_type_of(got.head, item.display)
            yield item, decoder_for(content_type).open(item, name=item.display, content_type=content_type,
                                                       sha256=got.sha256, size=got.size)
        else:
            yield item, open_media(got, name=item.display, sha256=hashlib.sha256(got).hexdigest())


def _read_through(head: bytes, name: str) -> bool:
    return not decoder_for(content_type_of(head, name)).whole


def open_media(data: bytes, *, name: str, content_type: str | None = None, sha256: str | None = None) -> MediaItem:
    """The media item of ``data`` (a probe, an upload, a file read whole), by its content type.

    ``content_type`` is found from the bytes (the name as a hint) unless given. Nothing is
    decoded yet: errors come from :meth:`~vultus.media.base.MediaItem.frames`.
    """
    found = content_type or content_type_of(data[:HEAD_BYTES], name)
    decoder = decoder_for(found)
    return decoder.open(data, name=name, content_type=found or decoder.content_type, sha256=sha256, size=len(data))


def first_frame(item: MediaItem, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
                detection_scale: Callable[[int, int], float] | None = None) -> Frame:
    """The item's first frame (a photo's only one); raises a MediaError when it has none."""
    for frame in item.frames(max_pixels=max_pixels, max_decode_mb=max_decode_mb, detection_scale=detection_scale):
        return frame
    raise no_picture(item)


def no_picture(item: MediaItem) -> NotAnImageError:
    """The error for an item that yields no frame at all."""
    return NotAnImageError(f"{item.name}: the {item.format} file holds no picture that can be read; check it.")


def read_photo(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
               detection_scale: Callable[[int, int], float] | None = None):  # noqa: ANN201 - the frame's pixels
    """The pixels of one photo given as bytes (a probe, a stored copy), decoded as they are asked for.

    What searches, rights requests, calibration and re-embedding read: one still picture.
    An item of another kind (a video) is refused with a :class:`~vultus.errors.NotAnImageError`
    that says to take a still of it.
    """
    item = open_media(data, name=name)
    if item.kind != MediaKind.PHOTO:
        raise NotAnImageError(
            f"{name}: this is a {decoder_for(item.content_type).label} {item.kind}, and a photo is needed here "
            f"({format_names(MediaKind.PHOTO)}); take a still of the face from it and use that."
        )
    return first_frame(item, max_pixels=max_pixels, max_decode_mb=max_decode_mb, detection_scale=detection_scale).pixels

