"""Fakes for testing code built on Vultus, without dlib, model weights or real photos.

Importing this package registers a detector, an aligner and an embedder under the name
``fake`` (``import vultus`` alone never does), so a deployment opened with
``vultus.open(path, detector="fake", embedder="fake")`` finds solid coloured squares in
synthetic photos drawn by :func:`square_photo`, and tells them apart by colour::

    import vultus
    from vultus.testing import square_photo

    with vultus.open(tmp, detector="fake", embedder="fake") as engine:
        ...

Ingest with ``workers=1``: worker processes import only Vultus itself, so the fakes are
not registered in them. :class:`MemoryIndex` is an exact in-memory index for the use-case
functions that take one, and the backend of ``memory://`` index URLs
(``vultus.open(tmp, index={"url": "memory://"})``); ``memory://NAME`` store URLs open a
:class:`MemoryStore`.

Test suites that parametrise over :func:`vultus.faces.detector_names` or
:func:`vultus.index.index_schemes` when they are collected see ``fake`` and ``memory`` among
them once this package is imported; import it inside fixtures where that matters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..faces.base import register_aligner, register_detector, register_embedder
from .index import MemoryIndex
from .store import MemoryStore, memory_store_url
from .models import FAKE_SPEC, FakeAligner, FakeDetector, FakeEmbedder, colour_template
from .photos import (
    BACKGROUND,
    PALETTE,
    Square,
    blank_photo,
    square_photo,
    square_pixels,
)

if TYPE_CHECKING:
    from ..faces import FaceAnalyzer

__all__ = [
    "BACKGROUND",
    "FAKE",
    "FAKE_SPEC",
    "PALETTE",
    "FakeAligner",
    "FakeDetector",
    "FakeEmbedder",
    "MemoryIndex",
    "MemoryStore",
    "Square",
    "blank_photo",
    "colour_template",
    "memory_store_url",
    "fake_analyzer",
    "square_photo",
    "square_pixels",
]

#: The name the fakes are registered under.
FAKE = "fake"

register_detector(FAKE, FakeDetector)
register_aligner(FAKE, FakeAligner)
register_embedder(FAKE, FakeEmbedder)


def fake_analyzer(**options: object) -> FaceAnalyzer:
    """A :class:`~vultus.faces.FaceAnalyzer` of the fake detector, aligner and embedder."""
    from ..faces import FaceAnalyzer

    return FaceAnalyzer(FakeDetector(), FakeAligner(), FakeEmbedder(), **options)  # type: ignore[arg-type]
