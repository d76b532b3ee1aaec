"""Read a video file: what it holds (:func:`probe_video`) and its frames sampled at a set rate, upright.

Decoding is PyAV's (the ``av`` wheel ships FFmpeg's libraries), imported only when a video
is opened. FFmpeg is only ever handed an open regular file or bytes in memory, never a
name: it resolves no protocol (``rtsp://``, ``http://``, ``concat:``), opens no device, and
with the demuxer fixed by the content (:data:`~vultus.media.containers.VIDEO_TYPES`) and
every nested open refused, it reaches no other file or address either.

Times are seconds on the video's own timeline, as a player shows it: from the container's
start (the earliest stream's first timestamp), not from the first video frame, which in
many files comes a little later (the shared Hamilton clip's first picture is at 0.844 s).

What is refused, each with its own :class:`~vultus.errors.VideoError`:

* content in no supported container (:class:`NotAVideoError`), audio only or only a cover
  picture (:class:`NoVideoStreamError`);
* a file shorter than its container says (:class:`TruncatedVideoError`), found from the
  container's outer structure before any frame is decoded, or failing that after the last
  frame, when decoding stopped well before the video stream's declared end. Frames of a
  truncated file are not used: an incomplete copy is refused, as a truncated photo is, with
  advice to copy it again or to remux the readable part into a file of its own;
* a container that cannot be opened, a stream with no decodable frame, or one with more
  than :data:`MAX_DAMAGED_SHARE` of its packets undecodable (:class:`CorruptVideoError`).
  Fewer damaged packets are skipped, as players do, and frames the decoder marks corrupt
  are never sampled (the next sound frame is taken);
* a duration over ``max_duration_s`` or frames over ``max_pixels``
  (:class:`VideoTooLongError`, :class:`VideoTooLargeError`), from the header before any
  frame is decoded; a header that understates them is caught while decoding (FFmpeg's own
  ``max_pixels`` refuses a frame before allocating it).

An error raised while :func:`sample_frames` is iterating comes after frames were yielded:
the caller drops what it made of them (ingest stores a video whole or not at all).
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Union

import numpy as np

from ..errors import (
    CorruptVideoError,
    EmptyFileError,
    InputPathError,
    NotAVideoError,
    NoVideoStreamError,
    RemoteSourceRefused,
    SettingsError,
    TruncatedVideoError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from .containers import SNIFF_BYTES, VIDEO_TYPES, declared_end, sniff_video

if TYPE_CHECKING:
    import av

__all__ = [
    "VideoSource",
    "VideoInfo",
    "VideoFrame",
    "probe_video",
    "sample_frames",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_MAX_VIDEO_SECONDS",
    "DEFAULT_MAX_VIDEO_PIXELS",
    "MAX_DAMAGED_SHARE",
]

#: Frames sampled per second of video when a caller gives no rate (proposed VULTUS_VIDEO_SAMPLE_RATE).
DEFAULT_SAMPLE_RATE = 2.0
#: The duration limit when a caller gives none (proposed VULTUS_MAX_VIDEO_SECONDS): four hours.
DEFAULT_MAX_VIDEO_SECONDS = 4 * 3600.0
#: The frame-size limit when a caller gives none (proposed VULTUS_MAX_VIDEO_PIXELS): DCI 4K.
#: An 8K frame is four times as much, and so is every reference frame its decoder keeps.
DEFAULT_MAX_VIDEO_PIXELS = 4096 * 2160
#: Share of a video's packets that may fail to decode before the video is refused as corrupt.
MAX_DAMAGED_SHARE = 0.02
#: Seconds by which decoding may fall short of the stream's declared end before the file is
#: taken to be truncated (at least; 2% of the duration for long ones). Declared ends are
#: often a frame or two past the last picture.
_END_TOLERANCE_S = 1.0
#: Packets decoded at most while looking for the first frame (its orientation) in a probe.
_PROBE_PACKETS = 600

#: What a video is read from: a path, its bytes (an archive member), or an open binary file.
VideoSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its headers and its first frame."""

    content_type: str
    #: FFmpeg's name for the video codec (``h264``, ``hevc``, ``vp9``...).
    codec: str
    #: Seconds, from the container's header (or, when it gives none, its last packet).
    duration: float
    #: Frame size as shown, after rotation.
    width: int
    height: int
    #: Degrees (0, 90, 180, 270) the stored frames are turned clockwise to stand upright,
    #: from the display matrix phone cameras write; ``mirrored`` when it also flips them.
    rotation: int
    mirrored: bool
    #: Average frames per second, as the container states it; None when it does not.
    frame_rate: float | None
    has_audio: bool


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: seconds from the video's start, its place among the samples, its pixels."""

    time: float
    #: The multiple of the sampling interval it was taken for (``index / rate`` <= ``time``):
    #: the same whichever stretch of the video it was sampled in.
    index: int
    #: Upright RGB, height x width x 3, uint8, C-contiguous.
    rgb: np.ndarray


