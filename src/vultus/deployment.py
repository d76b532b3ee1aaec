"""A data directory as a deployment: made owner-only, its key file checked, one writer at a time, crashes swept.

:class:`Deployment` holds what every use case needs from the data directory (the store,
the blob folder, the keys) and the rules of using it: the key file must be the one the
directory was created with, one writer at a time across processes and threads, an
erasure a crash cut short is finished before anything else is written, and what an
interrupted writer left behind is swept.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

from .config import Settings
from .crypto import Keyring
from .datadir import Presence, secure_permissions
from .erasures import finish_pending
from .errors import DataDirError, DataDirLockedError, KeyFileError, ModelError, PolicyError, TamperedDataError, storage_error
from .index import VectorIndex, default_index_url, index_backend
from .store import BlobStore, MetadataStore, default_store_url, iso, open_store, store_exists, utcnow

__all__ = ["DIRTY_MARKER", "Deployment"]

#: Present while a writer works; found at the next writer's start, it means a crash.
DIRTY_MARKER = ".writing"


class Deployment:
    """One data directory, opened: its store, blobs and keys, and its writer lock.

    ``index`` (set by whoever builds the index over this store) opens the vector index
    for writing; the writer lock needs it to finish an interrupted erasure.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        try:
            # Owner-only: the directory holds biometric data, even if encrypted.
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, self.data_dir) or DataDirError(
                f"Cannot create the data directory {self.data_dir}: {exc.strerror}."
            ) from exc
        if not os.access(self.data_dir, os.W_OK):
            read_only = bool(os.statvfs(self.data_dir).f_flag & os.ST_RDONLY)
            raise storage_error(OSError(errno.EROFS if read_only else errno.EACCES, "not writable"), self.data_dir)
        # A key file is made only with a new deployment: a missing one for existing data is
        # an error, never a silent new key that would leave the data unreadable.
        store_url = settings.store.url or default_store_url(self.data_dir)
        #: Where the metadata store is: the setting, else SQLite in DATA/vultus.db.
        self.store_url = store_url
        #: Where the vector index is: the setting, else FAISS files in DATA/index.
        self.index_url = settings.index.url or default_index_url(self.data_dir)
        index_backend(self.index_url)  # an unknown scheme is refused before anything is made
        is_new = not store_exists(store_url)
        try:
            self.keys = Keyring.open(settings.key_path, create=is_new)
        except KeyFileError as exc:
            raise KeyFileError(
                f"{exc} The data directory {self.data_dir} was created with a key file: point "
                "--key-file (or VULTUS_KEY_FILE) at it, or restore it from your backup."
            ) from None
        #: Things the operator should know about this deployment (printed by the CLI).
        self.notices: list[str] = secure_permissions(self.data_dir, settings.key_path)
        self.presence = Presence(self.data_dir)
        try:
            self.store: MetadataStore = open_store(store_url, self.keys)
            self._check_key_belongs()
        except BaseException:
            self.presence.close()
            raise
        # The public page's counts live a day; without new attempts nothing else would delete them.
        self.store.registers.forget_public_attempts(before=iso(utcnow() - timedelta(days=1)))
        if self.keys.rotation_pending:
            self.notices.append(
                "A key rotation was interrupted: an old key is still in the key file. Run `vultus keys rotate` "
                "to finish it (nothing is lost meanwhile; both keys still open the data)."
            )
        self.blobs = BlobStore(self.data_dir / "blobs", self.keys)
        self.index: Callable[[], VectorIndex] | None = None
        self._lock_fd: int | None = None
        self._store_release: Callable[[], None] | None = None
        # The server shares one engine between threads: one writer at a time.
        self._write_mutex = threading.Lock()

    def finish_interrupted(self) -> None:
        """Finish an erasure a crash cut short, if there is one (any command does, reads included).

        When another process holds the writer lock, that one has done it at its start.
        """
        if self.store.erasures.has_pending():
            try:
                with self.writing():
                    pass
            except DataDirLockedError:
                pass

    def _check_key_belongs(self) -> None:
        """Refuse a key file from another deployment before anything is written with it.

        The signing key's fingerprint names the deployment; one sealed template, opened
        here, proves the encryption keys are the right ones too. Without that check a key
        file with the right signing key but another AES key would surface later as a
        "corrupt index", and a rebuild would be tried that cannot succeed.
        """
        fingerprint = hashlib.sha256(self.keys.public_key).hexdigest()[:32]
        recorded = self.store.get_meta("key_fingerprint")
        if recorded is None:
            self.store.set_meta("key_fingerprint", fingerprint)
        elif recorded != fingerprint:
            self.store.close()
            raise KeyFileError(
                f"The key file {self.keys.path} belongs to another deployment (fingerprint "
                f"{fingerprint}, this data directory expects {recorded}). Use the key file it was "
                "created with."
            )
        try:
            self.store.open_one_template()
        except (KeyFileError, TamperedDataError):
            self.store.close()
            raise KeyFileError(
                f"The encryption keys in {self.keys.path} do not open the templates in {self.data_dir}: "
                "this is the wrong key file (or a damaged copy of the right one). Nothing was changed. "
                "Use the key file this data directory was created with, or restore it from your backup."
            ) from None

    def close(self) -> None:
        """Release the database, the writer lock and this process's hold on the directory."""
        self._release_lock()
        self.store.close()
        self.presence.close()

    def alone_to_rotate(self):  # noqa: ANN201 - the presence's exclusive hold, a context manager
        """This process's sole hold on the directory, for a key rotation (refused beside another process)."""
        return self.presence.alone(why=(
            f"Another process has {self.data_dir} open (`vultus serve`, or a command still running). "
            "Rotating beside it would leave it writing under a dropped key, so nothing was changed. "
            "Rotate through the running server (POST /v1/keys/rotate as an admin), or stop it and run "
            "`vultus keys rotate` again."))

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the data directory's writer lock: one writer at a time, across processes
        (a lock file) and across the threads of this process (a mutex), and the store's
        own (PostgreSQL: an advisory lock, across hosts)."""
        busy = DataDirLockedError(
            f"Another Vultus operation is writing to {self.data_dir} (an ingest, erasure, purge, "
            "key rotation or reindex). Wait for it to finish, then run this again."
        )
        if not self._write_mutex.acquire(blocking=False):
            raise busy
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._write_mutex.release()
            raise busy from None
        self._lock_fd = fd
        try:
            self._store_release = self.store.hold_writer()
        except BaseException:
            self._release_lock()
            raise
        marker = self.data_dir / DIRTY_MARKER
        try:
            assert self.index is not None, "the index opener is wired before anything is written"
            finish_pending(store=self.store, blobs=self.blobs, keys=self.keys, index=self.index)
            if marker.exists():
                self._sweep_after_crash()
            marker.touch()
            try:
                yield
            except (PolicyError, ModelError):
                marker.unlink()  # refused by a check that runs before anything is written
                raise
            marker.unlink()
        finally:
            self._release_lock()

    def _sweep_after_crash(self) -> None:
        """Remove what an interrupted writer left: temporary files and unreferenced blobs.

        A writer puts blobs on disk before their rows commit, so a kill in between leaves
        a photo copy that nothing refers to; it must not outlive its (never stored) row.
        """
        if self.blobs.root.is_dir():
            for tmp in self.blobs.root.rglob(".tmp-*"):
                tmp.unlink(missing_ok=True)
        index_backend(self.index_url).sweep(self.index_url)
        referenced = self.store.blob_keys()
        for key in self.blobs.keys():
            if key not in referenced:
                self.blobs.delete(key)

    def _release_lock(self) -> None:
        release, self._store_release = self._store_release, None
        if release is not None:
            release()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
            self._write_mutex.release()
