"""Search: find the stored faces closest to the face in a probe photo, as ranked candidates.

Results are candidates for a person to review, never identifications: each carries its
similarity and the provenance of the photo it comes from, or of the video and the time in it
where the face was seen. A video appearance is one candidate however many of its templates
match.

Several probe photos of one person are searched as that person: each photo gives its largest
face, and the candidates' scores are fused by :func:`fused_pairs` (see :data:`FUSION` for the
way chosen and the figures behind it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .calibration import calibration_of, expected_false_candidates
from .errors import FaceChoiceError, NoFaceError, ProbeChoiceError
from .faces import Face, FaceAnalyzer, ModelSpec
from .index import RERANK, IdFilter, VectorIndex
from .media import read_photo
from .media.decode import DEFAULT_MAX_DECODE_MB
from .policy import LeftOut, SearchCategory, check_gallery_model, require_purpose, split_by_category
from .probes import InBackground, PhotoArg, Probe, read_probes
from .store import AuditAction, MetadataStore

if TYPE_CHECKING:
    from .config import Settings
    from .gallery import Gallery

__all__ = ["Candidate", "ProbeFace", "SearchResult", "SearchScope", "search_scope", "FUSION", "FUSIONS", "search_gallery",
           "search_photo", "pick_face", "probe_faces", "fused_pairs", "exact_distances"]

#: Templates asked of the index per candidate wanted: an appearance in a video may have a few
#: templates, which collapse into one candidate; photos' faces are each their own.
_TEMPLATES_PER_CANDIDATE = 3

#: Ways of fusing several probe faces' results: "max", each stored face scored by its best
#: similarity to any probe face (one search per probe face, the lists merged); "mean", one
#: search with the mean of the probe templates; "both", the two lists merged, each face scored
#: by the better of its two scores (the mean as one more probe face).
FUSIONS = ("max", "mean", "both")
#: The fusion searches use: chosen by recall@10 with 1, 2 and 3 probe photos on the shared faces
#: (bench/people_probes.py; the figures are in the README).
FUSION = "max"


@dataclass(frozen=True)
class Candidate:
    """A stored face that may be the probe's person; for a human to check."""

    rank: int
    similarity: float
    distance: float
    path: str
    box: list[int]
    source: str
    legal_basis: str
    ingested_at: str
    face_id: int
    image_sha256: str
    #: "photo", or "video": then ``path`` and ``image_sha256`` are the video's, ``box`` is in its
    #: frame at ``video_time`` seconds (where the best-matching template was seen), and the
    #: appearance lasts until ``video_time_end``. Both times are None for a photo.
    media: str = "photo"
    video_time: float | None = None
    video_time_end: float | None = None
    #: Its similarity to each probe face, in the order the probe photos were given (one entry
    #: per probe face used); ``similarity`` is these fused.
    probe_similarities: list[float] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeFace:
    """The face one probe photo gives: which of its faces (1 = largest) and its template."""

    name: str
    sha256: str
    faces: int
    number: int
    box: list[int]
    template: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "faces": self.faces, "face_used": self.number,
                "face_box": self.box}


@dataclass(frozen=True)
class SearchResult:
    """Candidates for the probe face (or the probe faces of one person), and what was searched.

    ``probe_sha256``, ``probe_faces``, ``face_used`` and ``face_box`` are the first probe
    photo's; ``probes`` has every one's.
    """

    candidates: list[Candidate]
    probe_sha256: str
    probe_faces: int
    face_used: int
    face_box: list[int]
    threshold: float
    model_id: str
    gallery_faces: int
    purpose: str
    case: str
    #: FMR at the threshold (measured by `vultus calibrate`) x faces searched; None
    #: when the model has not been calibrated on this deployment. With several probe faces
    #: fused by "max", times their number: a bound (a false match of any one of them counts).
    expected_false_candidates: float | None = None
    probes: list[ProbeFace] = field(default_factory=list)
    fusion: str = FUSION
    #: Probe photos (1-based) whose face does not match the first one's at the threshold: they
    #: may show someone else, whose candidates the fused list then holds too.
    unlike_probes: list[int] = field(default_factory=list)
    #: The search category (None: searched without one, every source, as a direct caller may).
    category: str | None = None
    #: The sources not searched because their purposes do not allow ``category``.
    left_out: list[LeftOut] = field(default_factory=list)
    #: The sources searched, those that allow ``category`` (None: every source, without a category).
    sources_searched: list[str] | None = None

    @property
    def probe_faces_used(self) -> int:
        """How many probe faces were searched with (one per probe photo)."""
        return max(1, len(self.probes))


