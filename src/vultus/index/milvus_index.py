"""Templates on Milvus: the vector index of a deployment that outgrows one machine.

Registered for ``milvus://[USER:PASSWORD@]HOST:PORT[/PREFIX][?ef=N]``. Each embedder model has a
collection of its own, named from PREFIX (default ``vultus``) and the model id, so a change of
model never mixes templates; its primary key is the store's face id (int64) and its one other
field the template. The collection is reached through an alias: a rebuild (``vultus reindex``)
fills a new generation of it, and its first flush points the alias there and drops the old one,
so a rebuild cut short leaves the old index searchable.

Index: HNSW with M 16 and efConstruction 200; searches use ef ``N`` (default 80, at least the
number of results asked for). bench/scale.py measured recall@10 against exact search at 1M
faces; searches re-rank ``RERANK`` times the candidates by the store's exact templates, so what
the index must find is the true ten among the first twenty. Distances come back squared from
Milvus and are square-rooted here, so they match FAISS.

Erasure: ``remove`` deletes by primary key; ``flush`` then flushes, compacts, waits for the
compaction and verifies that no removed face comes back, neither from a query on its id nor
from a search with its own template (:class:`~vultus.errors.IndexErasureError` otherwise, and
the erasure's receipt is not made). What Milvus itself still keeps for a while is stated in the
README ("Templates on Milvus"): the segment files a compaction replaced, until its garbage
collector's ``dataCoord.gc.dropTolerance``, and the insert messages in its message queue, until
their retention; templates are not encrypted there (the store keeps its own sealed copy).

Reads after this process's own writes see them (session consistency, and strong consistency
for the first read after a delete, which Milvus 2.3 does not give a timestamp to). Writes by
other processes are seen a moment later; the store's signature makes the gallery reconcile.
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ..errors import IndexCorruptError, IndexErasureError, IndexUnavailableError, SettingsError
from .base import Capabilities, IdFilter, IndexBackend, IndexTarget, register_index

__all__ = ["MilvusIndex", "MilvusURL", "parse_url", "DEFAULT_EF", "HNSW_M", "HNSW_EF_CONSTRUCTION"]

SCHEME = "milvus"
DEFAULT_PORT = 19530
DEFAULT_PREFIX = "vultus"
#: Search breadth of the HNSW graph (results asked for are a floor). bench/scale.py at 1M faces
#: on 2 cores: recall@10 0.990-0.992 at ef 64 (too close to 0.99), 0.994-0.995 at 80, p50 3.5-4.3 ms.
DEFAULT_EF = 80
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
#: Milvus's most results per search or query.
_MAX_TOP = 16384
#: Rows per insert or id query (a batch of 128-d templates is about 4 MB, under gRPC's limit).
_BATCH = 8192
#: Seconds a call may take before the server is reported unavailable.
_TIMEOUT = 60.0
#: Seconds an erasure's flush keeps compacting until Milvus's segments hold no deleted row.
_COMPACTION_WAIT = 180.0
#: Seconds to wait for a TCP connection before saying the server does not answer.
_CONNECT_TIMEOUT = 5.0
_FIELDS = ("id", "vector")

T = TypeVar("T")


@dataclass(frozen=True)
class MilvusURL:
    """What a ``milvus://`` URL names."""

    host: str
    port: int
    user: str | None
    password: str | None
    prefix: str
    ef: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> MilvusURL:
    """Read ``milvus://[USER:PASSWORD@]HOST:PORT[/PREFIX][?ef=N]``; a SettingsError says what is wrong."""
    form = f"{SCHEME}://[USER:PASSWORD@]HOST:PORT[/PREFIX][?ef=N]"
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise SettingsError(f"The Milvus index URL {_label(url)} has a bad port; it is {form}.") from None
    if parts.scheme.lower() != SCHEME or not parts.hostname:
        raise SettingsError(f"A Milvus index URL is {form}, not {_label(url)}; set VULTUS_INDEX__URL (--index-url).")
    prefix = unquote(parts.path.strip("/")) or DEFAULT_PREFIX
    # No _ in it: a collection's name is PREFIX_MODEL_HASH_gN, and with one, deployments whose
    # prefixes overlap (vultus, vultus_x) could take each other's collections for their own.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,62}", prefix):
        raise SettingsError(f"The collection prefix {prefix!r} in {_label(url)} must start with a letter and hold only "
                            "letters and digits (at most 63).")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"ef"})
    if unknown:
        raise SettingsError(f"The Milvus index URL {_label(url)} has unknown options {unknown}; the only one is ef=N.")
    ef = DEFAULT_EF
    if "ef" in query:
        text = query["ef"][-1]
        if not text.isdigit() or not 1 <= int(text) <= 32768:
            raise SettingsError(f"ef in {_label(url)} must be a whole number from 1 to 32768 (HNSW's search breadth).")
        ef = int(text)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return MilvusURL(parts.hostname, port, user, password, prefix, ef)


