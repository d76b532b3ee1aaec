"""The data directory on disk: owner-only permissions, and who has it open.

Two facts about a deployment that no single command can see, kept here:

- **Permissions.** The directory holds biometric data (sealed, but still), and the key
  file opens it. Both must be readable by their owner only; anything looser is tightened
  when a deployment is opened, and the caller is told (``notices``).
- **Presence.** Every open :class:`~vultus.engine.Engine` holds a shared lock on
  ``DATA/.open`` for its lifetime. An operation that must be alone with the data (key
  rotation: another process would keep the old key in memory and write under it) takes
  it exclusively, and is refused while any other process, ``vultus serve`` included, has
  the deployment open.
"""

from __future__ import annotations

import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import DataDirInUseError, DataDirLockedError

__all__ = ["secure_permissions", "Presence", "PRESENCE_FILE"]

PRESENCE_FILE = ".open"
#: The database and its write-ahead log, which SQLite creates with the database's mode.
_DB_FILES = ("vultus.db", "vultus.db-wal", "vultus.db-shm")


def secure_permissions(data_dir: Path, key_file: Path) -> list[str]:
    """Make the data directory, its database and the key file owner-only; say what changed.

    A file this process does not own is left alone (``chmod`` would fail); only the owner
    can fix it, and the message says so.
    """
    notices = []
    for path, wanted, what in (
        (data_dir, 0o700, "data directory"),
        *((data_dir / name, 0o600, "database file") for name in _DB_FILES),
        (key_file, 0o600, "key file"),
    ):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077 == 0:
            continue
        try:
            os.chmod(path, wanted)
        except OSError:
            notices.append(
                f"The {what} {path} is readable by other users (mode {mode:o}) and cannot be changed by "
                f"this user; its owner should run `chmod {wanted:o} {path}`."
            )
            continue
        notices.append(
            f"The {what} {path} was readable by other users (mode {mode:o}); it is now {wanted:o} "
            "(owner only), since it holds or opens biometric data."
        )
    return notices


class Presence:
    """A shared lock on ``DATA/.open`` held while a deployment is open in this process."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / PRESENCE_FILE
        # A file object, so that an engine dropped without close() still releases the lock.
        self._file: IO[bytes] | None = open(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "rb", buffering=0)
        try:
            fcntl.flock(self._file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise DataDirLockedError(
                f"The encryption key of {data_dir} is being rotated right now; wait for `vultus keys "
                "rotate` to finish, then run this again."
            ) from None

    @contextmanager
    def alone(self, *, why: str) -> Iterator[None]:
        """Hold the deployment exclusively (no other process has it open), or refuse.

        Linux converts a ``flock`` from shared to exclusive by dropping the shared lock
        first, and a failed conversion leaves none: another process could then take the
        exclusive lock in between and find this one absent. So every conversion happens
        under a second lock, ``DATA/.open.gate``, taken exclusively without waiting: while
        it is held nobody else can try to be alone, so the shared lock is always taken back.
        """
        assert self._file is not None
        gate = open(os.open(self.path.with_name(PRESENCE_FILE + ".gate"), os.O_RDWR | os.O_CREAT, 0o600),
                    "rb", buffering=0)
        try:
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataDirInUseError(why) from None
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(self._file, fcntl.LOCK_SH)  # no one can hold it exclusively now
                raise DataDirInUseError(why) from None
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_SH)
        finally:
            gate.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