def probe_video(
    source: VideoSource,
    *,
    name: str | None = None,
    max_duration_s: float = DEFAULT_MAX_VIDEO_SECONDS,
    max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS,
) -> VideoInfo:
    """Describe the video in ``source`` after checking it against the limits; decodes one frame.

    Raises the :class:`~vultus.errors.VideoError` that says what is wrong, naming ``name``
    (default: the path, or "video" for bytes) in its message, and
    :class:`~vultus.errors.RemoteSourceRefused` or :class:`~vultus.errors.InputPathError`
    for a network address or something that is not a regular file.
    """
    with _opened(source, name, max_duration_s, max_pixels, threads=1) as video:
        frame = next(video.frames(max_packets=_PROBE_PACKETS), None)
        if frame is None:
            raise CorruptVideoError(f"{video.name}: {_NO_FRAME}")
        orientation = _orientation(frame)
        width, height = (frame.height, frame.width) if orientation.transpose else (frame.width, frame.height)
        return VideoInfo(
            content_type=video.content_type, codec=video.stream.codec_context.name, duration=video.duration,
            width=width, height=height, rotation=orientation.clockwise, mirrored=orientation.mirrored,
            frame_rate=video.frame_rate, has_audio=bool(video.container.streams.audio),
        )


def sample_frames(
    source: VideoSource,
    *,
    rate: float = DEFAULT_SAMPLE_RATE,
    start: float = 0.0,
    end: float | None = None,
    name: str | None = None,
    max_duration_s: float = DEFAULT_MAX_VIDEO_SECONDS,
    max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS,
    threads: int = 2,
) -> Iterator[VideoFrame]:
    """Yield frames of the video in ``source``, ``rate`` per second, upright, in time order.

    Sampling follows presentation timestamps, so a variable frame rate is sampled evenly:
    for each multiple of ``1 / rate`` seconds, the first sound frame shown at or after it is
    taken (once: a frame that covers several multiples, as in a still stretch of a
    variable-rate file, is one sample, numbered by the first). ``start`` and ``end`` (seconds)
    limit the samples to that stretch, decoding from the key frame before ``start``: the
    samples of consecutive stretches are those of the whole video, so a long video can be
    shared out among workers. ``threads`` is the decoder's (give it the caller's share of the
    cores). Raises as :func:`probe_video` does, before the first frame or, for what only
    decoding shows, during iteration (see the module's notes); a file cut short is found
    only by the stretch that reaches its end.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise SettingsError(f"The video sampling rate must be a positive number of frames per second, not {rate}.")
    if not (start >= 0 and (end is None or end > start)):
        raise ValueError(f"a stretch of video runs from 0 or later to a later end, not from {start} to {end}")
    with _opened(source, name, max_duration_s, max_pixels, threads=threads) as video:
        due = max(0, math.ceil(start * rate - 1e-6))  # the number of the next multiple of 1/rate
        if start > 0:
            video.seek(start)
        last, to_the_end = None, True
        for frame in video.frames():
            time = video.time_of(frame, last)
            last = time
            if time > video.duration_limit:
                raise VideoTooLongError(video.too_long(time))
            if end is not None and time >= end:
                to_the_end = False
                break
            if time < due / rate - 1e-6 or time < 0 or frame.is_corrupt:
                continue
            if frame.width * frame.height > max_pixels:
                raise VideoTooLargeError(video.too_large(frame.width, frame.height))
            yield VideoFrame(time=time, index=due, rgb=_upright(frame))
            due = math.floor(time * rate + 1e-6) + 1
        video.check_complete(last, reached_end=to_the_end)


_NO_FRAME = (
    "no frame of its video stream can be decoded: the file is damaged or was not written to the "
    "end. Re-copy or re-export it from the original."
)


class _Opened:
    """An open container whose video stream has passed the header checks, and its decoding state."""

    def __init__(self, container: "av.container.InputContainer", stream: "av.VideoStream", name: str,
                 content_type: str, max_duration_s: float, max_pixels: int):
        self.container, self.stream, self.name, self.content_type = container, stream, name, content_type
        self.max_duration_s, self.max_pixels = max_duration_s, max_pixels
        self.packets = self.damaged = 0
        self.header_size = (stream.codec_context.width, stream.codec_context.height)
        # The timeline's origin, in seconds: the container's start, which players count from.
        if container.start_time is not None:
            self.origin = container.start_time / 1_000_000
        else:
            self.origin = _seconds(stream.start_time, stream) or 0.0
        self.frame_rate = float(stream.average_rate) if stream.average_rate else None
        self.declared_stream_end = _stream_end(stream, self.origin)
        if self.declared_stream_end is None and container.duration and not container.streams.audio:
            # With no other stream to outlast it, the container's duration is the video's.
            self.declared_stream_end = container.duration / 1_000_000
        known = [d for d in (container.duration / 1_000_000 if container.duration else None,
                             self.declared_stream_end) if d is not None and d > 0]
        #: None until :meth:`scan_duration` has read the packets of a file whose header gives none.
        self.duration: float | None = max(known) if known else None
        if self.duration is not None and self.duration > max_duration_s:
            raise VideoTooLongError(self.too_long(self.duration))
        # One frame's length of slack, so that a video exactly at the limit is not refused while decoding.
        self.duration_limit = max_duration_s + self.frame_length

    @property
    def frame_length(self) -> float:
        """Seconds one frame lasts at the stated average rate (30 frames a second when none is stated)."""
        return 1.0 / max(self.frame_rate or 30.0, 1.0)

    def scan_duration(self) -> float:
        """The end of the last video packet (the container is read to its end, nothing is decoded)."""
        end = 0.0
        for packet in _demux(self.container, self.stream, self.name):
            if packet.pts is not None:
                end = max(end, _seconds(packet.pts + (packet.duration or 0), self.stream) - self.origin)
                if end > self.max_duration_s:
                    raise VideoTooLongError(self.too_long(end))
        return end

    def frames(self, *, max_packets: int | None = None) -> Iterator["av.VideoFrame"]:
        """Every frame the decoder gives, in presentation order; damaged packets are counted and skipped."""
        av = _av()
        for packet in _demux(self.container, self.stream, self.name):
            if packet.size:
                self.packets += 1
            try:
                decoded = packet.decode()
            except av.error.ArgumentError as exc:
                # What FFmpeg's max_pixels guard gives (EINVAL), where damage gives AVERROR_INVALIDDATA.
                raise VideoTooLargeError(self.oversized()) from exc
            except av.FFmpegError:
                self.damaged += 1
                continue
            yield from decoded
            if max_packets is not None and self.packets >= max_packets:
                return

    def time_of(self, frame: "av.VideoFrame", previous: float | None) -> float:
        """Seconds of ``frame`` on the video's timeline (a frame with no timestamp follows the last)."""
        if frame.pts is not None:
            return _seconds(frame.pts, self.stream) - self.origin
        return (previous if previous is not None else 0.0) + self.frame_length

    def seek(self, seconds: float) -> None:
        """Move to the key frame at or before ``seconds``; where the file cannot seek, stay at the start."""
        av = _av()
        try:
            self.container.seek(round((seconds + self.origin) / self.stream.time_base), stream=self.stream,
                                backward=True, any_frame=False)
        except av.FFmpegError:
            pass  # decoding from the start gets there too, skipping what comes before

    def check_complete(self, last: float | None, *, reached_end: bool = True) -> None:
        """Refuse a video none of whose frames decoded, too much of which is damaged, or (decoded to
        its end) that stops early."""
        if last is None:
            raise CorruptVideoError(f"{self.name}: {_NO_FRAME}")
        if self.packets and self.damaged > MAX_DAMAGED_SHARE * self.packets:
            raise CorruptVideoError(
                f"{self.name}: {self.damaged} of its {self.packets} video packets cannot be decoded (over "
                f"{MAX_DAMAGED_SHARE:.0%}): the file is damaged. Re-copy or re-export it from the original."
            )
        end = self.declared_stream_end
        if end is not None and reached_end:
            reached = last + self.frame_length
            if end - reached > max(_END_TOLERANCE_S, 0.02 * end):
                raise TruncatedVideoError(_truncated(
                    self.name, f"its pictures stop at {reached:.1f} s, but its video stream says it lasts "
                    f"{end:.1f} s"))

    def too_long(self, seconds: float) -> str:
        return (
            f"{self.name}: the video lasts {seconds:,.0f} s, over the limit of {self.max_duration_s:,.0f} s. Cut it "
            "into shorter parts (for example `ffmpeg -i IN -c copy -f segment -segment_time 3600 part%03d.mp4`), "
            "or raise VULTUS_MAX_VIDEO_SECONDS if the machine has the time for it."
        )

    def oversized(self) -> str:
        width, height = self.header_size
        said = f"larger than its header says ({width}x{height}) and " if width and height else ""
        return (
            f"{self.name}: a picture in it is {said}far over the limit of {self.max_pixels:,} pixels for a "
            "video frame, so it was not decoded (a guard "
            "against decoding bombs). Check where the file comes from; re-encode it at a smaller size if it is "
            "genuine (for example `ffmpeg -i IN -vf scale=-2:2160 OUT.mp4`)."
        )

    def too_large(self, width: int, height: int) -> str:
        return (
            f"{self.name}: its frames are {width}x{height}, {width * height:,} pixels, over the limit of "
            f"{self.max_pixels:,} for a video frame (a guard against decoding bombs). Scale it down (for example "
            "`ffmpeg -i IN -vf scale=-2:2160 OUT.mp4`), or raise VULTUS_MAX_VIDEO_PIXELS if it is genuine."
        )


