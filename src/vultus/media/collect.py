"""Find the items to ingest in local files, folders (recursively) and zip or tar archives, and read them.

What is taken in folders and archives is what the registered decoders' suffixes name
(:func:`~vultus.media.base.accepted_suffixes`); what an item is, is decided from its content
once it is read.
"""

from __future__ import annotations

import copy
import hashlib
import io
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from ..errors import ArchiveMemberTooLargeError, DamagedArchiveMemberError, ImageTooLargeError, InputPathError
from .base import HEAD_BYTES, accepted_suffixes

__all__ = ["open_item", "Item", "Collection", "Streamed", "collect", "read_items", "MAX_MEMBER_BYTES"]

_ZIP_SUFFIXES = (".zip",)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
#: An archive member larger than this is refused unread (a guard against archive bombs);
#: one that inflates past what its header says is refused as soon as it does.
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: Bytes inflated at a time while reading a member.
_CHUNK = 1 << 20
#: What zipfile and tarfile raise for archives they cannot read (malformed headers included).
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError, ValueError, NotImplementedError,
               OverflowError, struct.error, zlib.error)
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, NotImplementedError, OverflowError,
               struct.error, zlib.error, lzma.LZMAError)
#: Zip compression methods read; others (bzip2, lzma) inflate in unbounded steps in zipfile.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


@dataclass(frozen=True)
class Item:
    """Where one item to ingest is: a plain file, or a member of a zip or tar archive."""

    display: str
    container: str
    member: str | None = None
    archive: str | None = None  # "zip" or "tar"
    #: The ingest root the file must really be under when it is opened (None: anywhere).
    root: str | None = None

    def read(self) -> bytes:
        """The item's bytes; raises OSError (or an archive error) when it cannot be read.

        Reading many members of one archive this way reopens it each time; use
        :func:`read_items`, which reads each archive once, in its own order.
        """
        return next(read_items([self]))[1]  # type: ignore[return-value]


@contextmanager
def open_item(item: Item) -> Iterator[BinaryIO]:
    """A seekable binary handle on ``item``: the file itself (with the checks of a read: a
    regular file, under its root), or an archive member read into memory."""
    if item.archive is None:
        with _open_checked(item) as handle:
            yield handle
        return
    got = item.read()
    if isinstance(got, Exception):
        raise got
    yield io.BytesIO(got)


@dataclass(frozen=True)
class Streamed:
    """An item read through without being kept (its decoder reads it where it is)."""

    sha256: str
    size: int
    #: Its first bytes, as its content type was sniffed from.
    head: bytes


#: ``streamed(head, name)``: whether the item whose file starts with ``head`` is to be read
#: through (hashed and counted) rather than kept.
StreamTest = Callable[[bytes, str], bool]


