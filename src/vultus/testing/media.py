"""A fake media type with several frames, for testing the media seam without a video codec.

A fake item is a text file: a header line, then one line per frame naming the colours of
its squares (an empty line is a frame with nobody in it), each frame half a second after
the one before. Its frames are drawn with :func:`~vultus.testing.square_pixels`, so the
fake detector finds the squares in them::

    from vultus.testing.media import fake_frames_decoder, frames_file

    with fake_frames_decoder():
        path.write_bytes(frames_file([[], ["red"], []]))
        engine.ingest([path], source="test", workers=1)

Registrations are global: :func:`fake_frames_decoder` registers the type for its block
only. Importing this module registers nothing.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..errors import CorruptImageError, EmptyFileError, ImageTooLargeError
from ..media import Decoder, Frame, Item, MediaKind, frame_jpeg, register_decoder, unregister_decoder
from .photos import square_pixels

__all__ = ["FAKE_FRAMES", "FRAME_SIZE", "FakeFramesItem", "fake_frames_decoder", "frames_file"]

#: The made-up content type of the fake.
FAKE_FRAMES = "application/x-vultus-fake-frames"
#: (width, height) of every fake frame.
FRAME_SIZE = (640, 480)
#: Seconds between two frames.
_STEP = 0.5
_MAGIC = b"VULTUS-FAKE-FRAMES\n"


def frames_file(frames: Sequence[Sequence[str]], *, padding: int = 0) -> bytes:
    """The bytes of a fake item with one frame per entry of ``frames`` (its squares' colours).

    ``padding`` bytes of comment make the file that much larger, to tell an item shipped
    whole from one shipped by its location.
    """
    body = b"".join(" ".join(colours).encode("ascii") + b"\n" for colours in frames)
    return _MAGIC + (b"#" + b"." * max(0, padding - 2) + b"\n" if padding else b"") + body


class FakeFramesItem:
    """A fake item, opened from its bytes or from its location (then read in :meth:`frames`)."""

    kind = MediaKind.VIDEO
    format = "FAKE-FRAMES"

    def __init__(self, source: bytes | Item, *, name: str, content_type: str = FAKE_FRAMES,
                 sha256: str | None = None, size: int | None = None):
        held = isinstance(source, (bytes, bytearray))
        self.data: bytes | None = bytes(source) if held else None
        self.location: Item | None = None if held else source  # type: ignore[assignment]
        self.name, self.content_type = name, content_type
        self.sha256 = sha256 or hashlib.sha256(self.data or b"").hexdigest()
        self.size = size if size is not None else len(self.data or b"")

    def frames(self, *, max_pixels: int, max_decode_mb: int,
               detection_scale: Callable[[int, int], float] | None = None, **video: object) -> Iterator[Frame]:
        """The frames drawn; ``video`` options (a real video's sampling rate and limits) do not apply."""
        data = self.data if self.data is not None else self.location.read()  # type: ignore[union-attr]
        if not data:
            raise EmptyFileError(f"{self.name}: the file is empty (0 bytes).")
        if not data.startswith(_MAGIC):
            raise CorruptImageError(f"{self.name}: not a fake frames file (its header is missing).")
        if not data.endswith(b"\n"):
            raise CorruptImageError(f"{self.name}: the file ends inside a frame (it is truncated).")
        width, height = FRAME_SIZE
        if width * height > max_pixels:
            raise ImageTooLargeError(f"{self.name}: its {width}x{height} frames are over {max_pixels:,} pixels.")
        lines = [line for line in data[len(_MAGIC):].split(b"\n")[:-1] if not line.startswith(b"#")]
        for number, line in enumerate(lines):
            try:
                colours = line.decode("ascii").split()
                pixels = square_pixels(colours, size=FRAME_SIZE)
            except (UnicodeDecodeError, KeyError, ValueError) as exc:
                raise CorruptImageError(f"{self.name}: frame {number} cannot be drawn ({exc}).") from exc
            time = number * _STEP
            yield Frame(f"t={time:.3f}", time, pixels)

    def still(self, frame: Frame) -> tuple[bytes | None, str]:
        return frame_jpeg(frame.rgb), "JPEG"


@contextmanager
def fake_frames_decoder(*, whole: bool = False) -> Iterator[Decoder]:
    """Register the fake type (``.frames``, recognised by its header) for the block, then forget it.

    ``whole=False`` (the default) ships a fake item to workers by its location, as a video
    would be; ``whole=True`` reads it whole, as a photo is.
    """
    decoder = register_decoder(FAKE_FRAMES, kind=MediaKind.VIDEO, label="fake frames", suffixes=(".frames",),
                               sniff=lambda head: head.startswith(_MAGIC), open=FakeFramesItem, whole=whole)
    try:
        yield decoder
    finally:
        unregister_decoder(FAKE_FRAMES)
