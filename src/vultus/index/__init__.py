"""Vector indexes: derived caches of the store's templates for fast nearest-neighbour search."""

from .base import LockedIndex, VectorIndex, create_index, index_names, register_index

__all__ = ["LockedIndex", "VectorIndex", "create_index", "index_names", "register_index"]
