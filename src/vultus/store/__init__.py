"""The store: SQL rows (the source of truth) and the blob folder of image copies and crops."""

from .blobs import BlobStore, write_atomic
from .repository import FaceHit, NewFace, SourceRecord, Store, iso, utcnow

__all__ = ["BlobStore", "FaceHit", "NewFace", "SourceRecord", "Store", "iso", "utcnow", "write_atomic"]