@dataclass(frozen=True)
class SearchScope:
    """What a search for ``category`` covers: the sources that allow it, those left out, and
    the index's id filter that keeps the search to the first (None: every source allows it)."""

    category: str
    sources: tuple[str, ...]
    left_out: tuple[LeftOut, ...]
    id_filter: IdFilter | None


def search_scope(store: MetadataStore, category: str) -> SearchScope:
    """The scope of a search for ``category`` (raises for a category not in the vocabulary).

    The filter lists whichever is shorter: the faces of the sources searched, or (to exclude)
    those of the sources left out. Counts include restricted faces, which are in no index.
    """
    chosen = SearchCategory.parse(category)
    records = store.list_sources()
    covered, left_out = split_by_category(records, chosen)
    names = tuple(r.name for r in covered)
    if not left_out:
        return SearchScope(chosen.value, names, (), None)
    kept, dropped = covered, [r for r in records if r.name not in names]
    if sum(r.face_count for r in kept) <= sum(r.face_count for r in dropped):
        id_filter = IdFilter(store.source_face_ids([r.id for r in kept]))
    else:
        id_filter = IdFilter(store.source_face_ids([r.id for r in dropped]), exclude=True)
    return SearchScope(chosen.value, names, tuple(left_out), id_filter)


def pick_face(faces: list[Face], number: int | None, *, name: str) -> tuple[int, Face]:
    """The face to search with: ``number`` (1-based, largest first) or the largest."""
    if not faces:
        raise NoFaceError(
            f"{name}: no face was found in the probe photo. Use a photo in which the face is "
            "turned towards the camera and at least about 80 pixels wide."
        )
    if number is None:
        return 1, faces[0]
    if not 1 <= number <= len(faces):
        raise FaceChoiceError(
            f"{name} has {len(faces)} face{'s' if len(faces) != 1 else ''} (numbered 1 to "
            f"{len(faces)}, largest first); --face {number} is not one of them."
        )
    return number, faces[number - 1]


def exact_distances(store: MetadataStore, template: np.ndarray, face_ids: list[int]) -> list[tuple[float, int]]:
    """(exact distance, id) of stored faces to ``template``, nearest first."""
    pairs: list[tuple[float, int]] = []
    for ids, vectors in store.face_vectors(face_ids) if face_ids else ():
        pairs += [(float(d), int(i)) for d, i in zip(np.linalg.norm(vectors - template, axis=1), ids)]
    return sorted(pairs)


def probe_faces(probes: Sequence[Probe], *, analyzer: FaceAnalyzer, face: int | None = None,
                max_pixels: int = 120_000_000, max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
                draft: bool = True) -> list[ProbeFace]:
    """The face each probe photo gives: ``face`` (one photo only) or its largest.

    Photos are decoded and analysed one after the other, so one photo's pixels at most are
    held at a time. ``draft`` decodes a JPEG for detection at the scale the analyzer plans.
    A photo with no face is a :class:`NoFaceError` naming it.
    """
    if face is not None and len(probes) > 1:
        raise ProbeChoiceError(
            f"--face {face} picks a face in one probe photo, but {len(probes)} were given; with several photos "
            "the largest face of each is used. Search with that photo alone to pick another of its faces, or crop it."
        )
    found: list[ProbeFace] = []
    for probe in probes:
        scale = (lambda w, h: analyzer.plan(w, h).scale) if draft else None
        image = read_photo(probe.data, name=probe.name, max_pixels=max_pixels, max_decode_mb=max_decode_mb,
                           detection_scale=scale)
        faces = analyzer.analyze(image)
        del image
        number, chosen = pick_face(faces, face, name=probe.name)
        found.append(ProbeFace(probe.name, probe.sha256, len(faces), number, chosen.box.as_list(),
                               np.asarray(chosen.embedding, dtype=np.float32)))
    return found


