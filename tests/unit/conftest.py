"""Fixtures for the unit tests: fake models, synthetic photos, no dlib and no real photos.

``vultus.testing`` is imported in fixtures, not at module level, so that collecting these
tests does not add the fakes to the model registry that other suites parametrise over.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fakes():
    """The ``vultus.testing`` package (importing it registers the ``fake`` models)."""
    import vultus.testing

    return vultus.testing


@pytest.fixture
def write_photo(tmp_path: Path, fakes):
    """``write_photo(name, squares, **options)``: a synthetic photo saved under tmp_path/photos."""
    folder = tmp_path / "photos"
    folder.mkdir()

    def write(name: str, squares=("red",), **options) -> Path:
        path = folder / name
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        path.write_bytes(fakes.square_photo(squares, format=fmt, **options))
        return path

    return write


@pytest.fixture
def fake_engine(tmp_path: Path, fakes):
    """A fresh deployment on the fake detector and embedder, with one source, 'test'."""
    import vultus

    with vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="unit-test") as engine:
        engine.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        yield engine
