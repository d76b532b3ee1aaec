"""Vector indexes: derived caches of the store's templates for fast nearest-neighbour search."""

from .base import RERANK, Capabilities, LockedIndex, VectorIndex, create_index, index_names, register_index

# The built-in backend registers itself (faiss loads when an index is opened).
from . import faiss_index  # noqa: E402,F401  isort: skip

__all__ = ["RERANK", "Capabilities", "LockedIndex", "VectorIndex", "create_index", "index_names", "register_index"]
