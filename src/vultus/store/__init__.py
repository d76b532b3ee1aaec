"""The store: SQL rows (the source of truth) and the blob folder of image copies, crops and video stills."""

from .blobs import BlobStore, write_atomic
from .audit import AuditAction, AuditEntry, Verification
from .base import MetadataStore, StoreBackend, default_store_url, open_store, register_store, store_exists, store_schemes
# The built-in backends register themselves (sqlite:///PATH, postgresql+psycopg://...); base.py
# imports none. psycopg itself is imported only when a PostgreSQL store is opened.
from .repository import (FaceHit, NewAppearance, NewFace, RemovedImage, RemovedVideo, SourceRecord, SQLiteStore, Store,
                         iso, utcnow)
from .postgres import PostgresStore

__all__ = [
    "AuditAction",
    "AuditEntry",
    "BlobStore",
    "FaceHit",
    "MetadataStore",
    "PostgresStore",
    "SQLiteStore",
    "StoreBackend",
    "default_store_url",
    "open_store",
    "register_store",
    "store_exists",
    "store_schemes",
    "NewAppearance",
    "NewFace",
    "RemovedImage",
    "RemovedVideo",
    "SourceRecord",
    "Store",
    "Verification",
    "iso",
    "utcnow",
    "write_atomic",
]