def mean_template(templates: np.ndarray) -> np.ndarray:
    """The mean of ``templates``, scaled to their mean length (unit for unit-length templates)."""
    mean = templates.mean(axis=0)
    return (mean * (np.linalg.norm(templates, axis=1).mean() / max(float(np.linalg.norm(mean)), 1e-12))).astype(np.float32)


def _ask(index: VectorIndex, query: np.ndarray, k: int, id_filter: IdFilter | None) -> tuple[np.ndarray, np.ndarray]:
    if id_filter is None:  # every source searched: the index as it always was asked
        return index.search(query, k)
    return index.search(query, k, id_filter)


def _nearest(index: VectorIndex, store: MetadataStore, template: np.ndarray, wanted: int,
             id_filter: IdFilter | None = None) -> list[tuple[float, int]]:
    """(exact distance, id) of the ``wanted`` stored templates nearest ``template`` that ``id_filter``
    lets through (all when None), nearest first."""
    query = np.asarray([template], dtype=np.float32)
    if index.capabilities.exact:
        distances, ids = _ask(index, query, wanted, id_filter)
        return [(float(d), int(i)) for d, i in zip(distances[0], ids[0]) if i >= 0]
    # An approximate index ranks by compressed codes: take twice as many, then rank
    # them by their exact templates, so order and similarities are exact.
    _, ids = _ask(index, query, RERANK * wanted, id_filter)
    found = ids[0][ids[0] >= 0]
    if id_filter is not None:  # the rerank reads templates from the store: only those let through
        found = found[id_filter.allows(found)]
    return exact_distances(store, template, [int(i) for i in found])[:wanted]


def fused_pairs(index: VectorIndex, store: MetadataStore, templates: np.ndarray, wanted: int,
                fusion: str = FUSION, id_filter: IdFilter | None = None) -> list[tuple[float, int]]:
    """(fused distance, id) of the stored templates nearest the probe faces ``templates``, nearest first.

    One probe face: its ``wanted`` nearest. Several, by ``fusion`` (see :data:`FUSIONS`): the
    ``wanted`` nearest of each probe face (and of their mean), each stored face at its
    smallest distance to any of them. ``id_filter``: only the stored faces it lets through.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion is one of {FUSIONS}, not {fusion!r}")
    if len(templates) == 1:
        return _nearest(index, store, templates[0], wanted, id_filter)
    queries = {"max": list(templates), "mean": [mean_template(templates)],
               "both": [*templates, mean_template(templates)]}[fusion]
    best: dict[int, float] = {}
    for query in queries:
        for distance, face_id in _nearest(index, store, query, wanted, id_filter):
            best[face_id] = min(distance, best.get(face_id, distance))
    return sorted((d, i) for i, d in best.items())


def _unlike(templates: np.ndarray, radius: float) -> list[int]:
    """Probe numbers (1-based) whose template is further than ``radius`` from the first one's."""
    return [n for n, d in enumerate(np.linalg.norm(templates - templates[0], axis=1), 1) if d > radius]


