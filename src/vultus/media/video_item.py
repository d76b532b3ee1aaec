"""Videos as media items: MP4, MOV, M4V, MKV, WebM and AVI, registered by content type.

A video is never read whole into memory nor shipped to a worker: it is hashed as it streams
past (``whole=False``) and the worker opens it where it is (a plain file, opened with the
same checks as photos; an archive member, read when its frames are wanted). Its frames are
sampled at a rate (``frames(rate=...)``) by :func:`~vultus.media.video.sample_frames`, each
keyed by its time. PyAV is imported only when a video's frames are read.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator

from .base import Frame, MediaKind, register_decoder
from .collect import Item, open_item
from .containers import sniff_video
from .crop import frame_jpeg
from .video import DEFAULT_MAX_VIDEO_PIXELS, DEFAULT_MAX_VIDEO_SECONDS, DEFAULT_SAMPLE_RATE, VideoInfo, probe_video, sample_frames

__all__ = ["VIDEO_FORMATS", "VideoItem", "frame_key"]

#: (content type, label and format name, suffixes) of each container read.
VIDEO_FORMATS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("video/mp4", "MP4", (".mp4",)),
    ("video/quicktime", "MOV", (".mov",)),
    ("video/x-m4v", "M4V", (".m4v",)),
    ("video/x-matroska", "MKV", (".mkv",)),
    ("video/webm", "WebM", (".webm",)),
    ("video/x-msvideo", "AVI", (".avi",)),
)
_LABELS = {content_type: label for content_type, label, _ in VIDEO_FORMATS}


def frame_key(time: float) -> str:
    """The key of a video's frame at ``time`` seconds (milliseconds are enough to find it again)."""
    return f"t={time:.3f}"


class VideoItem:
    """A video where it is (or, from an upload or a test, its bytes); pickles without its bytes
    when opened from a location."""

    kind = MediaKind.VIDEO

    def __init__(self, source: bytes | Item, *, name: str, content_type: str, sha256: str | None = None,
                 size: int | None = None):
        held = isinstance(source, (bytes, bytearray))
        self.data: bytes | None = bytes(source) if held else None
        self.location: Item | None = None if held else source  # type: ignore[assignment]
        self.name, self.content_type = name, content_type
        self.sha256 = sha256 or hashlib.sha256(self.data or b"").hexdigest()
        self.size = size if size is not None else len(self.data or b"")

    def __repr__(self) -> str:
        return f"VideoItem({self.name!r}, {self.content_type}, {self.size:,} bytes)"

    @property
    def format(self) -> str:
        return _LABELS.get(self.content_type, "VIDEO")

    @contextmanager
    def opened(self) -> Iterator[BinaryIO]:
        """A seekable binary handle on the video (each call a new one)."""
        if self.data is not None:
            yield io.BytesIO(self.data)
            return
        with open_item(self.location) as handle:  # type: ignore[arg-type]
            yield handle

    def probe(self, *, max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
              max_video_pixels: int = DEFAULT_MAX_VIDEO_PIXELS) -> VideoInfo:
        """Its duration, frame size and codec, checked against the limits (one frame decoded)."""
        with self.opened() as handle:
            return probe_video(handle, name=self.name, max_duration_s=max_seconds, max_pixels=max_video_pixels)

    def frames(self, *, max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS, max_decode_mb: int = 0,
               detection_scale: Callable[[int, int], float] | None = None, rate: float = DEFAULT_SAMPLE_RATE,
               max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS, max_video_pixels: int | None = None,
               threads: int = 1) -> Iterator[Frame]:
        """Frames sampled ``rate`` per second, upright RGB, keyed by their time.

        The frame-size limit is ``max_video_pixels`` (default: the smaller of ``max_pixels``
        and 4096x2160); ``max_decode_mb`` and ``detection_scale`` are the photo decoder's and
        do not apply. Raises a :class:`~vultus.errors.VideoError` before the first frame or,
        for what only decoding shows (damage, a file cut short), during iteration.
        """
        limit = max_video_pixels if max_video_pixels is not None else min(max_pixels, DEFAULT_MAX_VIDEO_PIXELS)
        with self.opened() as handle:
            for sample in sample_frames(handle, name=self.name, rate=rate, max_duration_s=max_seconds,
                                        max_pixels=limit, threads=threads):
                yield Frame(frame_key(sample.time), sample.time, sample.rgb)

    def still(self, frame: Frame) -> tuple[bytes | None, str]:
        """A JPEG of the frame: a video is never kept, only pictures of the moments that matter."""
        return frame_jpeg(frame.rgb), "JPEG"


def open_video(source: bytes | Item, *, name: str, content_type: str, sha256: str | None = None,
               size: int | None = None) -> VideoItem:
    """The video item of ``source``: its location (from a folder or an archive) or its bytes."""
    return VideoItem(source, name=name, content_type=content_type, sha256=sha256, size=size)


def _sniffer(content_type: str) -> Callable[[bytes], bool]:
    def sniff(head: bytes) -> bool:
        return sniff_video(head) == content_type

    sniff.__qualname__ = f"sniff_{_LABELS[content_type].lower()}"
    return sniff


for _type, _label, _suffixes in VIDEO_FORMATS:
    register_decoder(_type, kind=MediaKind.VIDEO, label=_label, suffixes=_suffixes, sniff=_sniffer(_type),
                     open=open_video, whole=False)
