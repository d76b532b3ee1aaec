"""Vector indexes: derived caches of the store's templates for fast nearest-neighbour search."""

from .base import RERANK, LockedIndex, VectorIndex, create_index, index_names, register_index

__all__ = ["RERANK", "LockedIndex", "VectorIndex", "create_index", "index_names", "register_index"]
