"""The media seam: what an ingested thing is (a :class:`MediaItem` yielding :class:`Frame` s) and
the registry of decoders by content type.

A decoder is registered by its own module with :func:`register_decoder`; this module imports
none (``vultus.media.photo`` registers the photo formats, imported by ``vultus.media``). A
file's content type is found from its first bytes (:func:`content_type_of`), its name being only
a hint; what a folder walk or an upload takes is what the registered decoders declare
(:func:`accepted_suffixes`, :func:`content_types`), never a list kept elsewhere.

A decoder either reads its items whole (``whole=True``: a photo needs every byte, so its bytes
are read once and shipped to the worker that decodes it), or from where they are
(``whole=False``: a video is hashed as it streams past and only its location, a path or an
archive member, travels to the worker, which reads the frames it needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "HEAD_BYTES",
    "PHOTO_FRAME",
    "UNRECOGNISED",
    "Decoder",
    "Frame",
    "MediaItem",
    "MediaKind",
    "accepted_suffixes",
    "content_type_of",
    "content_types",
    "decoder_for",
    "decoders",
    "ends_with_accepted",
    "format_names",
    "register_decoder",
    "suffix_for",
    "unregister_decoder",
]

#: Bytes of a file's start handed to the sniffers (ISO media boxes and EBML headers fit).
HEAD_BYTES = 4096
#: The key of a photo's one frame: the item itself.
PHOTO_FRAME = ""
#: The content type of what no sniffer recognises and no suffix names; its decoder (the
#: photo one) is the one that says what the file is instead.
UNRECOGNISED = "application/octet-stream"


class MediaKind(StrEnum):
    """What an item is to a person: one still picture, or moving pictures with times."""

    PHOTO = "photo"
    VIDEO = "video"


@dataclass(frozen=True)
class Frame:
    """One picture of an item, for face analysis.

    ``key`` names the frame within its item (:data:`PHOTO_FRAME` for a photo, ``"t=12.500"``
    for a video's frame at 12.5 s); ``time`` is its time in seconds (None for a photo).
    ``pixels`` is an upright RGB array (height x width x 3, uint8) or a picture decoded as
    needed (:class:`~vultus.media.PhotoPixels`, whose ``reduced`` copy detection may use).
    """

    key: str
    time: float | None
    pixels: Any

    @property
    def rgb(self) -> "np.ndarray":
        """The frame at full resolution (decoded now if it was not yet)."""
        return self.pixels if hasattr(self.pixels, "shape") else self.pixels.rgb

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), upright; known without a full decode."""
        if hasattr(self.pixels, "shape"):
            return int(self.pixels.shape[1]), int(self.pixels.shape[0])
        return int(self.pixels.width), int(self.pixels.height)


class MediaItem(Protocol):
    """A thing ingested or searched with: a photo (one frame) or a video (frames with times).

    An item is cheap to pickle: it holds its bytes (``data``) when its decoder reads it whole,
    else only where it is, and it is what an ingest worker receives. Nothing is decoded
    until :meth:`frames` is iterated, in the worker.
    """

    #: The name used in messages (a path, ``archive!/member``, or ``probe``).
    name: str
    content_type: str
    kind: MediaKind

    @property
    def sha256(self) -> str:
        """The item's identity: the sha256 of its bytes, as the store records it."""
        ...

    @property
    def size(self) -> int:
        """Its size in bytes."""
        ...

    @property
    def data(self) -> bytes | None:
        """Its bytes, when they are held (an item read whole), else None."""
        ...

    @property
    def format(self) -> str:
        """The name of its format for the store (``JPEG``, ``PNG``, ``MP4``...)."""
        ...

    def frames(self, *, max_pixels: int, max_decode_mb: int,
               detection_scale: Callable[[int, int], float] | None = None) -> Iterator[Frame]:
        """Its frames in order, each decoded as it is reached, under the deployment's limits.

        ``detection_scale(width, height)`` is the scale detection will run at, so that a
        decoder can hand a reduced copy for it. Raises a :class:`~vultus.errors.MediaError`
        for what cannot be decoded.
        """
        ...

    def still(self, frame: Frame) -> tuple[bytes | None, str]:
        """The picture kept of ``frame`` (shown with results, re-embedded from on a change of
        model) and its format; None for the item's own bytes, kept as they are."""
        ...


#: ``open(source, name=..., content_type=..., sha256=..., size=...)``: the item of a source,
#: which is the item's bytes (always, for a decoder that reads whole) or its location.
Opener = Callable[..., MediaItem]


@dataclass(frozen=True)
class Decoder:
    """A registered content type: how it is recognised, which names it goes by, how it opens."""

    content_type: str
    kind: MediaKind
    #: The format's name in messages (``JPEG``, ``WebP``, ``MP4``).
    label: str
    #: Name endings taken in folders and archives, the first one given to uploads without one.
    suffixes: tuple[str, ...]
    #: ``sniff(head)``: whether a file's first :data:`HEAD_BYTES` are of this type (None:
    #: never recognised by content, only used for what nothing else recognises).
    sniff: Callable[[bytes], bool] | None
    open: Opener
    #: Its items are read whole and their bytes shipped to the worker (False: their location).
    whole: bool = True
    #: Other names of the content type that uploads may be sent as (``image/x-ms-bmp``).
    aliases: tuple[str, ...] = ()


_DECODERS: dict[str, Decoder] = {}


def register_decoder(content_type: str, *, kind: MediaKind, label: str, suffixes: tuple[str, ...],
                     sniff: Callable[[bytes], bool] | None, open: Opener, whole: bool = True,
                     aliases: tuple[str, ...] = ()) -> Decoder:
    """Make items of ``content_type`` readable: ingested, searched with, uploaded.

    Registering a content type again replaces its decoder. Suffixes are matched ignoring case.
    """
    decoder = Decoder(content_type.lower(), MediaKind(kind), label, tuple(s.lower() for s in suffixes),
                      sniff, open, whole, tuple(a.lower() for a in aliases))
    _DECODERS[decoder.content_type] = decoder
    return decoder


def unregister_decoder(content_type: str) -> None:
    """Forget the decoder of ``content_type`` (a test's fake, once the test is done)."""
    _DECODERS.pop(content_type.lower(), None)


def decoders(kind: MediaKind | None = None) -> tuple[Decoder, ...]:
    """The registered decoders (of ``kind`` only, if given), in the order they were registered."""
    return tuple(d for d in _DECODERS.values() if kind is None or d.kind == kind)


def decoder_for(content_type: str | None) -> Decoder:
    """The decoder of ``content_type`` or one of its aliases; None or an unknown type gives
    the decoder of :data:`UNRECOGNISED`."""
    wanted = (content_type or UNRECOGNISED).lower()
    for name in (wanted, UNRECOGNISED):
        for decoder in _DECODERS.values():
            if name == decoder.content_type or name in decoder.aliases:
                return decoder
    raise LookupError("No decoder is registered for unrecognised content; import vultus.media.")


def content_type_of(head: bytes, name: str = "") -> str | None:
    """The content type the first bytes of a file announce, the name deciding between types
    that start alike and naming the type of content none recognises (for its decoder to say
    what is wrong with it); None when neither tells."""
    suffix = _suffix_match(name)
    claimed = [d for d in _DECODERS.values() if d.sniff is not None and d.sniff(head)]
    for decoder in claimed:
        if suffix in decoder.suffixes:
            return decoder.content_type
    if claimed:
        return claimed[0].content_type
    for decoder in _DECODERS.values():
        if suffix and suffix in decoder.suffixes:
            return decoder.content_type
    return None


def _suffix_match(name: str) -> str:
    """The longest registered suffix ``name`` ends with, lower case ('' when none)."""
    lower = name.lower()
    found = [s for d in _DECODERS.values() for s in d.suffixes if lower.endswith(s)]
    return max(found, key=len, default="")


def accepted_suffixes(kind: MediaKind | None = None) -> tuple[str, ...]:
    """Name endings of the registered formats (of ``kind``), for ``str.endswith``."""
    seen: dict[str, None] = {}
    for decoder in decoders(kind):
        seen.update(dict.fromkeys(decoder.suffixes))
    return tuple(seen)


def content_types(kind: MediaKind | None = None) -> frozenset[str]:
    """The content types (aliases included) of the formats recognised by content."""
    return frozenset(name for d in decoders(kind) if d.sniff is not None for name in (d.content_type, *d.aliases))


def suffix_for(content_type: str) -> str | None:
    """The suffix a file of ``content_type`` is given when its name has none of its kind."""
    decoder = decoder_for(content_type)
    return decoder.suffixes[0] if decoder.suffixes else None


def format_names(kind: MediaKind | None = None) -> str:
    """The recognised formats for a message: ``JPEG, PNG, WebP, BMP, GIF or TIFF``."""
    labels = list(dict.fromkeys(d.label for d in decoders(kind) if d.sniff is not None))
    if len(labels) < 2:
        return labels[0] if labels else "none"
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def ends_with_accepted(name: str | os.PathLike[str], kind: MediaKind | None = None) -> bool:
    """Whether ``name`` ends with a registered suffix (of ``kind``), ignoring case."""
    return str(name).lower().endswith(accepted_suffixes(kind))
