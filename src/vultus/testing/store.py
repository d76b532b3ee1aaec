"""An in-memory metadata store: the SQLite backend on a private in-memory database.

``memory://NAME`` URLs open it once :mod:`vultus.testing` is imported, so a use-case test
needs no database file: ``open_store("memory://t1", keys)``. Two opens of the same name
in one process share the database (as two opens of one file do) until the last is closed;
then it is gone. It keeps every promise of the store contract, being the same code as the
embedded default on another kind of database.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.pool import QueuePool

from ..errors import SettingsError
from ..store import SQLiteStore, StoreBackend, register_store
from ..store.blobs import Cipher

__all__ = ["MemoryStore", "memory_store_url"]

#: name -> (a connection that keeps the shared in-memory database alive, how many stores use it).
_KEEPERS: dict[str, tuple[sqlite3.Connection, int]] = {}
_LOCK = threading.Lock()


def _target(name: str) -> str:
    # SQLite's URI form of a named in-memory database that connections of one process share.
    return f"file:vultus-{name}?mode=memory&cache=shared"


class MemoryStore(SQLiteStore):
    """The SQLite store on a named in-memory database, dropped when its last store closes."""

    def __init__(self, name: str, cipher: Cipher):
        with _LOCK:
            keeper, users = _KEEPERS.get(name) or (sqlite3.connect(_target(name), uri=True, check_same_thread=False), 0)
            _KEEPERS[name] = (keeper, users + 1)
        self.name = name
        try:
            # SQLAlchemy hands "uri=true" to sqlite3, which then reads the file: URI above.
            # A pool of connections, as for a file: the keeper holds the database between them;
            # shared between threads as a file's are (a search opens the index in another thread).
            super().__init__(Path(_target(name) + "&uri=true&check_same_thread=false"), cipher, pool=QueuePool)
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        super().close()
        self._release()

    def _release(self) -> None:
        with _LOCK:
            keeper, users = _KEEPERS[self.name]
            if users > 1:
                _KEEPERS[self.name] = (keeper, users - 1)
            else:
                del _KEEPERS[self.name]
                keeper.close()


def _name(url: str) -> str:
    name = urlsplit(url).netloc
    if not name.isidentifier():
        raise SettingsError(f"An in-memory store URL is memory://NAME (letters, digits, _), not {url!r}.")
    return name


def memory_store_url(name: str) -> str:
    """The URL of the in-memory store ``name``."""
    return f"memory://{name}"


register_store("memory", StoreBackend(open=lambda url, cipher: MemoryStore(_name(url), cipher),
                                      exists=lambda url: _name(url) in _KEEPERS,
                                      description="in-memory SQLite (vultus.testing)"))
