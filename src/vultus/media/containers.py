"""Video containers told apart by their first bytes, and files that end before their container says.

Nothing here decodes: :func:`sniff_video` reads the signature at the start of a file, and
:func:`declared_end` walks the container's outermost structure (ISO boxes, the Matroska
segment, the AVI RIFF chunk) to find where it says the file ends, so that an incomplete copy
is recognised before a frame is decoded, whatever the decoder would make of it.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

__all__ = ["VIDEO_SUFFIXES", "VIDEO_TYPES", "SNIFF_BYTES", "sniff_video", "declared_end"]

#: File name endings taken as videos when walking a folder or an archive.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
#: Content types :func:`sniff_video` returns, each with the FFmpeg demuxer that reads it.
#: The demuxer is named when a file is opened, so FFmpeg never guesses a format from the
#: content: playlist and concatenation formats, which open other files or addresses, are never used.
VIDEO_TYPES = {
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/x-m4v": "mov",
    "video/x-matroska": "matroska",
    "video/webm": "matroska",
    "video/x-msvideo": "avi",
}
#: Bytes of a file's start that :func:`sniff_video` needs (the EBML header is rarely over 64).
SNIFF_BYTES = 4096

#: ISO base media brands of still images (HEIF, AVIF) and their sequences: not videos here.
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
_M4V_BRANDS = {b"M4V ", b"M4VH", b"M4VP"}
#: Atoms that can open a QuickTime file written before the ftyp atom existed.
_OLD_QUICKTIME = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_EBML = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE = 0x4282
_MATROSKA_SEGMENT = 0x18538067
#: Top-level ISO boxes walked at most (a 4-hour fragmented MP4 with 1-second fragments has ~30,000).
_MAX_BOXES = 1_000_000


def sniff_video(head: bytes) -> str | None:
    """The content type of the video container that ``head`` (a file's first bytes) starts, or None.

    ISO base media files (``ftyp`` box) are ``video/quicktime`` for the ``qt`` brand,
    ``video/x-m4v`` for the ``M4V`` brands, and ``video/mp4`` otherwise (3GP and M4A
    included: an audio-only file is then refused for having no video stream, which says more
    than "not a video"); HEIF and AVIF images are not videos. Matroska files are
    ``video/webm`` or ``video/x-matroska`` by their EBML DocType; RIFF files of form ``AVI``
    are ``video/x-msvideo``. Give at least :data:`SNIFF_BYTES` bytes when the file has them.
    """
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/x-m4v" if brand in _M4V_BRANDS else "video/mp4"
    if len(head) >= 8 and head[4:8] in _OLD_QUICKTIME:
        length = struct.unpack(">I", head[:4])[0]
        if length in (0, 1) or length >= 8:  # 0: to the end of the file; 1: a 64-bit size follows
            return "video/quicktime"
    if head.startswith(_EBML):
        doctype = _ebml_doctype(head)
        if doctype == b"webm":
            return "video/webm"
        if doctype == b"matroska":
            return "video/x-matroska"
        return None
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    return None


def declared_end(handle: BinaryIO, size: int, content_type: str) -> int | None:
    """The byte offset at which the container in ``handle`` says it ends, when that is past ``size``.

    None means the file is at least as long as its outermost structure says (or that
    structure gives no length: a Matroska segment of unknown size, as live recorders write
    it). The handle's position is left wherever the walk stopped.
    """
    if content_type in ("video/mp4", "video/quicktime", "video/x-m4v"):
        end = _iso_end(handle, size)
    elif content_type in ("video/x-matroska", "video/webm"):
        end = _matroska_end(handle)
    else:
        handle.seek(0)
        head = handle.read(8)
        end = 8 + struct.unpack("<I", head[4:8])[0] if len(head) == 8 else None
    return end if end is not None and end > size else None


def _iso_end(handle: BinaryIO, size: int) -> int | None:
    """The end of the last top-level box, or of the first one that runs past ``size``."""
    offset = 0
    for _ in range(_MAX_BOXES):
        if offset >= size:
            return offset
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            return offset + 8  # a box header cut short: the file stops inside it
        if not all(32 <= c < 127 or c == 0xA9 for c in header[4:8]):
            return None  # not a box type (four printable characters): garbage, left to the demuxer
        length = struct.unpack(">I", header[:4])[0]
        if length == 0:
            return None  # the last box runs to the end of the file, whatever its length
        if length == 1:
            if len(header) < 16:
                return offset + 16
            length = struct.unpack(">Q", header[8:16])[0]
            if length < 16:
                return None  # malformed: left to the demuxer to refuse
        elif length < 8:
            return None
        if offset + length > size:
            return offset + length
        offset += length
    return None


def _matroska_end(handle: BinaryIO) -> int | None:
    """Where the Matroska segment that follows the EBML header ends; None when its size is unknown."""
    handle.seek(0)
    data = handle.read(SNIFF_BYTES)
    header = _element(data, 0)
    if header is None or header[0] != int.from_bytes(_EBML, "big") or header[2] is None:
        return None
    _, start, length = header
    segment = _element(data, start + length)
    if segment is None or segment[0] != _MATROSKA_SEGMENT or segment[2] is None:
        return None
    return segment[1] + segment[2]


def _ebml_doctype(head: bytes) -> bytes | None:
    """The DocType string of the EBML header at the start of ``head``, or None."""
    header = _element(head, 0)
    if header is None or header[2] is None:
        return None
    _, position, length = header
    end = min(len(head), position + length)
    while position < end:
        child = _element(head, position)
        if child is None or child[2] is None:
            return None
        ident, start, size = child
        if ident == _EBML_DOCTYPE:
            return head[start:start + size].rstrip(b"\x00")
        position = start + size
    return None


def _element(data: bytes, position: int) -> tuple[int, int, int | None] | None:
    """The EBML element at ``position``: its id, where its data starts and its size (None: unknown)."""
    ident = _vint(data, position, keep_marker=True, widest=4)
    if ident is None:
        return None
    value, width = ident
    size = _vint(data, position + width, keep_marker=False, widest=8)
    if size is None:
        return None
    length, size_width = size
    unknown = length == (1 << (7 * size_width)) - 1
    return value, position + width + size_width, None if unknown else length


def _vint(data: bytes, position: int, *, keep_marker: bool, widest: int) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``position``: its value and its width in bytes."""
    if position >= len(data) or data[position] == 0:
        return None
    first = data[position]
    width = 8 - first.bit_length() + 1
    if width > widest or position + width > len(data):
        return None
    value = int.from_bytes(data[position:position + width], "big")
    if not keep_marker:
        value &= (1 << (7 * width)) - 1
    return value, width
