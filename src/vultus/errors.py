"""Every error a user of Vultus can cause, each with a message that says what to do.

The hierarchy::

    VultusError
    ├── SettingsError              a setting or option has a value Vultus cannot use
    ├── DataDirError               the data directory cannot be used
    │   ├── DataDirLockedError     another process is writing to it
    │   │   └── DataDirInUseError  another process has it open (key rotation needs it alone)
    │   ├── DiskFullError          no space left on the disk (ENOSPC)
    │   ├── DataDirPermissionError the operating system refuses access (EACCES, EPERM)
    │   ├── ReadOnlyDataDirError   the data directory is on a read-only file system
    │   └── KeyFileError           the key file is missing, damaged or the wrong one
    ├── MediaError                 a file could not be turned into pixels
    │   ├── EmptyFileError
    │   ├── NotAnImageError
    │   ├── CorruptImageError
    │   ├── TruncatedImageError
    │   ├── ImageTooLargeError
    │   ├── ArchiveMemberTooLargeError  an archive member inflates past the member limit
    │   ├── DamagedArchiveMemberError   an archive member's data is not what its header says
    │   └── VideoError             a video cannot be read (or PyAV is missing)
    │       ├── NotAVideoError     the content is in no supported video container
    │       ├── NoVideoStreamError the file holds no video stream (audio only, a cover picture)
    │       ├── CorruptVideoError  the container or its pictures cannot be decoded
    │       ├── TruncatedVideoError the file ends before its container says it does
    │       ├── VideoTooLongError  longer than the duration limit
    │       └── VideoTooLargeError frames over the pixel limit
    ├── FaceError
    │   ├── NoFaceError            the probe photo has no face
    │   ├── FaceChoiceError        --face N names a face the probe does not have
    │   └── ProbeChoiceError       probe photos that cannot be searched together (too many, ...)
    ├── ModelError
    │   ├── UnknownModelError
    │   ├── ModelFilesMissingError
    │   ├── ModelFormatError       an ONNX file does not have a detector's or embedder's shape
    │   └── ModelMismatchError     the gallery was built with another embedder
    ├── PolicyError
    │   ├── RemoteSourceRefused    an http(s) address: there is no crawler
    │   ├── UnknownSourceError
    │   ├── SourceExistsError
    │   ├── InvalidSourceError     bad name, legal basis or retention
    │   ├── MissingPurposeError
    │   ├── UnknownCategoryError   a search category not in the vocabulary
    │   ├── InputPathError         an ingest path that does not exist
    │   ├── OutputPathError        a file to write (a report) whose folder is missing or read-only
    │   ├── UnknownRequestError    no (open) request has that id
    │   ├── UnknownReceiptError    no finished erasure has that id
    │   ├── RateLimitedError       too many public requests from one address
    │   └── PeopleError            a grouping change that cannot be made as asked
    │       ├── UnknownPersonError no person group has that id
    │       └── ClusteringOffError the source's registration does not allow grouping its faces
    ├── WorkerCrashedError         an ingest worker process died
    ├── ExecutorError              the ingest executor cannot be used (Ray missing or unreachable)
    ├── ReceiptError               a receipt is malformed or its signature fails
    ├── AccountError               a bad user name or role
    │   └── UnknownAccountError    no user has that name
    ├── TamperedDataError          stored encrypted data fails its integrity check
    ├── IndexCorruptError          the vector index file cannot be read
    ├── IndexUnavailableError      the vector index's server (Milvus) does not answer
    ├── IndexErasureError          a removed template still comes back from the index after its flush
    └── MigrationError             `vultus migrate` refused a target, or its checks failed

Library code raises these; the CLI turns them into ``click.ClickException`` at
the edge, so the message is all a user sees.
"""

from __future__ import annotations

