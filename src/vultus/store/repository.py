"""The embedded metadata store: SQLite (WAL) in the data directory, registered for ``sqlite:///PATH``.

The reads and writes are :class:`~vultus.store.sqlstore.SQLStore`'s; what is SQLite's own is
here: the PRAGMAs of every connection (WAL, foreign keys, secure_delete), the upgrade of the
file through the migrations, and :meth:`SQLiteStore.purge_deleted` (a WAL checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import Pool

from ..errors import DataDirError, SettingsError, storage_error
from .base import StoreBackend, register_store
from .blobs import Cipher
from .dialects import SQLITE
from .migrate import upgrade_database
from .records import FaceHit, NewAppearance, NewFace, RemovedImage, RemovedVideo, SourceRecord, iso, utcnow
from .rows import TableRows
from .sqlstore import SQLStore

__all__ = ["SQLiteStore", "Store", "SourceRecord", "NewFace", "NewAppearance", "FaceHit", "RemovedImage",
           "RemovedVideo", "utcnow", "iso"]


class SQLiteStore(SQLStore, TableRows):
    """The embedded metadata store: one SQLite file, written in short transactions
    (a :class:`~vultus.store.base.MetadataStore`, registered for ``sqlite:///PATH`` URLs).
    Whole tables (for `vultus migrate`) go through :class:`~vultus.store.rows.TableRows`."""

    def __init__(self, db_path: Path, cipher: Cipher, *, pool: type[Pool] | None = None):
        self.path = Path(db_path)
        # ``pool``: a pool class for databases that are not files (the in-memory test store).
        engine = create_engine(f"sqlite:///{self.path}", future=True,
                               **({"poolclass": pool} if pool is not None else {}))
        super().__init__(engine, cipher, SQLITE)
        event.listen(self.engine, "connect", _on_connect)
        try:
            # New, pre-migration (stamped) and older-revision databases alike reach the newest
            # revision here, or are refused unchanged.
            upgrade_database(self.path, _on_connect)
            self._forget_plain_hashes()
        except OperationalError as exc:
            raise storage_error(exc, self.path.parent) or DataDirError(
                f"Cannot open the database {self.path}: {exc.orig}"
            ) from exc

    def purge_deleted(self) -> None:
        """Leave no copy of deleted rows in the store's files, as far as the backend can.

        SQLite: fold the write-ahead log into the database and truncate it, so freed pages
        (zeroed by secure_delete) are the only copy left."""
        with self.session.read() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


#: The name the use cases knew the SQLite store by, kept for callers that build one directly.
Store = SQLiteStore


def _sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL names (an absolute path after the third slash)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise SettingsError(f"A SQLite store URL is sqlite:///PATH to a database file, not {url!r}.")
    return Path(url[len(prefix) - 1:] if url[len(prefix)] != "/" else url[len(prefix):])


def _open_sqlite(url: str, cipher: Cipher) -> SQLiteStore:
    path = _sqlite_path(url)
    if not path.parent.is_dir():
        raise SettingsError(f"The folder of the store {path} does not exist; create it or fix VULTUS_STORE__URL.")
    if not path.exists():
        try:
            # Made owner-only before SQLite opens it: SQLite gives its WAL files the
            # database's mode, and would otherwise create all three under the umask.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise storage_error(exc, path.parent) or DataDirError(f"Cannot create the database {path}: {exc.strerror}.") from exc
    return SQLiteStore(path, cipher)


register_store("sqlite", StoreBackend(open=_open_sqlite, exists=lambda url: _sqlite_path(url).exists(),
                                      description="SQLite file"))


def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API connection
    cursor = dbapi_connection.cursor()
    # WAL lets searches read while an ingest writes; NORMAL sync is crash-safe in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted biometric data is overwritten, not left in free pages (GDPR Art. 17).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