@contextmanager
def _opened(source: VideoSource, name: str | None, max_duration_s: float, max_pixels: int,
            *, threads: int) -> Iterator[_Opened]:
    """The video in ``source``, open and checked against its structure and the limits."""
    with _handle(source, name) as (handle, size, label):
        if size == 0:
            raise EmptyFileError(f"{label}: the file is empty (0 bytes); there is no video to read.")
        handle.seek(0)
        content_type = sniff_video(handle.read(SNIFF_BYTES))
        if content_type is None:
            raise NotAVideoError(
                f"{label}: not a video in a supported container. Vultus reads MP4, MOV, M4V, MKV, WebM and "
                "AVI files; convert it to MP4 (for example `ffmpeg -i IN -c:v libx264 OUT.mp4`)."
            )
        end = declared_end(handle, size, content_type)
        if end is not None:
            raise TruncatedVideoError(_truncated(
                label, f"the file ends at byte {size:,}, but its container says it goes on to byte {end:,}"))
        video = _checked(handle, content_type, label, max_duration_s, max_pixels)
        if video.duration is None:
            # A header with no duration (AVI, a live-recorded MKV): read the packets for it, then
            # open the file afresh to decode (seeking back is unreliable in such files).
            try:
                duration = video.scan_duration()
            finally:
                video.container.close()
            video = _checked(handle, content_type, label, max_duration_s, max_pixels)
            video.duration = duration
        try:
            codec = video.stream.codec_context
            codec.thread_count = max(1, threads)
            codec.thread_type = "AUTO"
            # FFmpeg's own guard: a frame far over the limit is refused before it is allocated,
            # whatever the header said (a resolution change mid-stream). FFmpeg counts the padded
            # buffer (width aligned up to 64), hence twice the limit; every frame's own size is
            # then checked exactly before it is converted.
            codec.options = {**codec.options, "max_pixels": str(2 * max_pixels)}
            yield video
        finally:
            video.container.close()