@dataclass
class Collection:
    """What :func:`collect` found: items to read, files refused, files ignored."""

    items: list[Item] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def collect(paths: Iterable[str | os.PathLike[str]], *, root: str | os.PathLike[str] | None = None) -> Collection:
    """List the items under ``paths``, in a stable order.

    A file named on the command line is always tried, whatever its name; inside folders
    and archives only names ending in a registered suffix are taken, and other files are
    listed as ignored (a ``labels.csv`` beside the photos is not an error).
    With ``root`` (the server's ingest root), every file found is refused unread unless
    its real path, symbolic links resolved, lies under the root's real path.
    Raises :class:`InputPathError` if a named path does not exist, before anything is read.
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputPathError(
            f"Not found: {', '.join(missing)}. Check the path; nothing was ingested."
        )
    base = os.path.realpath(root) if root is not None else None
    found = Collection()
    taken = accepted_suffixes()
    for path in paths:
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    _add_file(found, Path(folder) / name, taken, explicit=False, root=base)
        else:
            _add_file(found, path, taken, explicit=True, root=base)
    return found


def _outside(path: Path, root: str) -> str | None:
    """Why ``path`` may not be read under ``root``, or None when it may."""
    real = os.path.realpath(path)
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return f"it resolves to {real}, outside the ingest root {root} (a symbolic link?); it was not read"


def read_items(items: Iterable[Item], *, streamed: StreamTest | None = None
               ) -> Iterator[tuple[Item, bytes | Streamed | Exception]]:
    """Yield each item with its bytes, or with the exception that stopped its reading.

    With ``streamed``, an item it says yes to (from its first :data:`HEAD_BYTES` and its
    name) is read through, hashed and counted, never held: it comes as a :class:`Streamed`,
    and the limit on a photo's size does not apply to it.

    Consecutive members of one archive are read in a single pass over it: a compressed
    tar cannot seek, so opening it once per member would cost quadratic time. Members are
    inflated a chunk at a time and counted, whatever their headers say: one that inflates
    past :data:`MAX_MEMBER_BYTES` gives :class:`ArchiveMemberTooLargeError`, one whose real
    size is not its header's gives :class:`DamagedArchiveMemberError`.
    """
    pending = list(items)
    position = 0
    while position < len(pending):
        item = pending[position]
        end = position + 1
        while end < len(pending) and item.archive and pending[end].container == item.container:
            end += 1
        group = pending[position:end]
        position = end
        if item.archive is None:
            try:
                with _open_checked(item) as handle:
                    got = _read_file(item, handle, streamed)
            except OSError as exc:
                got = exc
            yield item, got
        elif item.archive == "zip":
            yield from _read_zip(group, streamed)
        else:
            yield from _read_tar(group, streamed)


def _read_file(item: Item, handle: BinaryIO, streamed: StreamTest | None) -> bytes | Streamed | Exception:
    # The head is read apart (pread leaves the buffered handle empty), so that the whole
    # read below is still one read into one bytes object, not a head and a rest joined.
    if streamed is not None and streamed(os.pread(handle.fileno(), HEAD_BYTES, 0), item.display):
        digest, size = hashlib.sha256(), 0
        head = b""
        while chunk := handle.read(_CHUNK):
            head = head or chunk[:HEAD_BYTES]
            digest.update(chunk)
            size += len(chunk)
        return Streamed(digest.hexdigest(), size, head)
    size = os.fstat(handle.fileno()).st_size
    if size > MAX_MEMBER_BYTES:  # read whole, a 10 GB "photo" would be 10 GB of memory
        return ImageTooLargeError(
            f"{item.container}: the file is {size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte "
            "limit for a photo; check what it is, and scale or convert it if it is one."
        )
    return handle.read()


def _open_checked(item: Item) -> BinaryIO:
    """Open the file holding ``item``; refuse what is not a regular file, or not under its root.

    The check is made on what was opened (the descriptor's own path), not on the name: a
    file swapped for a symbolic link after :func:`collect` looked at it is still refused.
    A FIFO or device named like a photo would block or never end: refused too.
    """
    # Non-blocking, so that opening a FIFO does not wait for a writer; a regular file
    # reads the same either way.
    handle = os.fdopen(os.open(item.container, os.O_RDONLY | os.O_NONBLOCK), "rb")
    try:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{item.container} is not a regular file")
        if item.root is not None:
            proc = f"/proc/self/fd/{handle.fileno()}"
            real = os.readlink(proc) if os.path.exists(proc) else os.path.realpath(item.container)
            reason = _outside(Path(real), item.root)
            if reason is not None:
                raise PermissionError(reason)
    except BaseException:
        handle.close()
        raise
    return handle


def _read_zip(group: list[Item], streamed: StreamTest | None) -> Iterator[tuple[Item, bytes | Streamed | Exception]]:
    try:
        handle = _open_checked(group[0])
    except OSError as exc:
        for item in group:
            yield item, exc
        return
    try:
        archive = zipfile.ZipFile(handle)
    except _ZIP_ERRORS as exc:
        handle.close()
        for item in group:
            yield item, exc
        return
    with handle, archive:
        for item in group:
            try:
                info = archive.getinfo(item.member)  # type: ignore[arg-type]
                yield item, _read_zip_member(archive, info, _for(streamed, item))
            except (*_ZIP_ERRORS, ArchiveMemberTooLargeError, DamagedArchiveMemberError) as exc:
                yield item, exc


def _read_tar(group: list[Item], streamed: StreamTest | None) -> Iterator[tuple[Item, bytes | Streamed | Exception]]:
    wanted = {item.member: item for item in group}
    try:
        with _open_checked(group[0]) as handle, tarfile.open(fileobj=handle) as archive:
            for info in archive:
                item = wanted.pop(info.name, None)
                if item is None:
                    continue
                yield item, _read_tar_member(archive, info, _for(streamed, item))
                if not wanted:
                    return
    except _TAR_ERRORS as exc:
        for item in wanted.values():
            yield item, exc
        return
    for item in wanted.values():
        yield item, OSError("the member disappeared from the archive")


def _for(streamed: StreamTest | None, item: Item) -> Callable[[bytes], bool] | None:
    """``streamed`` for one item: a test of its head alone."""
    return None if streamed is None else (lambda head: streamed(head, item.display))


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                     streamed: Callable[[bytes], bool] | None = None) -> bytes | Streamed:
    """Inflate one zip member, counting the bytes rather than trusting its header's size."""
    # zipfile stops at the header's size; telling it more than the limit lets the real size
    # show (and its CRC check, made at that stop, comes after the limit has refused a bomb).
    probe = copy.copy(info)
    probe.file_size = min(info.file_size, MAX_MEMBER_BYTES) + 2 * _CHUNK
    what = f"{info.filename} in the zip archive"
    try:
        with archive.open(probe) as handle:
            return _read_counted(handle, info.file_size, what, streamed)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DamagedArchiveMemberError(
            f"{what} is damaged ({exc}); re-create the archive from the original photos."
        ) from exc


def _read_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo,
                     streamed: Callable[[bytes], bool] | None = None) -> bytes | Streamed | Exception:
    """One tar member's bytes, or why not (a member cut short is damaged, not a short photo)."""
    what = f"{info.name} in the tar archive"
    try:
        handle = archive.extractfile(info)
        if handle is None:
            return OSError(f"{info.name} is not a regular file in the archive")
        return _read_counted(handle, info.size, what, streamed)
    except (ArchiveMemberTooLargeError, DamagedArchiveMemberError) as exc:
        return exc
    except _TAR_ERRORS as exc:
        return DamagedArchiveMemberError(
            f"{what} cannot be read to its end ({exc}); copy the complete archive again."
        )


