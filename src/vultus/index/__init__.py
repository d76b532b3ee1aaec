"""Vector indexes: derived caches of the store's templates for fast nearest-neighbour search."""

from .base import (
    RERANK,
    Capabilities,
    IdFilter,
    IndexBackend,
    IndexTarget,
    LockedIndex,
    Resizable,
    Shared,
    VectorIndex,
    default_index_url,
    index_backend,
    index_schemes,
    open_index,
    register_index,
)

# The built-in backends register themselves (faiss and pymilvus load when an index is opened).
from . import faiss_index, milvus_index  # noqa: E402,F401  isort: skip

__all__ = ["RERANK", "Capabilities", "IdFilter", "IndexBackend", "IndexTarget", "LockedIndex", "Resizable", "Shared",
           "VectorIndex", "default_index_url", "index_backend", "index_schemes", "open_index", "register_index"]
