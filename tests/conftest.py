"""Shared fixtures: the real-photo data set, fresh data directories, an ingested gallery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vultus

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("VULTUS_TEST_DATA") or REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-photo data set. Missing data fails the run: it is never skipped."""
    root = _data_root()
    if not (root / "faces" / "labels.csv").is_file():
        pytest.fail(
            f"Test data not found at {root}; put it at ../shared/data or set VULTUS_TEST_DATA.",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def faces_root(data_root: Path) -> Path:
    return data_root / "faces"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "vultus-data"


@pytest.fixture
def engine(data_dir: Path):
    """A fresh deployment with one registered source, 'test'."""
    with vultus.open(data_dir) as eng:
        eng.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        yield eng


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory, faces_root: Path):
    """Every identity folder ingested into source 'identities' (built once per session)."""
    from vultus.evaluation import identity_photos

    folder = tmp_path_factory.mktemp("gallery")
    eng = vultus.open(folder / "data")
    eng.add_source("identities", basis="legitimate-interests", purpose="testing", retention="30d")
    summary = eng.ingest([faces_root / name for name in identity_photos(faces_root)], source="identities", workers=2)
    eng.ingest_summary = summary
    yield eng
    eng.close()
