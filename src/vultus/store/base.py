"""The metadata-store seam: what use cases may ask of the store, and the registry of backends.

The store is the source of truth (sources, images, faces with their sealed templates, the
registers of rights, the audit chain, accounts). Use cases see only :class:`MetadataStore`:
they group writes with ``with store.transaction():`` and never hold a connection. A backend
registers itself under a URL scheme; the deployment opens the one its settings name.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable
from urllib.parse import urlsplit

import numpy as np

from ..errors import SettingsError
from .blobs import Cipher

__all__ = ["MetadataStore", "StoreBackend", "register_store", "store_backend", "store_schemes",
           "default_store_url", "open_store", "store_exists"]

#: The database file of the embedded default, inside the data directory.
DEFAULT_DB_NAME = "vultus.db"


@runtime_checkable
class MetadataStore(Protocol):
    """Rows of one deployment, written in transactions; templates sealed with the deployment's cipher.

    ``registers`` (suppression entries and requests), ``accounts``, ``erasures`` (the erasure
    log) and ``people`` (people groups: :class:`~vultus.store.people.People`) are parts of the
    same store and join its open transaction.
    """

    registers: Any
    accounts: Any
    erasures: Any
    people: Any

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything the block does through this store commits together or not at all."""
        ...

    # sources
    def add_source(self, **fields: Any) -> Any:
        """Register a source; ``purposes`` (search categories) are stored with it, in one transaction."""
        ...

    def get_source(self, name: str) -> Any: ...
    def list_sources(self) -> list: ...

    def set_source_purposes(self, name: str, purposes: Sequence[str]) -> Any:
        """Replace the search categories a source allows; the source as it is then."""
        ...

    def source_face_ids(self, source_ids: Sequence[int]) -> np.ndarray:
        """Ids of the searchable (not restricted) faces of these sources."""
        ...

    # images and faces
    def known_sha256(self, digests: Iterable[str]) -> set[str]: ...
    def add_image(self, **fields: Any) -> Any: ...

    def add_video(self, **fields: Any) -> list[int] | None:
        """Store a video and its appearances (``NewAppearance``) in one transaction; the new face
        ids, or None (nothing stored) when its sha256 is already stored."""
        ...

    def appearance_faces(self, face_ids: Sequence[int]) -> list[int]:
        """``face_ids`` and every other face of the video appearances they belong to."""
        ...

    def searchable_face_ids(self) -> np.ndarray: ...
    def face_vectors(self, ids: Iterable[int] | None = None, *, chunk: int = 5000) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def open_one_template(self) -> None: ...
    def reseal_embeddings(self, is_current: Callable[[bytes], bool], *, chunk: int = 2000) -> int: ...
    def faces_to_reembed(self, model_id: str, *, limit: int = 256) -> list: ...
    def replace_templates(self, *args: Any, **kwargs: Any) -> Any: ...
    def face_signature(self) -> tuple[int, int, int]: ...
    def face_models(self) -> dict[str, int]: ...
    def model_ids(self) -> set[str]: ...
    def hydrate(self, face_ids: Sequence[int]) -> dict: ...
    def counts(self) -> dict[str, int]: ...
    def blob_keys(self) -> set[str]: ...

    # rights and retention
    def restricted_face_ids(self) -> np.ndarray: ...
    def set_restricted(self, face_ids: Sequence[int], flag: bool) -> int: ...
    def images_of_faces(self, face_ids: Sequence[int]) -> list[int]: ...
    def expired_images(self, now: str) -> list[int]: ...
    def delete_images(self, image_ids: Sequence[int]) -> list: ...

    def delete_faces(self, face_ids: Sequence[int]) -> list:
        """Delete the video appearances of ``face_ids`` (every row of each) inside the open
        transaction, and a video's row once none of its appearances is left; ``RemovedVideo`` per video."""
        ...

    def purge_deleted(self) -> None:
        """Leave no copy of deleted rows in the backend's files, as far as it can (SQLite: a WAL
        checkpoint; PostgreSQL: VACUUM of the tables that held personal data)."""
        ...

    def hold_writer(self) -> Callable[[], None]:
        """Take the store's own writer lock, for a store several hosts share (PostgreSQL: an
        advisory lock); the returned function releases it. The deployment holds it with its lock
        file while a writer runs; DataDirLockedError when another writer holds it."""
        ...

    # audit
    def log(self, *, actor: str, action: Any, details: dict) -> int: ...
    def searches_hitting(self, image_sha256s: Iterable[str]) -> list: ...
    def audit_count(self) -> int: ...
    def audit_entries(self, *, since: str | None = None, until: str | None = None, action: str | None = None) -> list: ...
    def verify_audit(self) -> Any: ...

    # deployment facts (the gallery's embedder, the key fingerprint)
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...

    # whole tables, for moving a deployment into another store (`vultus migrate`); table names
    # are those of ``vultus.store.schema.metadata``, rows {column: value} with values as stored
    # (sealed columns as their ciphertext, audit entries with their hashes)
    def row_counts(self) -> dict[str, int]:
        """Rows in every table of the schema, by table name."""
        ...

    def export_rows(self, table: str, *, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Every row of ``table``, ordered by its primary key (by every column where it has none),
        in lists of up to ``chunk`` rows."""
        ...

    def import_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows as :meth:`export_rows` gives them, ids included, inside the open transaction
        (refused outside one); how many. ``meta`` is written with :meth:`set_meta` instead."""
        ...

    def id_sequences(self) -> dict[str, int]:
        """For tables whose ids are never reused, the highest id each ever gave out."""
        ...

    def set_id_sequences(self, values: dict[str, int]) -> None:
        """Inside the open transaction, make each named table's next id higher than its value and
        than every id it holds (never lower than it is)."""
        ...


@dataclass(frozen=True)
class StoreBackend:
    """A store backend: how to open one at a URL, and whether one exists there yet."""

    #: ``open(url, cipher)`` opens (creating and migrating as needed) the store at ``url``.
    open: Callable[[str, Cipher], MetadataStore]
    #: ``exists(url)``: whether a deployment's store is already there (a new one gets new keys).
    exists: Callable[[str], bool]
    #: Words for `vultus stats` and errors, e.g. "SQLite file".
    description: str


_BACKENDS: dict[str, StoreBackend] = {}


def register_store(scheme: str, backend: StoreBackend) -> None:
    """Make a store backend available for URLs whose scheme is ``scheme`` (``sqlite``, ...)."""
    _BACKENDS[scheme] = backend


def store_schemes() -> list[str]:
    """The URL schemes of every registered store backend."""
    return sorted(_BACKENDS)


def default_store_url(data_dir: Path) -> str:
    """The embedded default: SQLite in the data directory."""
    return f"sqlite:///{Path(data_dir).absolute() / DEFAULT_DB_NAME}"


def store_backend(url: str) -> StoreBackend:
    """The backend for ``url``'s scheme; a clear error when none is registered."""
    scheme = urlsplit(url).scheme
    try:
        return _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in store_schemes())
        raise SettingsError(
            f"No metadata store handles {url!r}; set VULTUS_STORE__URL (or --store-url) to a URL "
            f"starting with one of: {known}, or unset it for SQLite in the data directory."
        ) from None


def open_store(url: str, cipher: Cipher) -> MetadataStore:
    """Open the store at ``url`` with the backend its scheme names."""
    return store_backend(url).open(url, cipher)


def store_exists(url: str) -> bool:
    """Whether a store is already at ``url`` (so the deployment is not new)."""
    return store_backend(url).exists(url)