def search_photo(
    data: bytes | Sequence[Probe],
    *,
    analyzer: FaceAnalyzer,
    store: MetadataStore,
    index: VectorIndex | Callable[[], VectorIndex],
    purpose: str | None,
    case: str | None,
    top: int,
    threshold: float | None,
    face: int | None = None,
    name: str = "probe",
    max_pixels: int = 120_000_000,
    max_decode_mb: int = DEFAULT_MAX_DECODE_MB,
    actor: str,
    purpose_required: bool = True,
    calibration: dict | None = None,
    fusion: str = FUSION,
    scope: SearchScope | None = None,
) -> SearchResult:
    """Search the gallery with the face in the probe photo ``data``, and log the search.

    ``data`` may be several probes of one person (:func:`~vultus.probes.read_probes`): each
    gives its largest face and the results are fused by ``fusion``. The probes are used in
    memory only; the audit log records their sha256s, never their pixels.
    Candidates are at most ``top`` faces with similarity at or above ``threshold`` (the
    embedder's operating point when None), best first. Restricted faces are not in the
    index, so they are never candidates. ``index`` may be a function that returns the
    index (it is called once the probes' faces are found). With ``scope`` (:func:`search_scope`),
    only the faces of its sources are searched; without, every face (callers outside a deployment).
    """
    if purpose_required:
        purpose, case = require_purpose(purpose, case)
    else:
        purpose, case = (purpose or "").strip() or "(not stated)", (case or "").strip() or "(none)"
    spec = analyzer.embedder.spec
    check_gallery_model(store.model_ids(), analyzer.model_id)
    probes = [Probe(data, name)] if isinstance(data, (bytes, bytearray)) else list(data)
    used = probe_faces(probes, analyzer=analyzer, face=face, max_pixels=max_pixels, max_decode_mb=max_decode_mb)
    templates = np.stack([p.template for p in used])
    if not hasattr(index, "search"):  # a loader, run while the probe was being analysed
        index = index()
    if threshold is not None:
        limit = threshold
    elif calibration is not None:
        limit = float(calibration["threshold"])
    else:
        limit = spec.default_threshold
    wanted = top * _TEMPLATES_PER_CANDIDATE
    id_filter = None if scope is None else scope.id_filter
    searched = len(index) if id_filter is None else id_filter.kept(len(index))
    # No face of a source that allows the category: nothing to search.
    pairs = fused_pairs(index, store, templates, wanted, fusion, id_filter) if searched else []
    pairs = [(d, i) for d, i in pairs if spec.similarity(d) >= limit]
    hits = store.hydrate([i for _, i in pairs])
    candidates: list[Candidate] = []
    shown: set[tuple[int, int]] = set()
    for distance, face_id in pairs:  # nearest first
        hit = hits.get(face_id)
        if hit is None:  # index entry without a row: reconciliation will drop it
            continue
        if scope is not None and hit.source not in scope.sources:
            continue  # ingested into a source left out after the scope was taken: never a candidate
        if len(candidates) == top:
            break
        if hit.is_video:
            # The nearest template of an appearance speaks for it; the others add nothing.
            if (hit.image_id, hit.appearance) in shown:
                continue
            shown.add((hit.image_id, hit.appearance))  # type: ignore[arg-type]
        candidates.append(
            Candidate(
                rank=len(candidates) + 1,
                similarity=round(spec.similarity(distance), 4),
                distance=round(distance, 4),
                path=hit.original_path,
                box=list(hit.box),
                source=hit.source,
                legal_basis=hit.legal_basis,
                ingested_at=hit.ingested_at,
                face_id=hit.face_id,
                image_sha256=hit.sha256,
                media=hit.media,
                video_time=hit.media_time if hit.is_video else None,
                video_time_end=hit.time_end if hit.is_video else None,
            )
        )
    candidates = _with_probe_similarities(candidates, store, templates, spec)
    first = used[0]
    expected = expected_false_candidates(calibration, limit, searched)
    if expected is not None and len(used) > 1 and fusion != "mean":
        expected *= len(used) + (fusion == "both")  # any probe face's false match is one
    left_out = [] if scope is None else list(scope.left_out)
    gallery = "all sources"
    if scope is not None and left_out:
        gallery = f"sources allowing {scope.category}: {', '.join(scope.sources) or 'none'}"
    details: dict[str, object] = {
        "purpose": purpose,
        "case": case,
        **({} if scope is None else {"category": scope.category, "left_out": [entry.as_dict() for entry in left_out]}),
        "gallery": gallery,
        "probe_sha256": first.sha256,
        "probe_sha256s": [p.sha256 for p in used],
        "probe_face": first.number,
        "probe_faces_used": len(used),
        "threshold": round(limit, 4),
        "top": top,
        "model_id": analyzer.model_id,
        "expected_false_candidates": None if expected is None else round(expected, 6),
        "candidates": [
            {"face_id": c.face_id, "image_sha256": c.image_sha256, "similarity": c.similarity}
            for c in candidates
        ],
    }
    if len(used) > 1:
        details["fusion"] = fusion
    store.log(actor=actor, action=AuditAction.SEARCH, details=details)
    return SearchResult(
        candidates=candidates,
        probe_sha256=first.sha256,
        probe_faces=first.faces,
        face_used=first.number,
        face_box=first.box,
        threshold=limit,
        model_id=analyzer.model_id,
        gallery_faces=searched,
        purpose=purpose,
        case=case,
        expected_false_candidates=expected,
        probes=used,
        fusion=fusion,
        unlike_probes=_unlike(templates, spec.distance(limit)),
        category=None if scope is None else scope.category,
        left_out=left_out,
        sources_searched=None if scope is None else list(scope.sources),
    )


