"""Moving a deployment into another store and index (`vultus migrate --to-store URL --to-index URL`).

Every table of the store is copied row by row, as stored, into the target store (ids, sealed
templates, names and contacts as their ciphertext: the target is used with the same key file;
audit entries with their hashes, so the chain verifies there; token hashes as hashes), then the
target index is built from the target's templates, decrypted with the deployment's key. The
copy, the index build and the checks run inside one transaction of the target store: a move
cut short (an error, Ctrl-C, kill -9) leaves the target store as empty as it found it, and the
source is only read, under the deployment's exclusive hold, until the end, when the move is
audited on both sides. The data directory keeps the key file and the blobs.

Checks before the commit: rows per table and their content (a sha256 of every row) equal, id
sequences carried over, meta equal, the audit chain verifies on the target, the index holds
the searchable faces, and a sample of stored faces' own templates searched in both indexes
gives the same top-10 (up to the order of equal distances; an approximate index: 95% of them).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .config import Settings
from .deployment import Deployment
from .errors import IndexCorruptError, KeyFileError, MigrationError, SettingsError, TamperedDataError
from .gallery import Gallery
from .index import IndexTarget, Resizable, VectorIndex, index_backend
from .policy import check_gallery_model
from .store import AuditAction, MetadataStore, open_store
from .store.base import store_backend

__all__ = ["TABLES", "SAMPLE", "Check", "MigrationReport", "migrate_deployment", "redact"]

#: Every table of the store, in the order they are copied (a table after those its foreign keys
#: name). A table added to the schema must be added here, with how it travels, or the tests fail.
TABLES = (
    "meta",                # written with set_meta: a new store already holds schema_version and audit_head
    "sources",
    "source_purposes",     # the search categories each source allows
    "images",
    "faces",               # templates sealed under the key file: copied as their ciphertext
    "audit",               # with its hashes; meta's audit_head (keyed with the key file) comes with meta
    "search_hits",
    "suppressions",        # sealed templates, as ciphertext
    "requests",            # sealed templates and contacts, as ciphertext
    "public_attempts",     # keyed hashes (the key file's): valid on the target as they are
    "users",               # token and password hashes only, as they are
    "erasures",            # intents (none: the writer lock finishes them first) and signed receipts
    "clustering_sources",
    "people",              # sealed names and centroids, as ciphertext
    "person_faces",
    "forgotten_faces",
)

#: Stored faces whose own templates are searched in both indexes.
SAMPLE = 20
#: Neighbours compared per sampled face.
TOP = 10
#: Share of the source's top-10 an approximate index must return (FAISS IVF and Milvus are tuned for 0.99).
APPROXIMATE_AGREEMENT = 0.95
#: Templates added to the target index at a time.
BATCH = 5000
_DISTANCE_TOLERANCE = 1e-4
#: Meta keys a store holds as soon as it is made (its schema version, an empty audit head).
_FRESH_META = {"schema_version", "audit_head"}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Check:
    """One verification: what was compared, the source's and the target's figure, and whether they agree."""

    name: str
    source: str
    target: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "source": self.source, "target": self.target, "ok": self.ok}


@dataclass
class MigrationReport:
    """What a move copied and checked, with the audit entries that record it."""

    source_store: str
    source_index: str
    target_store: str
    target_index: str
    rows: dict[str, int]
    index_vectors: int
    checks: list[Check]
    seconds: float = 0.0
    audit: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": {"store": self.source_store, "index": self.source_index},
                "target": {"store": self.target_store, "index": self.target_index}, "rows": self.rows,
                "index_vectors": self.index_vectors, "checks": [c.as_dict() for c in self.checks],
                "seconds": round(self.seconds, 2), "audit": self.audit}


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (what is printed and audited)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _place(url: str) -> str:
    """What a URL points at, for telling whether two URLs name the same store or index."""
    parts = urlsplit(url)
    path = parts.path
    if not parts.netloc and path.startswith("/"):
        path = str(PurePosixPath("/" + path.lstrip("/")))
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path.rstrip("/") or path, parts.query, ""))


def _index_place(url: str) -> str:
    """What an index URL points at, as its backend reads it (a Milvus URL's ef or user do not count)."""
    place = index_backend(url).place
    return place(url) if place is not None else _place(url)


def migrate_deployment(*, deployment: Deployment, gallery: Gallery, settings: Settings, to_store: str, to_index: str,
                       actor: str, replace_index: bool = False, sample: int = SAMPLE,
                       progress: Progress | None = None) -> MigrationReport:
    """Copy the deployment's store into ``to_store`` and build its index at ``to_index``, verified and audited.

    Refused (:class:`MigrationError`, :class:`SettingsError`), with nothing written: a URL no
    backend handles, the deployment's own store or index as the target, a target store that
    holds data, a target index that does (unless ``replace_index``), a source whose audit chain
    does not verify, another process with the data directory open. Checks that fail roll the
    target store back and raise.
    """
    started = time.monotonic()
    tell = progress or (lambda step, done, total: None)
    store_backend(to_store)  # an unknown scheme is refused before anything is made
    index_backend(to_index)
    if _place(to_store) == _place(deployment.store_url):
        raise MigrationError(f"{redact(to_store)} is this deployment's own store; --to-store names the store to copy "
                             "it into (a PostgreSQL database, another SQLite file). Nothing was copied.")
    if _index_place(to_index) == _index_place(deployment.index_url):
        raise MigrationError(f"{redact(to_index)} is this deployment's own index; --to-index names the index to build "
                             "for the target (a Milvus server, another FAISS folder). Nothing was copied.")
    source = deployment.store
    check_gallery_model(source.model_ids(), gallery.embedder.model_id)
    hold = deployment.presence.alone(why=(
        f"Another process has {deployment.data_dir} open (`vultus serve`, or a command still running). A move "
        "copies the deployment as it is at one moment, so nothing else may change it meanwhile: stop that "
        "process and run `vultus migrate` again. Nothing was copied."))
    names = {"from": {"store": redact(deployment.store_url), "index": redact(deployment.index_url)},
             "to": {"store": redact(to_store), "index": redact(to_index)}}
    with hold, deployment.writing():
        chain = source.verify_audit()
        if not chain.ok:
            raise MigrationError(
                f"The audit chain of this deployment does not verify (entry {chain.bad_id}: {chain.problem}), so a "
                "copy could not be shown to be complete. Run `vultus audit verify`, find out what happened, and "
                "restore the store from a backup before moving it. Nothing was copied.")
        source_index = gallery.open_index(writable=True)
        spec = IndexTarget(to_index, gallery.embedder.spec.dim, deployment.keys, gallery.embedder.model_id)
        _refuse_filled_index(spec, replace_index)
        target = open_store(to_store, deployment.keys)
        try:
            _refuse_filled_store(target, to_store)
            report = _move(source, target, source_index, spec, settings=settings, sample=sample, tell=tell,
                           actor=actor, names=names)
        finally:
            target.close()
        # Only now, with the target committed: a move cut short leaves the source as it was.
        report.audit["source"] = source.log(actor=actor, action=AuditAction.DEPLOYMENT_MIGRATE,
                                            details={**names, **_summary(report), "side": "source"})
    report.seconds = time.monotonic() - started
    return report


def _summary(report: MigrationReport) -> dict[str, Any]:
    return {"rows": report.rows, "index_vectors": report.index_vectors,
            "checks": {"passed": sum(c.ok for c in report.checks), "of": len(report.checks)}}


def _move(source: MetadataStore, target: MetadataStore, source_index: VectorIndex, spec: IndexTarget, *,
          settings: Settings, sample: int, tell: Progress, actor: str, names: dict) -> MigrationReport:
    """Copy, build and check inside one transaction of the target; commit only when every check passes."""
    backend = index_backend(spec.url)
    touched = False
    try:
        with target.transaction():
            counts = source.row_counts()
            digests = _copy_rows(source, target, counts, tell)
            target.set_id_sequences(source.id_sequences())
            index = backend.open(spec, True)
            touched = True  # from here on the target index may hold what this move adds
            vectors = _build_index(target, index, settings, tell)
            tell("verify", 0, 1)
            checks = _checks(source, target, counts, digests, source_index, index, sample)
            tell("verify", 1, 1)
            report = MigrationReport(names["from"]["store"], names["from"]["index"], names["to"]["store"],
                                     names["to"]["index"], rows=counts, index_vectors=vectors, checks=checks)
            if not report.ok:
                failed = "; ".join(f"{c.name}: source {c.source}, target {c.target}" for c in checks if not c.ok)
                raise MigrationError(f"The copy does not match the deployment ({failed}). The target store was rolled "
                                     "back and its index dropped; the deployment is unchanged.")
            report.audit["target"] = target.log(actor=actor, action=AuditAction.DEPLOYMENT_MIGRATE,
                                                details={**names, **_summary(report), "side": "target"})
    except BaseException:
        if touched:
            # An index of rows that were rolled back must not block the next try; it was empty, or
            # --replace-index said that what it held may go.
            backend.drop(spec)
        raise
    return report


def _refuse_filled_index(spec: IndexTarget, replace: bool) -> None:
    """Refuse a target index that cannot remove templates physically, or that holds templates (or
    cannot be read), unless told to replace it."""
    try:
        found = index_backend(spec.url).open(spec, False)
        held: int | None = len(found)
    except (IndexCorruptError, KeyFileError, TamperedDataError):
        found, held = None, None
    if found is not None and not found.capabilities.physical_removal:
        # Erasure receipts say that a person's templates are gone: an index that only hides them would make them false.
        raise SettingsError(f"The vector index at {redact(spec.url)} cannot remove templates physically, which "
                            "erasures require; choose another --to-index. Nothing was copied.")
    if replace or held == 0:
        return
    what = "cannot be read with this deployment's key file" if held is None else f"already holds {held:,} templates"
    raise MigrationError(
        f"The target index {redact(spec.url)} {what}. If it is what an interrupted `vultus migrate` left, run "
        "again with --replace-index (it is replaced when the new index is complete); if it belongs to another "
        "deployment, choose another --to-index. Nothing was copied.")


def _refuse_filled_store(target: MetadataStore, url: str) -> None:
    """Refuse a target store that holds anything a new store does not."""
    counts = target.row_counts()
    filled = {name: n for name, n in counts.items() if n and name != "meta"}
    meta = {row["key"]: row["value"] for part in target.export_rows("meta") for row in part}
    extra = sorted(key for key, value in meta.items() if key not in _FRESH_META or (key == "audit_head" and value))
    if not filled and not extra:
        return
    moved = target.audit_entries(action=str(AuditAction.DEPLOYMENT_MIGRATE))
    held = ", ".join(f"{n:,} {name}" for name, n in filled.items()) or "settings (" + ", ".join(extra) + ")"
    if moved:
        why = (f"It holds a finished move (audit entry {moved[-1].id}, {moved[-1].at}): switch the deployment to it "
               "(set VULTUS_STORE__URL and VULTUS_INDEX__URL, see the README), or empty it to move again.")
    else:
        why = ("It may be another deployment's: choose an empty store (a new database, a new SQLite file). A move "
               "cut short leaves its target empty, so nothing of an earlier try needs removing.")
    raise MigrationError(f"The target store {redact(url)} is not empty ({held}). {why} Nothing was copied.")


def _canonical(row: dict[str, Any]) -> bytes:
    """A row as bytes that are the same whichever backend it was read from."""
    def plain(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"bytes": bytes(value).hex()}
        if isinstance(value, float):
            return repr(value)
        return value
    return json.dumps({k: plain(v) for k, v in sorted(row.items())}, sort_keys=True, default=str).encode()


def _digest(parts: Iterable[list[dict[str, Any]]]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        for row in part:
            digest.update(_canonical(row))
            digest.update(b"\n")
    return digest.hexdigest()


def _copy_rows(source: MetadataStore, target: MetadataStore, counts: dict[str, int], tell: Progress) -> dict[str, str]:
    """Every table, chunk by chunk, into the target's open transaction; the sha256 of each table's rows."""
    digests = {}
    for name in TABLES:
        digest, done = hashlib.sha256(), 0
        tell(name, 0, counts[name])
        for part in source.export_rows(name):
            for row in part:
                digest.update(_canonical(row))
                digest.update(b"\n")
            if name == "meta":
                for row in part:
                    target.set_meta(row["key"], row["value"])
            else:
                target.import_rows(name, part)
            done += len(part)
            tell(name, done, counts[name])
        digests[name] = digest.hexdigest()
    return digests


def _build_index(target: MetadataStore, index: VectorIndex, settings: Settings, tell: Progress) -> int:
    """Add the target's searchable templates (decrypted with the key file), refit, flush; how many."""
    restricted = target.restricted_face_ids()
    total = int(target.face_signature()[0])
    done = 0
    tell("index", 0, total)
    for ids, vectors in target.face_vectors(chunk=BATCH):
        keep = ~np.isin(ids, restricted)
        if keep.any():
            index.add(ids[keep], vectors[keep])
            done += int(keep.sum())
            tell("index", done, total)
    if isinstance(index, Resizable) and index.plan_size(settings.ivf_threshold) is not None:
        index.fit_size(settings.ivf_threshold, lambda: _searchable(target, index.dim))
    index.flush()
    return len(index)


def _searchable(store: MetadataStore, dim: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(store.face_vectors(store.searchable_face_ids().tolist()))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _checks(source: MetadataStore, target: MetadataStore, counts: dict[str, int], digests: dict[str, str],
            source_index: VectorIndex, index: VectorIndex, sample: int) -> list[Check]:
    """Compare the target (inside its open transaction) with the source: rows, sequences, chain, index, searches."""
    checks = []
    target_counts = target.row_counts()
    for name in TABLES:
        same = target_counts.get(name) == counts[name] and _digest(target.export_rows(name)) == digests[name]
        shown = f"{target_counts.get(name, 0):,}" + ("" if same or target_counts.get(name) != counts[name]
                                                     else " (rows differ)")
        checks.append(Check(f"rows: {name}", f"{counts[name]:,}", shown, same))
    wanted, given = source.id_sequences(), target.id_sequences()
    checks.append(Check("id sequences", f"{len(wanted)} tables", f"{sum(given.get(t, -1) >= n for t, n in wanted.items())} "
                        "carried over", all(given.get(t, -1) >= n for t, n in wanted.items())))
    chain = target.verify_audit()
    checks.append(Check("audit chain", f"{counts['audit']:,} entries, verifies",
                        f"{chain.checked:,} entries, " + ("verifies" if chain.ok else f"fails at {chain.bad_id}: {chain.problem}"),
                        chain.ok and chain.checked == counts["audit"]))
    searchable = int(target.face_signature()[0])
    checks.append(Check("index templates", f"{len(source_index):,}", f"{len(index):,}",
                        len(index) == len(source_index) == searchable))
    checks.append(_search_check(source, target, source_index, index, sample))
    return checks


def _search_check(source: MetadataStore, target: MetadataStore, source_index: VectorIndex, index: VectorIndex,
                  sample: int) -> Check:
    """Search ``sample`` stored faces' own templates (spread over the ids) in both indexes; compare the top-10s."""
    ids = target.searchable_face_ids()
    if not len(ids) or sample <= 0:
        return Check("searches", "no face to search", "no face to search", len(source_index) == len(index) == 0)
    picked = np.unique(ids[np.linspace(0, len(ids) - 1, min(sample, len(ids))).round().astype(int)])
    parts = list(source.face_vectors(picked.tolist()))
    queries = np.concatenate([p[1] for p in parts])
    k = min(TOP, len(ids))
    source_d, source_i = source_index.search(queries, k)
    target_d, target_i = index.search(queries, k)
    found, wanted, themselves = _agreement(source_d, source_i, target_d, target_i)
    exact = source_index.capabilities.exact and index.capabilities.exact
    if exact:
        ok = found == wanted and np.allclose(_finite(source_d), _finite(target_d), atol=_DISTANCE_TOLERANCE)
        rule = "the same"
    else:
        ok = found >= APPROXIMATE_AGREEMENT * wanted and themselves == len(queries)
        rule = f"at least {APPROXIMATE_AGREEMENT:.0%} the same"
    return Check(f"searches ({len(queries)} faces, top {k}, {rule})", f"{wanted} neighbours",
                 f"{found} of them found", bool(ok))


def _finite(distances: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(distances), distances, -1.0)


def _agreement(source_d: np.ndarray, source_i: np.ndarray, target_d: np.ndarray,
               target_i: np.ndarray) -> tuple[int, int, int]:
    """(source neighbours the target returned, source neighbours, queries whose nearest is at distance 0 in the target).

    A neighbour tied in distance with the target's last one counts as returned: which of equal
    templates fill the last places is the index's choice."""
    found = wanted = themselves = 0
    for row in range(len(source_i)):
        valid = target_i[row] >= 0
        returned = set(target_i[row][valid].tolist())
        last = float(target_d[row][valid].max()) if valid.any() else -np.inf
        themselves += bool(valid.any() and target_d[row][valid].min() <= _DISTANCE_TOLERANCE)
        for distance, face_id in zip(source_d[row], source_i[row]):
            if face_id < 0:
                continue
            wanted += 1
            found += face_id in returned or abs(float(distance) - last) <= _DISTANCE_TOLERANCE
    return found, wanted, themselves
