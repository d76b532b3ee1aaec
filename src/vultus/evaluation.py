"""Measure search accuracy on a labelled folder tree: leave-one-out rank-1 and recall@k.

The layout is ``ROOT/<identity>/<photo>``: every folder is one person. Each photo of an
identity with two or more photos is used as a probe against a gallery holding all of them;
the probe's own image is left out of its results. ``identity_faces`` gives the stored faces
of such a tree with their identities, to score a grouping of faces into people. Used by
``bench/accuracy.py``, ``bench/people.py`` and the test suite, so the figures in a closing
note and the asserted ones come from one place.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NoFaceError
from .media import read_photo

__all__ = ["LeaveOneOut", "IdentityFaces", "identity_photos", "identity_faces", "leave_one_out", "group_counts"]


@dataclass
class LeaveOneOut:
    """Outcome of a leave-one-out run."""

    identities: int = 0
    probes: int = 0
    probes_with_face: int = 0
    rank1_hits: int = 0
    recall_at_k: float = 0.0
    k: int = 10
    misses: list[tuple[str, str]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)

    @property
    def rank1(self) -> float:
        return self.rank1_hits / self.probes_with_face if self.probes_with_face else 0.0


def identity_photos(root: Path) -> dict[str, list[Path]]:
    """Photos per identity folder under ``root`` (folders starting with ``_`` are skipped)."""
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("_")):
        photos = sorted(p for p in folder.iterdir() if p.is_file())
        if photos:
            found[folder.name] = photos
    return found


def leave_one_out(engine, root: Path, *, source: str, k: int = 10) -> LeaveOneOut:  # noqa: ANN001 - Engine
    """Search with every photo of every identity with 2+ photos; score against folder labels.

    Only candidates from ``source`` (the source the identity folders were ingested into)
    are ranked, so unlabelled photos elsewhere in the gallery neither help nor hurt; the
    searches are for a category ``source`` allows, so that it is searched whatever the default.
    """
    allowed = engine.store.get_source(source).purposes
    category = allowed[0] if allowed else None
    photos = identity_photos(root)
    # Photos are matched by content, not path, so links and relative paths cannot confuse it.
    identity_of = {_sha256(p): name for name, files in photos.items() for p in files}
    result = LeaveOneOut(k=k)
    recalls = []
    for name, files in photos.items():
        if len(files) < 2:
            continue
        result.identities += 1
        for probe in files:
            result.probes += 1
            try:
                found = engine.search(probe, purpose="evaluation", case="leave-one-out", top=k + 20, threshold=0.0,
                                      category=category)
            except NoFaceError:
                result.no_face.append(str(probe))
                continue
            result.probes_with_face += 1
            ranked = [
                identity_of.get(c.image_sha256)
                for c in found.candidates
                if c.source == source and c.image_sha256 != found.probe_sha256
            ][:k]
            if ranked and ranked[0] == name:
                result.rank1_hits += 1
            else:
                result.misses.append((str(probe), ranked[0] if ranked else "nothing"))
            others = len(files) - 1
            recalls.append(min(1.0, sum(1 for r in ranked if r == name) / others))
    result.recall_at_k = sum(recalls) / len(recalls) if recalls else 0.0
    return result


@dataclass
class IdentityFaces:
    """Every stored face of a source, with the identity folder its photo came from.

    ``scored`` marks the faces that are alone in their photo: a photo with several faces is
    in its folder for one of them, and which one is not recorded (the largest is not always
    it), so its faces are kept for clustering but left out of the scoring.
    """

    face_ids: np.ndarray
    vectors: np.ndarray
    identities: np.ndarray  # the folder name; "" for a face of a photo in no identity folder
    scored: np.ndarray
    photos: int = 0

    @property
    def scored_identities(self) -> int:
        return len(set(self.identities[self.scored]))


def identity_faces(engine, root: Path, *, source: str) -> IdentityFaces:  # noqa: ANN001 - Engine
    """The templates of every face stored in ``source`` and their identities under ``root``."""
    identity_of = {_sha256(p): name for name, files in identity_photos(root).items() for p in files}
    ids, vectors = [], []
    for chunk_ids, chunk in engine.store.face_vectors():
        ids.append(chunk_ids)
        vectors.append(chunk)
    face_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    hits = engine.store.hydrate([int(i) for i in face_ids])
    keep = np.array([hits[int(i)].source == source for i in face_ids], dtype=bool)
    face_ids = face_ids[keep]
    matrix = np.concatenate(vectors)[keep] if vectors else np.zeros((0, 0), dtype=np.float32)
    images = [hits[int(i)].image_id for i in face_ids]
    faces_per_image: dict[int, int] = {}
    for image in images:
        faces_per_image[image] = faces_per_image.get(image, 0) + 1
    identities = np.array([identity_of.get(hits[int(i)].sha256, "") for i in face_ids], dtype=str)
    scored = np.array([faces_per_image[image] == 1 for image in images], dtype=bool) & (identities != "")
    return IdentityFaces(face_ids=face_ids, vectors=np.asarray(matrix, dtype=np.float32), identities=identities,
                         scored=scored, photos=len(faces_per_image))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def group_counts(engine, labels_csv: Path, folder: str = "_group/") -> list[tuple[str, int, int]]:  # noqa: ANN001
    """(file, expected faces, faces found) for each labelled group photo."""
    rows = []
    root = Path(labels_csv).parent
    with open(labels_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["file"].startswith(folder) and row["expected_faces"]:
                image = read_photo((root / row["file"]).read_bytes(), name=row["file"])
                found = len(engine.analyzer.detect(image.rgb))
                rows.append((row["file"], int(row["expected_faces"]), found))
    return rows