def _label(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return repr(re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url))


def _base_name(prefix: str, model_id: str | None) -> str:
    """The alias a model's collection is reached by: readable, and unique per model id."""
    model = model_id or "default"
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_")[:40] or "model"
    return f"{prefix}_{slug}_{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def _generation(name: str, base: str) -> int | None:
    match = re.fullmatch(re.escape(base) + r"_g(\d+)", name)
    return int(match.group(1)) if match else None


_CONNECTIONS: set[str] = set()
_CONNECT_LOCK = threading.Lock()


def _connect(where: MilvusURL) -> str:
    """A pymilvus connection alias for the server, made once per process and address."""
    try:
        from pymilvus import connections
    except ModuleNotFoundError:
        raise SettingsError("The Milvus index needs the pymilvus package: install Vultus with its services extra "
                            "(pip install 'vultus[services]', or ./scripts/setup.sh --services).") from None
    key = f"vultus-{where.user or ''}@{where.address}"
    with _CONNECT_LOCK:
        if key in _CONNECTIONS and connections.has_connection(key):
            return key
        # pymilvus's own connect retries for a long time against a closed port: ask TCP first.
        try:
            socket.create_connection((where.host, where.port), timeout=_CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise _unavailable(where, exc) from None
        try:
            connections.connect(alias=key, host=where.host, port=str(where.port), user=where.user or "",
                                password=where.password or "", timeout=_CONNECT_TIMEOUT * 2)
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors or its own
            raise _unavailable(where, exc) from None
        _CONNECTIONS.add(key)
        return key


def _unavailable(where: MilvusURL, exc: BaseException) -> IndexUnavailableError:
    reason = str(getattr(exc, "message", None) or exc).strip().splitlines()[0][:200] if str(exc) else type(exc).__name__
    return IndexUnavailableError(
        f"The Milvus server at {where.address} did not answer ({reason}). Start it (scripts/services.sh start "
        "milvus, for a trial), or fix VULTUS_INDEX__URL (--index-url), then run the command again; nothing was lost: "
        "the store keeps every template, and `vultus reindex` rebuilds the index from it."
    )


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a failed call to the server into IndexUnavailableError (Vultus's own errors pass)."""

    @functools.wraps(method)
    def call(self: "MilvusIndex", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (IndexErasureError, IndexCorruptError, IndexUnavailableError, SettingsError, ValueError):
            raise
        except Exception as exc:  # pymilvus's MilvusException and grpc's RpcError have no common base
            raise _unavailable(self.where, exc) from exc

    return call


class MilvusIndex:
    """One model's templates in a Milvus collection, reached through its alias (see the module's docstring)."""

    def __init__(self, target: IndexTarget, *, fresh: bool = False):
        self.where = parse_url(target.url)
        self.dim = target.dim
        self._using = _connect(self.where)  # first: it says what to install when pymilvus is missing
        from pymilvus import Collection  # heavy import kept out of `import vultus`

        self._Collection = Collection
        self._base = _base_name(self.where.prefix, target.model_id)
        # Ids asked to be removed since the last flush (with their templates, where they were
        # still there to read), whether or not this call found them: another process may have
        # deleted them first, or this one before a crash, and only a compaction makes it physical.
        self._removed: dict[int, np.ndarray] = {}
        self._strong_next = False
        self._init(fresh)

    @_guarded
    def _init(self, fresh: bool) -> None:
        from pymilvus import utility

        self._utility = utility
        current = self._current()
        if fresh or current is None:
            # A new generation; the alias moves to it at the first flush (at once when there is none yet).
            self._collection = self._create(self._next_name())
            self._pending = self._collection.name
            if current is None and not fresh:
                # Published empty at once, and nothing else dropped: an unaliased generation may be
                # another process's first build (`vultus migrate`), which its flush will publish.
                self._swap(drop_others=False)
        else:
            self._pending = None
            self._collection = self._Collection(self._base, using=self._using)
            dim = self._stored_dim(self._collection)
            if dim != self.dim:
                raise IndexCorruptError(
                    f"The Milvus collection {current} holds {dim}-d vectors, the embedder makes {self.dim}-d ones. "
                    "Run `vultus reindex` to rebuild it from the store."
                )
            self._collection.load(timeout=_TIMEOUT)
        self._count = self._strong_count()

    # -- names and generations ------------------------------------------------------------

    def _generations(self) -> list[tuple[int, str]]:
        names = self._utility.list_collections(using=self._using, timeout=_TIMEOUT)
        found = [(n, name) for name in names if (n := _generation(name, self._base)) is not None]
        return sorted(found)

    def _current(self) -> str | None:
        """The collection the alias points at, or None when there is none yet."""
        for _, name in self._generations():
            if self._base in self._utility.list_aliases(name, using=self._using, timeout=_TIMEOUT):
                return name
        return None

    def _next_name(self) -> str:
        generations = self._generations()
        return f"{self._base}_g{(generations[-1][0] + 1) if generations else 1}"

    def _create(self, name: str) -> Any:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
                                   FieldSchema("vector", DataType.FLOAT_VECTOR, dim=self.dim)],
                                  description="Vultus face templates (face id -> template)")
        collection = self._Collection(name, schema, using=self._using, consistency_level="Session", timeout=_TIMEOUT)
        collection.create_index("vector", {"index_type": "HNSW", "metric_type": "L2",
                                           "params": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}},
                                timeout=_TIMEOUT)
        collection.load(timeout=_TIMEOUT)
        return collection

    @staticmethod
    def _stored_dim(collection: Any) -> int:
        for field in collection.describe()["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        return -1

    def _swap(self, *, drop_others: bool = True) -> None:
        """Point the alias at the pending generation and (by default) drop every other one."""
        new = self._pending
        current = self._current()
        if current is None:
            self._utility.create_alias(new, self._base, using=self._using, timeout=_TIMEOUT)
        elif current != new:
            self._utility.alter_alias(new, self._base, using=self._using, timeout=_TIMEOUT)
        for _, name in self._generations() if drop_others else ():
            if name != new:
                self._utility.drop_collection(name, using=self._using, timeout=_TIMEOUT)
        self._pending = None
        self._collection = self._Collection(self._base, using=self._using)

    def _level(self) -> str:
        # Milvus 2.3 gives a delete no timestamp, so the session cannot wait for it: the first
        # read after one is strong (it waits for the server to have applied every write).
        if self._strong_next:
            self._strong_next = False
            return "Strong"
        return "Session"

    # -- the VectorIndex protocol ---------------------------------------------------------

    def __len__(self) -> int:
        # Kept here, not asked (every search uses it); refreshed when the gallery reconciles (ids()).
        return self._count

    @_guarded
    def _strong_count(self) -> int:
        rows = self._collection.query(expr="", output_fields=["count(*)"], consistency_level="Strong", timeout=_TIMEOUT)
        return int(rows[0]["count(*)"]) if rows else 0

    @_guarded
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        # Into the live collection, upsert, not insert: Milvus does not refuse a primary key twice,
        # and two processes reconciling with the store at once may both add the same missing face.
        # A rebuild's new generation is this process's alone: plain inserts (an upsert also
        # writes a delete per row).
        write = self._collection.insert if self._pending is not None else self._collection.upsert
        for start in range(0, len(ids), _BATCH):
            write([ids[start:start + _BATCH], vectors[start:start + _BATCH]], timeout=_TIMEOUT)
        self._count += len(ids)

    @_guarded
    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1))
        present = self._rows(ids, with_vectors=True)
        for face_id in ids.tolist():
            self._removed.setdefault(int(face_id), np.zeros(0, dtype=np.float32))
        if present:
            for start in range(0, len(present), _BATCH):
                chunk = list(present)[start:start + _BATCH]
                self._collection.delete(f"id in {chunk}", timeout=_TIMEOUT)
            self._removed.update(present)
            self._count = max(0, self._count - len(present))
            self._strong_next = True
        return len(present)

    def _rows(self, ids: np.ndarray, *, with_vectors: bool) -> dict[int, np.ndarray]:
        """The stored (id -> template) of those of ``ids`` the collection holds, read strongly."""
        found: dict[int, np.ndarray] = {}
        fields = list(_FIELDS) if with_vectors else ["id"]
        for start in range(0, len(ids), _BATCH):
            chunk = [int(i) for i in ids[start:start + _BATCH]]
            for row in self._collection.query(expr=f"id in {chunk}", output_fields=fields, consistency_level="Strong",
                                              limit=len(chunk), timeout=_TIMEOUT):
                found[int(row["id"])] = np.asarray(row.get("vector", ()), dtype=np.float32)
        return found

    @_guarded
    def search(self, vectors: np.ndarray, k: int, id_filter: IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        n = len(vectors)
        width = max(1, min(k, self._count, _MAX_TOP))
        distances = np.full((n, width), np.inf, dtype=np.float32)
        found = np.full((n, width), -1, dtype=np.int64)
        expr = _expression(id_filter)
        if self._count == 0 or n == 0 or expr is False:
            return distances, found
        params = {"metric_type": "L2", "params": {"ef": max(self.where.ef, width)}}
        results = self._collection.search(vectors, "vector", params, limit=width, expr=expr or None,
                                          consistency_level=self._level(), timeout=_TIMEOUT)
        for row, hits in enumerate(results):
            got = len(hits.ids)
            found[row, :got] = hits.ids
            distances[row, :got] = np.sqrt(np.maximum(np.asarray(hits.distances, dtype=np.float32), 0.0))
        return distances, found

    @_guarded
    def range_search(self, vector: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Every (distance, id) within ``radius``, nearest first, found by reading every template.

        A rights request must find every face of the person, and HNSW's own range search walks a
        graph that may miss some; so this reads the collection in batches and measures each
        template here (about a second per 100,000 faces on 2 cores, over loopback). Rights
        requests are rare; searches never come here.
        """
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(self.dim)
        limit = float(radius)
        found_ids, found_d = [], []
        iterator = self._collection.query_iterator(batch_size=_BATCH, expr="", output_fields=list(_FIELDS),
                                                   consistency_level=self._level(), timeout=_TIMEOUT)
        try:
            while batch := iterator.next():
                ids = np.fromiter((row["id"] for row in batch), dtype=np.int64, count=len(batch))
                vectors = np.asarray([row["vector"] for row in batch], dtype=np.float32).reshape(len(batch), self.dim)
                distances = np.linalg.norm(vectors - query, axis=1)
                inside = distances <= limit
                found_ids.append(ids[inside])
                found_d.append(distances[inside])
        finally:
            iterator.close()
        ids = np.concatenate(found_ids) if found_ids else np.zeros(0, dtype=np.int64)
        distances = np.concatenate(found_d).astype(np.float32) if found_d else np.zeros(0, dtype=np.float32)
        order = np.argsort(distances, kind="stable")
        return distances[order], ids[order]

    @_guarded
    def refresh(self) -> None:
        """Count what the server holds now, other processes' writes included (a strong read:
        about one Milvus time tick). The alias is resolved by the server at every call, so a
        rebuild another process published is searched without reopening."""
        self._count = self._strong_count()

    @_guarded
    def ids(self) -> np.ndarray:
        iterator = self._collection.query_iterator(batch_size=_MAX_TOP, expr="", output_fields=["id"],
                                                   consistency_level="Strong", timeout=_TIMEOUT)
        parts = []
        try:
            while batch := iterator.next():
                parts.append(np.fromiter((row["id"] for row in batch), dtype=np.int64, count=len(batch)))
        finally:
            iterator.close()
        every = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        self._count = len(every)
        return every

    @_guarded
    def flush(self) -> None:
        """Make a rebuild current (alias swap) and erasures physical: flush, compact, verify.

        An insert is durable in Milvus once acknowledged (its message queue), so adds alone need
        nothing here: flushing each batch would only seal many small segments.
        """
        if self._pending is not None:
            self._collection.flush(timeout=_TIMEOUT)  # sealed, so its HNSW index is built
            self._swap()
            self._removed.clear()  # the generation that held them was dropped
        if not self._removed:
            return
        self._collection.flush(timeout=_TIMEOUT)
        deadline = time.monotonic() + _COMPACTION_WAIT
        while True:
            # Milvus compacts only segments whose index is built (dataCoord.compaction.indexBasedCompaction):
            # a face stored just before its erasure sits in a segment sealed a moment ago, and a
            # compaction planned before its index was registered leaves it as it is.
            self._utility.wait_for_index_building_complete(self._collection.name, using=self._using,
                                                           timeout=_TIMEOUT * 5)
            self._collection.compact(timeout=_TIMEOUT)
            self._collection.wait_for_compaction_completed(timeout=_TIMEOUT * 5)
            # Physically gone: the segments Milvus keeps hold no more rows than queries can see.
            stored, live = self._persisted_rows(), self._strong_count()
            if stored <= live:
                break
            if time.monotonic() > deadline:
                raise IndexErasureError(
                    f"Milvus's segments still hold {stored - live} deleted row(s) after {_COMPACTION_WAIT:.0f} s of "
                    "compaction. The erasure is not finished and has no receipt; the next command that writes "
                    "(any `vultus` command but a search) finishes it once the Milvus server has caught up."
                )
            time.sleep(2)
        self._count = live
        self._verify_removed()
        self._removed.clear()

    def _persisted_rows(self) -> int:
        """Rows in the segments Milvus has persisted for the collection (a deleted row counts until compacted)."""
        from pymilvus import connections

        handler = connections._fetch_handler(self._using)  # pymilvus's ORM has no public call for it
        return sum(int(s.num_rows) for s in handler.get_persistent_segment_infos(self._collection.name,
                                                                                 timeout=_TIMEOUT))

    def _verify_removed(self) -> None:
        removed = np.fromiter(self._removed, dtype=np.int64, count=len(self._removed))
        back = self._rows(removed, with_vectors=False)
        templates = [v for v in self._removed.values() if v.size == self.dim]
        if not back and templates and self._count:
            width = min(10, self._count)
            hits = self._collection.search(np.stack(templates), "vector",
                                           {"metric_type": "L2", "params": {"ef": max(self.where.ef, width)}},
                                           limit=width, consistency_level="Strong", timeout=_TIMEOUT)
            back = {int(i): np.zeros(0) for row in hits for i in row.ids if int(i) in self._removed}
        if back:
            raise IndexErasureError(
                f"Milvus still returns {len(back)} removed face(s) (ids {sorted(back)[:5]}) after delete, flush and "
                "compaction. The erasure is not finished and has no receipt; the next command that writes (any "
                "`vultus` command but a search) finishes it once the Milvus server is healthy."
            )

    def size_on_disk(self) -> None:
        return None  # the server keeps the files

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact=False, physical_removal=True, persistent=True, shared=True,
                            description=f"milvus hnsw (M {HNSW_M}, ef {self.where.ef}) at {self.where.address}")


def _expression(id_filter: IdFilter | None) -> str | bool:
    """A Milvus boolean expression for the filter: "" for none, False when it lets nothing through."""
    if id_filter is None:
        return ""
    listed = [int(i) for i in id_filter.ids]
    if id_filter.exclude:
        return f"id not in {listed}" if listed else ""
    return f"id in {listed}" if listed else False


def _open(target: IndexTarget, fresh: bool) -> MilvusIndex:
    return MilvusIndex(target, fresh=fresh)


def _drop(target: IndexTarget) -> None:
    where = parse_url(target.url)
    using = _connect(where)
    base = _base_name(where.prefix, target.model_id)
    from pymilvus import utility

    try:
        for name in utility.list_collections(using=using, timeout=_TIMEOUT):
            if _generation(name, base) is not None:
                if base in utility.list_aliases(name, using=using, timeout=_TIMEOUT):
                    utility.drop_alias(base, using=using, timeout=_TIMEOUT)
                utility.drop_collection(name, using=using, timeout=_TIMEOUT)
    except Exception as exc:
        raise _unavailable(where, exc) from exc


def _sweep(url: str) -> None:
    """Drop the generations a rebuild killed before its flush left behind (no alias points at them)."""
    where = parse_url(url)
    using = _connect(where)
    from pymilvus import utility

    try:
        names = utility.list_collections(using=using, timeout=_TIMEOUT)
        for name in names:
            match = re.fullmatch(re.escape(where.prefix) + r"_(.+_[0-9a-f]{8})_g\d+", name)
            if match and match.group(1) and not utility.list_aliases(name, using=using, timeout=_TIMEOUT):
                # Only when the model's alias points at another generation: a first rebuild's
                # collection is the only copy there is.
                base = f"{where.prefix}_{match.group(1)}"
                if any(_generation(other, base) is not None and utility.list_aliases(other, using=using, timeout=_TIMEOUT)
                       for other in names if other != name):
                    utility.drop_collection(name, using=using, timeout=_TIMEOUT)
    except Exception as exc:
        raise _unavailable(where, exc) from exc


def _place(url: str) -> str:
    """The server and the collections' prefix: what two URLs must share to name the same collections
    (the user, the password and ef only say how they are reached and searched)."""
    where = parse_url(url)
    return f"{SCHEME}://{where.host.lower()}:{where.port}/{where.prefix}"


register_index(SCHEME, IndexBackend(open=_open, drop=_drop, sweep=_sweep, place=_place))