def _checked(handle: BinaryIO, content_type: str, label: str, max_duration_s: float, max_pixels: int) -> _Opened:
    """The container in ``handle`` opened from its start, its video stream's size and duration checked."""
    handle.seek(0)
    container = _open_container(handle, content_type, label, max_pixels)
    try:
        stream = _video_stream(container, label)
        video = _Opened(container, stream, label, content_type, max_duration_s, max_pixels)
        width, height = video.header_size
        if width * height > max_pixels:
            raise VideoTooLargeError(video.too_large(width, height))
    except BaseException:
        container.close()
        raise
    return video


@contextmanager
def _handle(source: VideoSource, name: str | None) -> Iterator[tuple[BinaryIO, int, str]]:
    """A seekable binary handle on ``source``, its size and the name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source)), len(source), name or "video"
        return
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = name or path
        if _REMOTE.match(path):
            raise RemoteSourceRefused(
                f"{label} is a network address. Vultus reads only video files the operator holds, never a "
                "stream or a web address (it has no crawler, by design); save the video through your own "
                "lawful process and ingest the local file. Nothing was read."
            )
        try:
            handle = _open_regular(path, label)
        except OSError as exc:
            raise InputPathError(f"{label} cannot be read ({exc.strerror or exc}); check the path.") from exc
        with handle:
            yield handle, os.fstat(handle.fileno()).st_size, label
        return
    if not (hasattr(source, "read") and hasattr(source, "seek")) or not source.seekable():
        raise TypeError("a video source is a path, bytes, or a seekable binary file")
    size = source.seek(0, io.SEEK_END)
    yield source, size, name or getattr(source, "name", None) or "video"


def _open_regular(path: str, label: str) -> BinaryIO:
    """Open ``path`` for reading; refuse a device, FIFO, socket or folder by what was opened."""
    # Non-blocking, so that a FIFO named like a video does not wait for a writer.
    handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise InputPathError(
            f"{label} is not a regular file (a camera, another device, a pipe or a folder). Vultus reads "
            "recorded video files only: record to a file first, then ingest that."
        )
    return handle


def _open_container(handle: BinaryIO, content_type: str, label: str, max_pixels: int) -> "av.container.InputContainer":
    av = _av()
    try:
        # The options reach the decoders that FFmpeg runs while opening, to learn what the
        # streams hold (avformat_find_stream_info): a frame far over the limit is refused
        # there too, before it is allocated (see _opened for why twice the limit).
        return av.open(handle, mode="r", format=VIDEO_TYPES[content_type], io_open=_refuse_nested,
                       options={"max_pixels": str(2 * max_pixels)})
    except av.FFmpegError as exc:
        raise CorruptVideoError(
            f"{label}: the {content_type} container cannot be read ({exc.strerror or exc}); the file is damaged "
            "or was not written to the end. Re-copy or re-export it from the original."
        ) from exc


def _refuse_nested(url: str, flags: int, options: dict) -> Any:
    """Refuse every file or address a demuxer asks to open besides the one it was given."""
    raise PermissionError(f"Vultus does not let a video open other files or addresses ({url})")


def _video_stream(container: "av.container.InputContainer", label: str) -> "av.VideoStream":
    av = _av()
    moving = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not moving:
        held = [s.type for s in container.streams if s.type != "video"]
        what = "only a still cover picture" if container.streams.video else (
            f"only {' and '.join(sorted(set(held)))}" if held else "no stream at all")
        raise NoVideoStreamError(
            f"{label}: the file has no video stream ({what}), so there are no faces to find in it. If it "
            "should have a picture, export it again with its video track."
        )
    stream = moving[0]
    if stream.codec_context is None or not stream.codec_context.is_decoder:
        raise CorruptVideoError(
            f"{label}: its video codec ({stream.codec_context.name if stream.codec_context else 'unknown'}) cannot be "
            "decoded by this FFmpeg; convert it to H.264 (for example `ffmpeg -i IN -c:v libx264 OUT.mp4`)."
        )
    return stream


def _demux(container: "av.container.InputContainer", stream: "av.VideoStream", label: str) -> Iterator["av.Packet"]:
    """The stream's packets; a container that cannot be read on to its end is corrupt."""
    av = _av()
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise CorruptVideoError(
                f"{label}: the container cannot be read past a damaged part ({exc.strerror or exc}). Re-copy or "
                "re-export it from the original."
            ) from exc
        yield packet


