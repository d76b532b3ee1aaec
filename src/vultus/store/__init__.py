"""The store: SQL rows (the source of truth) and the blob folder of image copies and crops."""

from .blobs import BlobStore, write_atomic
from .audit import AuditAction, AuditEntry, Verification
from .repository import FaceHit, NewFace, RemovedImage, SourceRecord, Store, iso, utcnow

__all__ = [
    "AuditAction",
    "AuditEntry",
    "BlobStore",
    "FaceHit",
    "NewFace",
    "RemovedImage",
    "SourceRecord",
    "Store",
    "Verification",
    "iso",
    "utcnow",
    "write_atomic",
]
