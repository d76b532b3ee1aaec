"""Evaluation and calibration: measured error rates for a deployment's model and threshold.

``evaluate_folder`` and ``evaluate_pairs`` embed a labelled dataset (a folder per identity,
or an LFW ``pairs.txt`` with its images) and report verification and identification
figures. ``calibrate`` sets the search threshold for a target false match rate and keeps,
with the model id, the impostor scores it was measured on, so every search can state the
expected number of false candidates at the gallery's size: FMR x faces in the gallery.
"""

from __future__ import annotations

import json
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .errors import FaceError, InputPathError, MediaError, PolicyError, WorkerCrashedError
from .faces import FaceAnalyzer
from .media import read_photo
from .metrics import identification, rates_at, tenfold_accuracy, threshold_for_fmr, tmr_at_fmr
from .store import MetadataStore, iso, utcnow
from .workers import main_is_importable, worker_pool

if TYPE_CHECKING:
    from .config import Settings
    from .gallery import Gallery

__all__ = [
    "Templates",
    "embed_folder",
    "parse_lfw_pairs",
    "evaluate_folder",
    "evaluate_pairs",
    "evaluate_gallery_model",
    "calibrate",
    "calibration_of",
    "expected_false_candidates",
]

_META_PREFIX = "calibration:"


@dataclass
class Templates:
    """The largest face's template of each image that has one."""

    labels: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


#: (detector, embedder, detect size) by registered name: what a worker process builds its
#: ``FaceAnalyzer`` from, the same one the caller's analyzer was built from.
AnalyzerNames = tuple[str, str, "int | None", int]


def _template_of(analyzer: FaceAnalyzer, path: Path, max_pixels: int) -> np.ndarray | bool | None:
    """The largest face's embedding in the photo at ``path``; False if it has no face, None if unreadable."""
    try:
        faces = analyzer.analyze(read_photo(path.read_bytes(), name=str(path), max_pixels=max_pixels))
    except (MediaError, OSError):
        return None
    return faces[0].embedding if faces else False


_WORKER: tuple[FaceAnalyzer, int] | None = None


def _init_worker(names: AnalyzerNames, max_pixels: int) -> None:
    global _WORKER
    detector, embedder, detect_size, min_face = names
    _WORKER = (FaceAnalyzer.from_names(detector, embedder, detect_size=detect_size, min_face=min_face), max_pixels)


def _work(path: Path) -> np.ndarray | bool | None:
    assert _WORKER is not None
    return _template_of(_WORKER[0], path, _WORKER[1])