__all__ = [
    "VultusError",
    "SettingsError",
    "DataDirError",
    "DataDirLockedError",
    "DataDirInUseError",
    "DiskFullError",
    "DataDirPermissionError",
    "ReadOnlyDataDirError",
    "KeyFileError",
    "storage_error",
    "MediaError",
    "EmptyFileError",
    "NotAnImageError",
    "CorruptImageError",
    "TruncatedImageError",
    "ImageTooLargeError",
    "ArchiveMemberTooLargeError",
    "DamagedArchiveMemberError",
    "VideoError",
    "NotAVideoError",
    "NoVideoStreamError",
    "CorruptVideoError",
    "TruncatedVideoError",
    "VideoTooLongError",
    "VideoTooLargeError",
    "FaceError",
    "NoFaceError",
    "FaceChoiceError",
    "ProbeChoiceError",
    "ModelError",
    "ModelFormatError",
    "UnknownModelError",
    "ModelFilesMissingError",
    "ModelMismatchError",
    "PolicyError",
    "RemoteSourceRefused",
    "UnknownSourceError",
    "SourceExistsError",
    "InvalidSourceError",
    "MissingPurposeError",
    "UnknownCategoryError",
    "InputPathError",
    "OutputPathError",
    "UnknownRequestError",
    "UnknownReceiptError",
    "RateLimitedError",
    "PeopleError",
    "UnknownPersonError",
    "ClusteringOffError",
    "WorkerCrashedError",
    "ExecutorError",
    "ReceiptError",
    "AccountError",
    "UnknownAccountError",
    "TamperedDataError",
    "IndexCorruptError",
    "IndexUnavailableError",
    "IndexErasureError",
    "MigrationError",
]


class VultusError(Exception):
    """Base of every error Vultus raises on purpose."""


class SettingsError(VultusError):
    """A setting, option or environment variable has an unusable value."""


class DataDirError(VultusError):
    """The data directory cannot be created, read or written."""


class DataDirLockedError(DataDirError):
    """Another process holds the data directory's writer lock."""


class DataDirInUseError(DataDirLockedError):
    """Another process (``vultus serve``, a search) has the data directory open."""


class DiskFullError(DataDirError):
    """The disk holding the data directory (or the temporary folder) is full."""


class DataDirPermissionError(DataDirError):
    """The operating system refuses Vultus access to a file it needs."""


class ReadOnlyDataDirError(DataDirError):
    """The data directory cannot be written: a read-only file system or database."""


class KeyFileError(DataDirError):
    """The key file cannot be read, or does not hold the key some data was encrypted with."""


class MediaError(VultusError):
    """A file could not be decoded into an image."""


class EmptyFileError(MediaError):
    """The file has no bytes."""


class NotAnImageError(MediaError):
    """The file's content is not in any supported image format."""


class CorruptImageError(MediaError):
    """The file claims an image format but its data cannot be decoded."""


class TruncatedImageError(MediaError):
    """The image data stops before the end of the picture."""


class ImageTooLargeError(MediaError):
    """The image has more pixels, or would take more memory to decode, than the limits allow."""


class ArchiveMemberTooLargeError(MediaError):
    """An archive member inflates to more bytes than a photo may have (archive-bomb guard)."""


class DamagedArchiveMemberError(MediaError):
    """An archive member inflates to another size than its header says, or ends early."""


class VideoError(MediaError):
    """A video file could not be turned into frames."""


class NotAVideoError(VideoError):
    """The content is not in a supported video container (MP4, MOV, M4V, MKV, WebM, AVI)."""


class NoVideoStreamError(VideoError):
    """The container holds no video stream: audio only, or only a still cover picture."""


class CorruptVideoError(VideoError):
    """The container cannot be opened, or its pictures cannot be decoded."""


class TruncatedVideoError(VideoError):
    """The file ends before the point its container says it ends (an incomplete copy)."""


class VideoTooLongError(VideoError):
    """The video lasts longer than the duration limit."""


class VideoTooLargeError(VideoError):
    """The video's frames have more pixels than the limit (a guard against decoding bombs)."""


class FaceError(VultusError):
    """A problem with the faces found in a probe photo."""


class NoFaceError(FaceError):
    """No face was found where one is needed."""


class FaceChoiceError(FaceError):
    """The chosen face number does not exist in the probe."""


class ProbeChoiceError(FaceError):
    """Probe photos that cannot be used together: too many, one given twice, ``--face`` with
    several, or (in a rights request) faces that are not all the same person's."""


class ModelError(VultusError):
    """A face model cannot be used."""


class UnknownModelError(ModelError):
    """No detector or embedder is registered under that name."""


class ModelFilesMissingError(ModelError):
    """The model's weight files are not installed."""


class ModelFormatError(ModelError):
    """A model file cannot be read, or its inputs and outputs are not what its kind needs."""


class ModelMismatchError(ModelError):
    """The gallery's templates were made by a different embedder."""


class PolicyError(VultusError):
    """A request that the rules of lawful processing refuse."""


