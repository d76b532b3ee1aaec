"""Measure search accuracy on a labelled folder tree: leave-one-out rank-1 and recall@k.

The layout is ``ROOT/<identity>/<photo>``: every folder is one person. Each photo of an
identity with two or more photos is used as a probe against a gallery holding all of them;
the probe's own image is left out of its results. ``identity_faces`` gives the stored faces
of such a tree with their identities, to score a grouping of faces into people;
:func:`several_probes` measures search with an identity's first 1, 2, 3 photos as one person.
Used by ``bench/accuracy.py``, ``bench/people.py``, ``bench/people_probes.py`` and the test
suite, so the figures in a closing note and the asserted ones come from one place.
"""

from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NoFaceError
from .media import read_photo

__all__ = ["LeaveOneOut", "IdentityFaces", "ProbeRecall", "identity_photos", "identity_faces", "leave_one_out",
           "several_probes", "group_counts"]


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


@dataclass
class ProbeRecall:
    """Recall@k of searches with an identity's first 1, 2, ... photos as probes of one person."""

    k: int
    fusion: str
    threshold: float = 0.0
    #: The probes' largest face shrunk to this width (px), or None for the photos as they are.
    probe_width: int | None = None
    identities: list[str] = field(default_factory=list)
    #: Genuine matches per identity: its photos after the held-out probes.
    genuine: list[int] = field(default_factory=list)
    #: Probe photos -> genuine matches found in the top k, per identity (in ``identities``' order).
    found: dict[int, list[int]] = field(default_factory=dict)
    #: Probe photos -> candidates in the top k that are other identities' photos, per identity.
    false: dict[int, list[int]] = field(default_factory=dict)
    #: Probe photos -> seconds each search took (probe analysis included).
    seconds: dict[int, list[float]] = field(default_factory=dict)

    def recall(self, probes: int) -> float:
        """Mean over identities of the fraction of its genuine matches found in the top k."""
        return sum(f / g for f, g in zip(self.found[probes], self.genuine)) / len(self.genuine) if self.genuine else 0.0

    def pooled(self, probes: int) -> float:
        """Genuine matches found in the top k over all identities, as a fraction of them all."""
        return sum(self.found[probes]) / sum(self.genuine) if self.genuine else 0.0

    def false_candidates(self, probes: int) -> float:
        """Mean number of other identities' photos among a search's top k."""
        return sum(self.false[probes]) / len(self.false[probes]) if self.false[probes] else 0.0


def several_probes(engine, root: Path, *, source: str, counts: tuple[int, ...] = (1, 2, 3), k: int = 10,  # noqa: ANN001
                   fusion: str | None = None, threshold: float | None = None,
                   probe_width: int | None = None) -> ProbeRecall:
    """Search with the first n photos (by name) of every identity with more than ``max(counts)``
    photos, for each n in ``counts``, as one person; count its other photos in the top ``k``.

    The first ``max(counts)`` photos of an identity are held out of its results whatever n
    is, so every n is scored against the same genuine matches (its remaining photos); the rest
    of ``source`` (every other identity's photos) stays, as impostors; other sources' photos
    are not ranked. ``threshold`` None searches at the deployment's threshold, as a user
    would; 0 ranks everything (recall of the ranking alone). With ``probe_width``, each probe
    photo is first shrunk so that its largest face is that many pixels wide (a small face cut
    from a crowd or a camera still: what several probe photos are most wanted for).
    """
    from .search import FUSION

    held = max(counts)
    allowed = engine.store.get_source(source).purposes  # searched whatever the default category
    category = allowed[0] if allowed else None
    photos = {name: files for name, files in identity_photos(root).items() if len(files) > held}
    result = ProbeRecall(k=k, fusion=fusion or FUSION, probe_width=probe_width,
                         **{name: {n: [] for n in counts} for name in ("found", "false", "seconds")})
    for name, files in photos.items():
        probes = [p.read_bytes() if probe_width is None else _shrunk(engine.analyzer, p, probe_width)
                  for p in files[:held]]
        kept_out = {_sha256(p) for p in files[:held]}
        genuine = {_sha256(p) for p in files[held:]}
        result.identities.append(name)
        result.genuine.append(len(genuine))
        for n in counts:
            started = time.perf_counter()
            found = engine.search(probes[:n], purpose="evaluation", case="several probes", top=k + 3 * held + 10,
                                  threshold=threshold, fusion=result.fusion,
                                  category=category)
            result.seconds[n].append(time.perf_counter() - started)
            result.threshold = found.threshold
            ranked = [c.image_sha256 for c in found.candidates if c.source == source and c.image_sha256 not in kept_out][:k]
            result.found[n].append(len(genuine & set(ranked)))
            result.false[n].append(sum(1 for r in ranked if r not in genuine))
    return result


def _shrunk(analyzer, path: Path, width: int) -> bytes:  # noqa: ANN001 - a FaceAnalyzer
    """The photo at ``path`` scaled down so that its largest face is ``width`` pixels wide, as a JPEG."""
    import io

    from PIL import Image

    data = path.read_bytes()
    faces = analyzer.analyze(read_photo(data, name=str(path)))
    if not faces or faces[0].box.width <= width:
        return data
    scale = width / faces[0].box.width
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=90)
    return out.getvalue()


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