def _read_counted(handle: io.BufferedIOBase, expected: int, what: str,
                  streamed: Callable[[bytes], bool] | None = None) -> bytes | Streamed:
    """Read ``handle`` to its end in chunks, stopping as soon as it passes its header's size.

    Nothing past ``expected`` (at most :data:`MAX_MEMBER_BYTES`) is kept: a member that
    inflates further is refused after one chunk more, however far it would go. A member
    whose first chunk ``streamed`` says yes to is hashed, not kept.
    """
    if expected > MAX_MEMBER_BYTES:
        raise ArchiveMemberTooLargeError(f"{what}: {_too_big(expected)}.")
    out = io.BytesIO()
    digest = head = None
    read = 0
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        if not read and streamed is not None and streamed(chunk[:HEAD_BYTES]):
            digest, head = hashlib.sha256(), chunk[:HEAD_BYTES]
        if digest is None:
            out.write(chunk)
        else:
            digest.update(chunk)
        read += len(chunk)
        if read > expected:
            raise DamagedArchiveMemberError(
                f"{what} inflates to more than the {expected:,} bytes its header says (it was not "
                "read further): the archive is damaged or forged. Re-create it from the original photos."
            )
    if read != expected:
        raise DamagedArchiveMemberError(
            f"{what} inflates to {read:,} bytes but its header says {expected:,}: the archive "
            "is damaged or forged. Re-create it from the original photos."
        )
    return out.getvalue() if digest is None else Streamed(digest.hexdigest(), read, head or b"")


def _add_file(found: Collection, path: Path, taken: tuple[str, ...], *, explicit: bool,
              root: str | None = None) -> None:
    lower = path.name.lower()
    display = os.path.abspath(path)
    reason = _outside(path, root) if root is not None else None
    if reason is not None:
        found.refused.append((display, reason))
        return
    if lower.endswith(_ZIP_SUFFIXES):
        _add_zip(found, display, taken, root)
    elif lower.endswith(_TAR_SUFFIXES):
        _add_tar(found, display, taken, root)
    elif explicit or lower.endswith(taken):
        found.items.append(Item(display=display, container=display, root=root))
    else:
        found.ignored.append(display)


def _add_zip(found: Collection, archive_path: str, taken: tuple[str, ...], root: str | None = None) -> None:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            infos = sorted(archive.infolist(), key=lambda i: i.filename)
            copies = Counter(info.filename for info in infos)
            for info in infos:
                if info.is_dir():
                    continue
                display = f"{archive_path}!/{info.filename}"
                if not info.filename.lower().endswith(taken):
                    found.ignored.append(display)
                elif copies[info.filename] > 1:
                    found.refused.append((display, _same_name(copies[info.filename])))
                elif info.compress_type not in _ZIP_METHODS:
                    found.refused.append((display, _unsupported_method(info.compress_type)))
                elif info.file_size > MAX_MEMBER_BYTES:
                    found.refused.append((display, _too_big(info.file_size)))
                else:
                    found.items.append(Item(display, archive_path, info.filename, "zip", root))
    except _ZIP_ERRORS as exc:
        found.refused.append((archive_path, f"the zip archive cannot be read ({exc})"))


def _add_tar(found: Collection, archive_path: str, taken: tuple[str, ...], root: str | None = None) -> None:
    try:
        with tarfile.open(archive_path) as archive:
            # Archive order, not name order: members are then read in one forward pass.
            infos = [info for info in archive.getmembers() if info.isfile()]
            copies = Counter(info.name for info in infos)
            for info in infos:
                display = f"{archive_path}!/{info.name}"
                if not info.name.lower().endswith(taken):
                    found.ignored.append(display)
                elif copies[info.name] > 1:
                    found.refused.append((display, _same_name(copies[info.name])))
                elif info.size > MAX_MEMBER_BYTES:
                    found.refused.append((display, _too_big(info.size)))
                else:
                    found.items.append(Item(display, archive_path, info.name, "tar", root))
    except _TAR_ERRORS as exc:
        found.refused.append((archive_path, f"the tar archive cannot be read ({exc})"))


def _same_name(count: int) -> str:
    return (
        f"the archive holds {count} members under this name, which cannot be told apart (the "
        "archive is damaged or crafted); extract it and check which one is the photo"
    )


def _unsupported_method(method: int) -> str:
    names = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
    return (
        f"the archive member is compressed with {names.get(method, f'method {method}')}, which "
        "Vultus does not inflate (its size cannot be bounded while inflating); re-create the zip "
        "with the ordinary deflate method, or extract it first"
    )


def _too_big(size: int) -> str:
    return (
        f"the archive member is {size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte limit for a "
        "photo; extract and check it by hand"
    )