def _templates(analyzer: FaceAnalyzer, paths: list[Path], *, max_pixels: int, workers: int,
               names: AnalyzerNames | None):
    """Each photo's :func:`_template_of`, in order: in worker processes when ``workers`` > 1."""
    if workers <= 1 or names is None or len(paths) < 2 or not main_is_importable():
        for path in paths:
            yield _template_of(analyzer, path, max_pixels)
        return
    pool = worker_pool(min(workers, len(paths)), _init_worker, (names, max_pixels))
    try:
        # Small chunks: few round trips per photo, yet the progress bar still moves.
        yield from pool.map(_work, paths, chunksize=max(1, min(16, len(paths) // (workers * 8))))
    except BrokenProcessPool as exc:
        raise WorkerCrashedError(
            "A worker process died while analysing the photos (out of memory, or killed); nothing was "
            "stored. Run the command again with fewer workers (--workers 1 runs in this process). From "
            "your own script, put the call under `if __name__ == \"__main__\":` or pass workers=1."
        ) from exc
    finally:
        # map() queued every photo: when the caller stops early (an error, Ctrl-C), the
        # photos not started yet are dropped, not analysed to the end before it may go on.
        pool.shutdown(wait=True, cancel_futures=True)


def _embed(analyzer: FaceAnalyzer, items: list[tuple[str, Path]], *, max_pixels: int,
           progress: Callable[[int, int], None] | None, workers: int = 1,
           names: AnalyzerNames | None = None) -> Templates:
    found = Templates()
    rows = []
    results = _templates(analyzer, [path for _, path in items], max_pixels=max_pixels, workers=workers, names=names)
    with closing(results):  # an error below closes the pool now, not when the frame is freed
        _collect(found, rows, items, results, progress)
    found.vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    return found


def _collect(found: Templates, rows: list, items: list[tuple[str, Path]], results: Iterator,
             progress: Callable[[int, int], None] | None) -> None:
    for number, ((label, path), result) in enumerate(zip(items, results), start=1):
        if result is None:
            found.unreadable.append(str(path))
        elif result is False:
            found.no_face.append(str(path))
        else:
            found.labels.append(label)
            found.paths.append(str(path))
            rows.append(result)
        if progress is not None:
            progress(number, len(items))


def embed_folder(analyzer: FaceAnalyzer, root: Path, *, max_pixels: int = 120_000_000,
                 progress: Callable[[int, int], None] | None = None, workers: int = 1,
                 names: AnalyzerNames | None = None) -> Templates:
    """Templates of every photo in ``root/<identity>/`` (folders starting with ``_`` skipped).

    With ``workers`` > 1 and the ``names`` ``analyzer`` was built from, the photos are
    analysed in that many worker processes (the same templates, in the same order).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputPathError(f"{root} is not a folder; give a folder with one sub-folder per identity.")
    items = [
        (folder.name, photo)
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
        for photo in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    ]
    if not items:
        raise InputPathError(f"{root} has no identity folders with photos in them.")
    return _embed(analyzer, items, max_pixels=max_pixels, progress=progress, workers=workers, names=names)


def parse_lfw_pairs(pairs_file: Path, images: Path) -> list[tuple[Path, Path, bool]]:
    """The pairs of an LFW-format ``pairs.txt``: (image, image, same person).

    A line ``Name n1 n2`` is a matched pair of ``Name/Name_000n1.jpg`` and ``..._000n2.jpg``;
    ``Name1 n1 Name2 n2`` is a mismatched pair. Names may hold underscores; an optional
    first line gives the folds and pairs per fold and is skipped.
    """
    pairs = []
    lines = Path(pairs_file).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if number == 1 and all(f.isdigit() for f in fields):
            continue  # header: "10 300" or "6000"
        try:
            if len(fields) == 3:
                name, a, b = fields
                pairs.append((_lfw_path(images, name, int(a)), _lfw_path(images, name, int(b)), True))
            elif len(fields) == 4:
                name1, a, name2, b = fields
                pairs.append((_lfw_path(images, name1, int(a)), _lfw_path(images, name2, int(b)), False))
            else:
                raise ValueError
        except ValueError:
            raise PolicyError(
                f"{pairs_file}, line {number}: {line.strip()!r} is not an LFW pair; write 'Name n1 n2' for a "
                "matched pair or 'Name1 n1 Name2 n2' for a mismatched one."
            ) from None
    return pairs


def _lfw_path(images: Path, name: str, number: int) -> Path:
    return Path(images) / name / f"{name}_{number:04d}.jpg"


def _similarities(analyzer: FaceAnalyzer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return analyzer.embedder.spec.similarity(np.linalg.norm(a - b, axis=-1))


def _all_pairs(analyzer: FaceAnalyzer, templates: Templates) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, same identity) for every pair of templates.

    Row by row: materialising both sides of all n(n-1)/2 pairs would take n² x dim floats.
    """
    labels = np.asarray(templates.labels)
    vectors = templates.vectors
    scores, same = [], []
    for i in range(len(labels) - 1):
        scores.append(_similarities(analyzer, vectors[i + 1 :], vectors[i]))
        same.append(labels[i + 1 :] == labels[i])
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(same)


#: The FMR at which the TMR is reported (NIST FRTE's customary operating point).
TMR_FMR = 1e-3


def _report(analyzer: FaceAnalyzer, similarity: np.ndarray, same: np.ndarray, *, threshold: float,
            dataset: str, images: int, templates: Templates) -> dict[str, Any]:
    genuine, impostor = similarity[same], similarity[~same]
    fmr, fnmr = rates_at(genuine, impostor, threshold)
    mean, std = tenfold_accuracy(similarity, same) if len(similarity) >= 10 else (float("nan"), float("nan"))
    at = tmr_at_fmr(genuine, impostor, TMR_FMR)
    return {
        "dataset": dataset,
        "model_id": analyzer.model_id,
        "images": images,
        "no_face": len(templates.no_face),
        "unreadable": len(templates.unreadable),
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "threshold": round(threshold, 4),
        "fmr": fmr,
        "fnmr": fnmr,
        # The lowest FMR these impostor pairs can measure: curves stop there, and an FMR
        # target below it is not resolved.
        "fmr_floor": 1.0 / len(impostor) if len(impostor) else None,
        "tmr_at_fmr_1e-3": None if at is None else at[0],
        "threshold_at_fmr_1e-3": None if at is None else round(at[1], 4),
        "accuracy_10fold": mean,
        "accuracy_10fold_std": std,
        "_genuine": genuine,
        "_impostor": impostor,
    }


def evaluate_folder(analyzer: FaceAnalyzer, root: Path, *, threshold: float, fpir: float = 0.01,
                    max_pixels: int = 120_000_000, progress: Callable[[int, int], None] | None = None,
                    workers: int = 1, names: AnalyzerNames | None = None) -> dict[str, Any]:
    """Verification and identification figures on a folder-per-identity dataset."""
    templates = embed_folder(analyzer, root, max_pixels=max_pixels, progress=progress, workers=workers, names=names)
    similarity, same = _all_pairs(analyzer, templates)
    images = len(templates.labels) + len(templates.no_face) + len(templates.unreadable)
    report = _report(analyzer, similarity, same, threshold=threshold, dataset=str(root), images=images, templates=templates)
    ident = identification(templates.labels, templates.vectors, analyzer.embedder.spec.similarity, fpir=fpir)
    report.update(
        identities=len(set(templates.labels)),
        rank1=ident.rank1,
        rank5=ident.rank5,
        identification_searches=ident.searches,
        fpir=ident.fpir,
        fnir_at_fpir=ident.fnir,
        fpir_threshold=round(ident.threshold, 4),
    )
    return report


def evaluate_pairs(analyzer: FaceAnalyzer, pairs_file: Path, images: Path, *, threshold: float,
                   max_pixels: int = 120_000_000, progress: Callable[[int, int], None] | None = None,
                   workers: int = 1, names: AnalyzerNames | None = None) -> dict[str, Any]:
    """Verification figures on an LFW-format pairs file, as the standard protocol counts them.

    A pair with an image that yields no face (or cannot be read) is a failed pair: the
    headline ``accuracy_10fold`` counts it as an error in its fold. ``accuracy_10fold_scored``
    is the accuracy on the pairs that could be scored, beside it; FMR, FNMR and the curves
    are over the scored pairs.
    """
    pairs = parse_lfw_pairs(pairs_file, images)
    unique = sorted({p for a, b, _ in pairs for p in (a, b)})
    templates = _embed(analyzer, [("", p) for p in unique], max_pixels=max_pixels, progress=progress,
                       workers=workers, names=names)
    index = {path: row for row, path in enumerate(templates.paths)}
    scored = np.array([str(a) in index and str(b) in index for a, b, _ in pairs], dtype=bool)
    usable = [pair for pair, ok in zip(pairs, scored) if ok]
    if not usable:
        raise FaceError(f"No pair in {pairs_file} has a face found in both images; check --images.")
    a_rows = templates.vectors[[index[str(a)] for a, _, _ in usable]]
    b_rows = templates.vectors[[index[str(b)] for _, b, _ in usable]]
    similarity = _similarities(analyzer, a_rows, b_rows)
    same = np.array([s for _, _, s in usable])
    report = _report(analyzer, similarity, same, threshold=threshold, dataset=str(pairs_file),
                     images=len(unique), templates=templates)
    every = np.full(len(pairs), np.nan)
    every[scored] = similarity
    all_same = np.array([s for _, _, s in pairs], dtype=bool)
    headline = (tenfold_accuracy(every, all_same, failed=~scored) if len(pairs) >= 10
                else (float("nan"), float("nan")))
    figures: dict[str, Any] = {}
    for key, value in report.items():
        if key == "accuracy_10fold":
            figures.update({
                "accuracy_10fold": headline[0],
                "accuracy_10fold_std": headline[1],
                "accuracy_10fold_scored": value,
                "accuracy_10fold_scored_std": report["accuracy_10fold_std"],
                "pairs": len(pairs),
                "pairs_scored": len(usable),
                "pairs_failed": int(np.sum(~scored)),
                "pairs_failed_genuine": int(np.sum(~scored & all_same)),
            })
        elif key != "accuracy_10fold_std":
            figures[key] = value
    return figures


def evaluate_gallery_model(dataset: Path, *, pairs: Path | None, gallery: Gallery, store: MetadataStore,
                           settings: Settings, fpir: float = 0.01, progress: Callable[[int, int], None] | None = None,
                           workers: int = 1) -> dict[str, Any]:
    """The gallery's analyzer measured on ``dataset`` (:func:`evaluate_pairs` with ``pairs``,
    else :func:`evaluate_folder`), at the search threshold: the setting, else the calibrated
    one, else the embedder's default."""
    embedder = gallery.embedder
    calibration = calibration_of(store, embedder.model_id)
    threshold = settings.threshold or (calibration["threshold"] if calibration else embedder.spec.default_threshold)
    common = {"threshold": threshold, "max_pixels": settings.max_pixels, "progress": progress, "workers": workers,
              "names": gallery.analysis_names()}
    if pairs is not None:
        return evaluate_pairs(gallery.analyzer, pairs, dataset, **common)
    return evaluate_folder(gallery.analyzer, dataset, fpir=fpir, **common)


def public_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its raw score arrays, for JSON and tables."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def calibrate(store: MetadataStore, analyzer: FaceAnalyzer, root: Path, *, fmr: float, max_pixels: int = 120_000_000,
              progress: Callable[[int, int], None] | None = None, workers: int = 1,
              names: AnalyzerNames | None = None) -> dict[str, Any]:
    """Set the search threshold for a target FMR on a folder dataset; keep it with the model id."""
    if not 0.0 < fmr < 1.0:
        raise PolicyError(f"--fmr is a rate between 0 and 1 (e.g. 1e-4), not {fmr}.")
    templates = embed_folder(analyzer, root, max_pixels=max_pixels, progress=progress, workers=workers, names=names)
    similarity, same = _all_pairs(analyzer, templates)
    impostor, genuine = similarity[~same], similarity[same]
    if not len(impostor) or not len(genuine):
        raise PolicyError(f"{root} needs at least two identities, one with two photos, to calibrate on.")
    threshold, measured, resolved = threshold_for_fmr(impostor, fmr)
    _, fnmr = rates_at(genuine, impostor, threshold)
    record = {
        "model_id": analyzer.model_id,
        "threshold": round(min(1.0, threshold), 6),
        "fmr_target": fmr,
        "fmr_measured": measured,
        "fmr_resolved": resolved,
        "fnmr": fnmr,
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "dataset": str(root),
        "at": iso(utcnow()),
        # Kept so that the FMR at any threshold a search uses can be read off, not guessed,
        # in bounded space whatever the dataset's size (its pairs grow as n²): the highest
        # impostor scores exactly, where operating thresholds lie, and counts below them.
        "impostor_top": [round(float(v), 6) for v in np.sort(impostor)[::-1][:TOP_SCORES]],
        "impostor_at_or_above": impostor_survival(impostor),
    }
    store.set_meta(_META_PREFIX + analyzer.model_id, json.dumps(record))
    return record


def calibration_figures(record: dict[str, Any]) -> dict[str, Any]:
    """A calibration record without its stored scores, for output and the audit log."""
    return {k: v for k, v in record.items() if not k.startswith("impostor_") or k == "impostor_pairs"}


def calibration_of(store: MetadataStore, model_id: str) -> dict[str, Any] | None:
    """The stored calibration for ``model_id``, if any."""
    raw = store.get_meta(_META_PREFIX + model_id)
    return json.loads(raw) if raw else None


#: Similarity bins of the stored impostor counts: 0.001 wide.
SURVIVAL_BINS = 1000
#: Highest impostor scores kept exactly: FMR is exact at any threshold down to 10,000 impostors.
TOP_SCORES = 10_000


def impostor_survival(impostor: np.ndarray) -> list[int]:
    """Counts of impostor scores at or above each bin's lower edge (``i / SURVIVAL_BINS``)."""
    hist, _ = np.histogram(np.clip(impostor, 0.0, 1.0), bins=SURVIVAL_BINS, range=(0.0, 1.0))
    return np.cumsum(hist[::-1])[::-1].astype(int).tolist()


def fmr_at(calibration: dict[str, Any], threshold: float) -> float:
    """The FMR measured at calibration for a search at ``threshold``.

    Exact where at most ``TOP_SCORES`` impostors score ``threshold`` or more (every useful
    operating point); below that, read from the bin holding ``threshold``, so never below
    the true rate and at most one 0.001-wide bin of impostors above it. Records of earlier
    versions kept every score and are read exactly.
    """
    if "impostor_scores" in calibration:
        scores = np.asarray(calibration["impostor_scores"])
        return float(np.mean(scores >= threshold)) if len(scores) else 0.0
    total = calibration["impostor_pairs"]
    if threshold > 1.0 or not total:
        return 0.0
    top = calibration.get("impostor_top", [])
    if top and (len(top) == total or threshold >= top[-1]):
        return int(np.sum(np.asarray(top) >= round(threshold, 6))) / total
    counts = calibration["impostor_at_or_above"]
    return counts[min(SURVIVAL_BINS - 1, max(0, int(np.floor(threshold * SURVIVAL_BINS + 1e-9))))] / total


def expected_false_candidates(calibration: dict[str, Any] | None, threshold: float, gallery_faces: int) -> float | None:
    """FMR at ``threshold`` (measured at calibration) x faces in the gallery; None if uncalibrated."""
    if calibration is None:
        return None
    return fmr_at(calibration, threshold) * gallery_faces