def _with_probe_similarities(candidates: list[Candidate], store: MetadataStore, templates: np.ndarray,
                             spec: ModelSpec) -> list[Candidate]:
    """``candidates`` with their similarity to each probe face (exact, from the stored templates)."""
    if len(templates) == 1:
        return [replace(c, probe_similarities=[c.similarity]) for c in candidates]
    rows: dict[int, np.ndarray] = {}
    for ids, vectors in store.face_vectors([c.face_id for c in candidates]) if candidates else ():
        for face_id, vector in zip(ids, vectors):
            rows[int(face_id)] = vector
    return [replace(c, probe_similarities=[round(float(spec.similarity(d)), 4) for d in
                                           np.linalg.norm(templates - rows[c.face_id], axis=1)])
            if c.face_id in rows else c for c in candidates]


def search_gallery(photo: PhotoArg | Sequence[PhotoArg], *, gallery: Gallery, store: MetadataStore, settings: Settings,
                   actor: str, purpose: str | None, case: str | None, top: int | None = None,
                   threshold: float | None = None, face: int | None = None, fusion: str = FUSION,
                   category: str | None = None) -> SearchResult:
    """:func:`search_photo` in a deployment: its gallery's analyzer and index, its settings
    (``top``, ``threshold`` and ``category`` when not given) and its calibration; only the sources
    whose purposes allow the category are searched. ``photo`` is one probe photo (bytes or a
    path) or several of one person (at most :data:`~vultus.probes.MAX_PROBES`)."""
    # First: an unknown category is refused before the probe is read or anything logged.
    scope = search_scope(store, category if category and category.strip() else settings.default_category)
    probes = read_probes(photo)
    # The index loads (file, decryption, reconciliation) while the probe is analysed:
    # both are mostly native code, so a cold search takes the longer of the two, not the sum.
    index = InBackground(lambda: gallery.open_index(writable=False))
    return search_photo(
        probes, analyzer=gallery.analyzer, store=store, index=index.result, purpose=purpose, case=case,
        top=top or settings.top, threshold=settings.threshold if threshold is None else threshold,
        face=face, max_pixels=settings.max_pixels, max_decode_mb=settings.max_decode_mb,
        actor=actor, purpose_required=settings.purpose_required,
        calibration=calibration_of(store, gallery.embedder.model_id), fusion=fusion, scope=scope,
    )