class RemoteSourceRefused(PolicyError):
    """An http(s) address was given where only local files are accepted."""


class UnknownSourceError(PolicyError):
    """No source is registered under that name."""


class SourceExistsError(PolicyError):
    """A source with that name is already registered."""


class InvalidSourceError(PolicyError):
    """A source's name, legal basis, retention or other field is not acceptable."""


class MissingPurposeError(PolicyError):
    """A search was asked for without a purpose or case reference."""


class UnknownCategoryError(PolicyError):
    """A search category (of a search, a source's purposes or the default) is not in the vocabulary."""


class InputPathError(PolicyError):
    """An ingest path does not exist or cannot be read."""


class OutputPathError(PolicyError):
    """A file Vultus is asked to write (an evaluation report) cannot be written where asked."""


class WorkerCrashedError(VultusError):
    """An ingest worker process died; what was stored before it is kept."""


class ExecutorError(VultusError):
    """The ingest executor asked for cannot be used: unknown, not installed, or its cluster unreachable."""


class ReceiptError(VultusError):
    """A receipt is not a Vultus receipt, or its signature does not match its content."""


class AccountError(VultusError):
    """A user account cannot be created or found as asked."""


class UnknownAccountError(AccountError):
    """No account has that name."""


class TamperedDataError(VultusError):
    """Encrypted data in the data directory is malformed or fails authentication."""


class UnknownRequestError(PolicyError):
    """No request, or no open public request, has that id."""


class UnknownReceiptError(PolicyError):
    """No erasure has that id, or it is not finished yet, so it has no receipt to show."""


class RateLimitedError(PolicyError):
    """Too many public requests from one contact address or client in a day."""


class PeopleError(PolicyError):
    """A change to the people groups that cannot be made as asked (a bad name, a merge across sources, ...)."""


class UnknownPersonError(PeopleError):
    """No person group has that id."""


class ClusteringOffError(PeopleError):
    """The source's registration does not allow grouping its faces into people (clustering is off)."""


class IndexCorruptError(VultusError):
    """The vector index file cannot be read; `vultus reindex` rebuilds it."""


class IndexUnavailableError(VultusError):
    """The vector index's server (Milvus) does not answer; the store still holds every template."""


class IndexErasureError(VultusError):
    """A removed template still comes back from the index after it was flushed: the erasure is not finished."""


class MigrationError(VultusError):
    """`vultus migrate` refused its target (not empty, the deployment's own) or its checks failed."""


def storage_error(exc: BaseException, where: object = "the data directory") -> "DataDirError | None":
    """The :class:`DataDirError` that explains an operating-system or SQLite failure, or None.

    ``exc`` is an :class:`OSError` or a database error (its message is read: SQLite reports
    a full disk as "database or disk is full", and at 100% even a read as "disk I/O error");
    ``where`` names the folder for the message. Nothing is retried: the caller stopped
    before anything half-written became visible (writes are atomic renames and
    transactions), so the advice is to fix the cause and run the command again.
    """
    import errno
    import shutil

    code = getattr(exc, "errno", None)
    text = str(getattr(exc, "orig", None) or exc).lower()
    full = code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text
    if not full and ("disk i/o error" in text or code == errno.EIO):
        try:
            full = shutil.disk_usage(str(where)).free < 1024 * 1024
        except OSError:
            full = False
    if full:
        return DiskFullError(
            f"No space is left on the disk that holds {where}. Nothing half-written was kept; "
            "free some space (or move the data directory with --data) and run the command again."
        )
    if code == errno.EROFS or "readonly database" in text or "read-only file system" in text:
        return ReadOnlyDataDirError(
            f"{where} is on a read-only file system or its database is read-only. Vultus needs to "
            "write there, even to search (the audit log); mount it read-write or copy it elsewhere."
        )
    if code in (errno.EACCES, errno.EPERM) or "unable to open database" in text:
        name = getattr(exc, "filename", None) or where
        return DataDirPermissionError(
            f"Permission denied for {name}. Run Vultus as the user that owns {where} "
            "(its files are owner-only on purpose), or fix the owner with chown."
        )
    if "disk i/o error" in text or code == errno.EIO:
        return DataDirError(
            f"The disk failed to read or write {where} (I/O error). Check the disk (dmesg, "
            "smartctl), then run the command again; nothing half-written was kept."
        )
    return None