def _stream_end(stream: "av.VideoStream", origin: float) -> float | None:
    """Where the video stream says it ends on the timeline: its duration, or Matroska's DURATION tag."""
    if stream.duration:
        return _seconds((stream.start_time or 0) + stream.duration, stream) - origin
    tag = stream.metadata.get("DURATION")
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", tag or "")
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _seconds(ticks: int | None, stream: "av.VideoStream") -> float | None:
    return None if ticks is None else float(ticks * stream.time_base)


@dataclass(frozen=True)
class _Orientation:
    """How stored pixels map to the picture shown: transposed first, then mirrored along each axis."""

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @property
    def mirrored(self) -> bool:
        # A transpose is itself a mirror image: with one flip it is a rotation.
        return (self.transpose + self.flip_x + self.flip_y) % 2 == 1

    @property
    def clockwise(self) -> int:
        """The rotation part, in clockwise degrees (a mirror is taken to be horizontal, after it)."""
        if self.mirrored:
            return _Orientation(self.transpose, not self.flip_x, self.flip_y).clockwise
        if not self.transpose:
            return 180 if self.flip_x else 0
        return 90 if self.flip_x else 270


def _orientation(frame: "av.VideoFrame") -> _Orientation:
    """The display matrix of ``frame`` (FFmpeg passes the container's on to each frame), read exactly.

    The matrix maps a stored pixel (x, y) to (a x + c y, b x + d y) on screen (y down): a
    rotation by a multiple of 90 degrees, possibly mirrored. Other angles are taken to the
    nearest multiple of 90.
    """
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is None:
        return _Orientation()
    a, b, _, c, d = np.frombuffer(bytes(side), dtype=np.int32)[:5].tolist()
    if abs(a) + abs(d) >= abs(b) + abs(c):
        return _Orientation(False, a < 0, d < 0)
    return _Orientation(True, c < 0, b < 0)


def _upright(frame: "av.VideoFrame") -> np.ndarray:
    """``frame`` as upright RGB, its display matrix applied."""
    rgb = frame.to_ndarray(format="rgb24")
    turn = _orientation(frame)
    if turn.transpose:
        rgb = rgb.transpose(1, 0, 2)
    if turn.flip_x:
        rgb = rgb[:, ::-1]
    if turn.flip_y:
        rgb = rgb[::-1]
    return np.ascontiguousarray(rgb)


def _truncated(label: str, finding: str) -> str:
    return (
        f"{label}: {finding}: the file is an incomplete copy. Copy the complete file again; if this is all "
        "there is of the recording, remux the part that can be read into a file of its own (for example "
        "`ffmpeg -i IN -c copy OUT.mkv`) and ingest that. Nothing of it was used."
    )


def _av() -> Any:
    """PyAV, imported when a video is first opened (``import vultus`` must stay cheap)."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency; a broken install is the case
        raise VideoError(
            "Reading videos needs PyAV (the `av` package, with FFmpeg's libraries), which cannot be imported "
            f"here ({exc}); install it with `pip install 'av>=14,<19'`."
        ) from exc
    return av
