"""People: a source's faces grouped into people, placed at ingest, clustered in full, corrected by users; audited.

Grouping works inside one source, and only for a source whose registration allows it
(clustering is off by default; turning it on records who did, when, the source's legal basis
and a note; turning it off deletes the source's people, which are derived data). It never
compares faces against an outside list (COMPLIANCE.md 13). What an item is (a photo's face,
a video appearance with all its rows), how centroids are kept and what an erasure does to a
group are the rules of :mod:`vultus.grouping`.

A user's corrections survive clustering runs:

- ``name``: the group gets the name and all its faces are pinned, so the name stays with them;
- ``merge``: the first group takes every face of the others (pinned); it keeps its name, or
  takes the first name among the others; the others go, with their names;
- ``split``: the faces named (whole appearances) become a new group and the rest stay; both
  are pinned, so a run never puts them together again;
- ``forget``: the group goes (name and centroid with it); its faces stay in the gallery but
  are never grouped automatically again, until the source's clustering is turned off.

A run (:func:`cluster_source`) never moves a pinned face: it clusters the pinned and the free
faces together, and a cluster holding a corrected group's faces gives its free faces to that
group (the nearest one, when it holds several); other clusters keep the id of the automatic
group whose faces they mostly hold, so ids stay put across runs.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .errors import ClusteringOffError, PeopleError
from .faces.clustering import assign, centroid, cluster, spread
from .grouping import Item, item_vectors, items_of, refresh_people
from .store import AuditAction, MetadataStore, SourceRecord, iso, utcnow

if TYPE_CHECKING:  # the parts the desk runs on
    from .deployment import Deployment
    from .gallery import Gallery

__all__ = ["PeopleDesk", "set_clustering", "Placer", "cluster_source", "list_people", "show_person", "name_person", "merge_people",
           "split_person", "forget_person", "groups_of_faces", "MAX_NAME"]

#: Longest name a group may be given, in characters.
MAX_NAME = 200
#: Longest note recorded when clustering is turned on.
MAX_NOTE = 1000


# -- which sources allow clustering ------------------------------------------------------------


def set_clustering(store: MetadataStore, *, actor: str, source: str, enabled: bool, note: str | None = None) -> dict[str, Any]:
    """Turn grouping of a source's faces on or off; audited with the source's legal basis.

    Off deletes the source's people (names, centroids, corrections, forgotten marks), and
    leaves no copy of them in the store's files. Returns what changed.
    """
    src = store.get_source(source)
    if note is not None and not enabled:
        raise PeopleError("A note records why grouping is allowed: it goes with turning clustering on, not off.")
    note = _clean_text(note, "note", MAX_NOTE) if note is not None and note.strip() else None
    details: dict[str, Any] = {"source": src.name, "enabled": enabled, "legal_basis": src.legal_basis,
                               "consent_ref": src.consent_ref, "controller": src.controller}
    with store.transaction():
        if enabled:
            changed = store.people.enable(src.id, at=iso(utcnow()), by=actor, legal_basis=src.legal_basis, note=note)
            details["note"] = note
        else:
            changed = bool(store.people.clustering(src.id))
            if changed:
                details["deleted"] = store.people.disable(src.id)
        if changed:
            store.log(actor=actor, action=AuditAction.PEOPLE_CLUSTERING, details=details)
    if changed and not enabled:
        store.purge_deleted()  # names and centroids: no copy left in the write-ahead log
    return {"source": src.name, "clustering": enabled, "changed": changed, **({"deleted": details["deleted"]}
                                                                              if "deleted" in details else {})}


def _require_clustering(store: MetadataStore, source_id: int, source: str) -> None:
    if not store.people.clustering(source_id):
        raise ClusteringOffError(
            f"Source {source!r} does not allow grouping its faces into people (clustering is off). An "
            f"administrator turns it on, if its registration allows it, with `vultus source set {source} "
            "--clustering`."
        )


# -- placing at ingest -------------------------------------------------------------------------


class Placer:
    """Places the faces an ingest stores into the nearest person of their source (cheap: one
    comparison with each centroid); a face near none, or nearly as near two, stays unassigned
    until a full run.

    The rule is :func:`vultus.faces.clustering.assign`'s with each person's spread (how widely
    its faces lie), which ``bench/people.py`` measured to place no face wrongly where the plain
    nearest centroid did. Centroids are decrypted once, for the run; the spreads are made from
    the members' templates at the first face to place, and both are kept up to date as faces join.
    """

    def __init__(self, store: MetadataStore, source: SourceRecord, *, model_id: str, distance: float, actor: str):
        self.store, self.source, self.model_id, self.distance, self.actor = store, source, model_id, distance, actor
        self.ids, self.centroids, self.sizes = store.people.centroids(source.id, model_id)
        self.covers = {p.id: p.cover_face_id for p in store.people.list(source.id)}
        self.spreads: np.ndarray | None = None
        self.placed = 0
        self.unplaced = 0
        self.joined: set[int] = set()

    def _spreads(self) -> np.ndarray:
        """Each person's spread, from the templates its centroid was made of (visible faces of this model)."""
        items = [i for i in items_of(self.store.people.members(self.ids.tolist()))
                 if not i.restricted and i.model_id == self.model_id]
        by_person: dict[int, list[np.ndarray]] = {}
        for item, vector in zip(items, item_vectors(self.store, items)):
            by_person.setdefault(int(item.person_id), []).append(vector)  # type: ignore[arg-type]
        return np.asarray([spread(np.stack(by_person[p])) if p in by_person else 0.0 for p in self.ids.tolist()],
                          dtype=np.float64)

    @classmethod
    def for_source(cls, store: MetadataStore, source: SourceRecord, **kwargs: Any) -> "Placer | None":
        """A placer for ``source``, or None when its faces are not grouped."""
        return cls(store, source, **kwargs) if store.people.clustering(source.id) else None

    def place(self, face_ids: Sequence[int], vectors: Sequence[np.ndarray]) -> None:
        """Place newly stored faces (their templates as ingest made them), each item at most once."""
        if not len(face_ids):
            return
        given = {int(f): np.asarray(v, dtype=np.float32) for f, v in zip(face_ids, vectors)}
        if self.spreads is None and len(self.ids):
            self.spreads = self._spreads()
        for item in items_of(self.store.people.faces_of(list(given))):
            vector = centroid(np.stack([given[f] for f in item.face_ids]))
            row = (assign(vector, self.centroids, distance=self.distance, spreads=self.spreads)
                   if len(self.ids) else None)
            if row is None:
                self.unplaced += 1
                continue
            person_id, size = int(self.ids[row]), int(self.sizes[row])
            # The running mean and mean squared distance to it, with one more face.
            offset = float(np.sum((vector - self.centroids[row]) ** 2))
            self.spreads[row] = (size * self.spreads[row] + size * offset / (size + 1)) / (size + 1)  # type: ignore[index]
            self.centroids[row] = (self.centroids[row] * size + vector) / (size + 1)
            self.sizes[row] = size + 1
            with self.store.transaction():
                self.store.people.assign(person_id, item.face_ids, pinned=False)
                self.store.people.save_centroid(person_id, self.centroids[row], model_id=self.model_id, size=size + 1,
                                                cover_face_id=self.covers.get(person_id) or item.first)
            self.placed += 1
            self.joined.add(person_id)

    def finish(self) -> None:
        """Log what this run placed (one entry per ingest with any face to place)."""
        if self.placed or self.unplaced:
            self.store.log(actor=self.actor, action=AuditAction.PEOPLE_PLACE, details={
                "source": self.source.name, "faces_placed": self.placed, "people": sorted(self.joined),
                "left_unassigned": self.unplaced})


# -- a full clustering run ---------------------------------------------------------------------


def cluster_source(store: MetadataStore, *, source: str, actor: str, model_id: str, distance: float) -> dict[str, Any]:
    """Group the source's faces in full, keeping every user's correction; return the run's figures.

    Left out: restricted faces (kept, not processed), forgotten ones, and faces of another
    model (an unfinished change of model). Pinned faces stay where they are.
    """
    src = store.get_source(source)
    _require_clustering(store, src.id, src.name)
    items = items_of(store.people.source_faces(src.id))
    usable = [i for i in items if not i.restricted and not i.forgotten and i.model_id == model_id]
    anchored = [i for i in usable if i.pinned and i.person_id is not None]
    free = [i for i in usable if not (i.pinned and i.person_id is not None)]
    vectors = item_vectors(store, anchored + free)
    labels = cluster(vectors, distance=distance, min_size=2) if len(vectors) else np.zeros(0, dtype=np.int64)
    anchor_labels, free_labels = labels[:len(anchored)], labels[len(anchored):]
    free_vectors = vectors[len(anchored):]
    corrected = {i.person_id for i in anchored}
    # The centroid of each corrected group's pinned faces, for clusters that hold several groups.
    pinned_centroids = {p: centroid(vectors[[n for n, i in enumerate(anchored) if i.person_id == p]]) for p in corrected}
    target: dict[int, int | tuple[str, int] | None] = {}
    open_labels: dict[int, list[int]] = {}
    for label in sorted({int(x) for x in free_labels if x >= 0}):
        members = [n for n, x in enumerate(free_labels) if x == label]
        here = sorted({anchored[n].person_id for n, x in enumerate(anchor_labels) if x == label})  # type: ignore[type-var]
        if not here:
            open_labels[label] = members
            continue
        matrix = np.stack([pinned_centroids[p] for p in here])
        for n in members:
            target[n] = here[int(np.argmin(np.linalg.norm(matrix - free_vectors[n], axis=1)))]
    for n, x in enumerate(free_labels):
        if x < 0:
            target[n] = None
    # Clusters without a corrected group keep the id of the automatic group whose faces they
    # mostly hold (each id once, the biggest overlap first), or get a new one.
    overlaps = Counter((label, free[n].person_id) for label, members in open_labels.items() for n in members
                       if free[n].person_id is not None and free[n].person_id not in corrected)
    kept: dict[int, int] = {}
    for (label, person_id), _ in sorted(overlaps.items(), key=lambda kv: (-kv[1], kv[0])):
        if label not in kept and person_id not in kept.values():
            kept[label] = person_id  # type: ignore[assignment]
    now = iso(utcnow())
    with store.transaction():
        before = {p.id for p in store.people.list(src.id)}
        new_people = 0
        for label, members in open_labels.items():
            if label not in kept:
                kept[label] = store.people.create(src.id, at=now)
                new_people += 1
            for n in members:
                target[n] = kept[label]
        moves: dict[Any, list[int]] = {}
        for n, item in enumerate(free):
            wanted = target.get(n)
            if wanted != item.person_id:
                moves.setdefault(wanted, []).extend(item.face_ids)
        moved = sum(1 for n, item in enumerate(free) if target.get(n) != item.person_id)
        for wanted, face_ids in moves.items():  # one statement per group, not per face
            if wanted is None:
                store.people.unassign(face_ids)
            else:
                store.people.assign(wanted, face_ids, pinned=False)
        # Only the groups whose faces changed (the moves marked them; new ones start marked).
        refresh_people(store, [p for p, _, _ in store.people.stale()], at=now)
        after = store.people.list(src.id)
        figures = {
            "source": src.name,
            "faces": len(usable),
            "people": sum(1 for p in after if p.size),
            "new_people": new_people,
            "people_removed": len(before - {p.id for p in after}),
            "faces_moved": moved,
            "grouped": sum(1 for t in target.values() if t is not None) + len(anchored),
            "unassigned": sum(1 for t in target.values() if t is None),
            "pinned": len(anchored),
            "left_out": {"restricted": sum(1 for i in items if i.restricted),
                         "forgotten": sum(1 for i in items if i.forgotten and not i.restricted),
                         "other_model": sum(1 for i in items if i.model_id != model_id and not (i.restricted or i.forgotten))},
        }
        store.log(actor=actor, action=AuditAction.PEOPLE_CLUSTER, details=figures)
    store.purge_deleted()  # the centroids of groups that went
    return figures


# -- listing -----------------------------------------------------------------------------------


def list_people(store: MetadataStore, *, actor: str, source: str | None = None) -> list[dict[str, Any]]:
    """Every person (of ``source``) with its faces, largest first; audited."""
    src = store.get_source(source) if source is not None else None
    if src is not None:
        _require_clustering(store, src.id, src.name)
    people = [p for p in store.people.list(src.id if src else None) if p.size]
    shown = _describe(store, people)
    store.log(actor=actor, action=AuditAction.PEOPLE_LIST, details={
        "source": src.name if src else None, "people": len(shown), "faces": sum(p["count"] for p in shown)})
    return shown


def show_person(store: MetadataStore, person_id: int, *, actor: str) -> dict[str, Any]:
    """One person with its faces; audited."""
    person = store.people.get(person_id)
    [shown] = _describe(store, [person])
    store.log(actor=actor, action=AuditAction.PEOPLE_SHOW, details={
        "person_id": person.id, "source": person.source, "faces": shown["count"]})
    return shown


def _describe(store: MetadataStore, people: list) -> list[dict[str, Any]]:
    """People as listed: id, source, name, count, cover and faces (each with face_id, path, box)."""
    by_person: dict[int, list[Item]] = {p.id: [] for p in people}
    for item in items_of(store.people.members(list(by_person))):
        if not item.restricted and item.person_id in by_person:
            by_person[item.person_id].append(item)
    hits = store.hydrate([i.first for items in by_person.values() for i in items])
    shown = []
    for person in people:
        faces = [_face(hits[i.first], i) for i in by_person[person.id] if i.first in hits]
        cover = next((f for f in faces if person.cover_face_id in f["face_ids"]), faces[0] if faces else None)
        shown.append({"id": person.id, "source": person.source, "name": person.name, "count": len(faces),
                      "cover": cover, "faces": faces, "created_at": person.created_at, "updated_at": person.updated_at})
    return shown


def _face(hit: Any, item: Item) -> dict[str, Any]:
    face = {"face_id": hit.face_id, "face_ids": list(item.face_ids), "path": hit.original_path, "box": list(hit.box),
            "image_sha256": hit.sha256, "media": hit.media, "pinned": item.pinned}
    if hit.is_video:
        face |= {"time_start": hit.time_start, "time_end": hit.time_end}
    return face


def groups_of_faces(store: MetadataStore, face_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The people groups that any of ``face_ids`` is in, with their names: for access reports."""
    found = store.people.people_of_faces(face_ids)
    groups: dict[int, list[int]] = {}
    for face_id, person_id in sorted(found.items()):
        groups.setdefault(person_id, []).append(face_id)
    shown = []
    for person_id, faces in sorted(groups.items()):
        person = store.people.get(person_id)
        shown.append({"person_id": person.id, "source": person.source, "name": person.name, "face_ids": faces,
                      "faces_in_group": person.size})
    return shown


# -- corrections -------------------------------------------------------------------------------


def _clean_text(text: str | None, what: str, most: int, *, empty: str = "") -> str:
    """``text`` stripped, or a clear refusal: empty, with control characters, or too long."""
    text = text or ""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise PeopleError(f"The {what} has control characters (tabs, new lines, ...); give it on one line of plain text.")
    cleaned = text.strip()
    if not cleaned:
        raise PeopleError(f"The {what} is empty; give some text{empty}.")
    if len(cleaned) > most:
        raise PeopleError(f"The {what} has {len(cleaned)} characters; at most {most} are kept. Give a shorter one.")
    return cleaned


def _person_to_change(store: MetadataStore, person_id: int):  # noqa: ANN202 - a PersonRecord
    person = store.people.get(person_id)
    _require_clustering(store, person.source_id, person.source)
    return person


def name_person(store: MetadataStore, person_id: int, name: str | None, *, actor: str) -> dict[str, Any]:
    """Give a group a name (None clears it); its faces are pinned, so the name stays with them. Audited
    without the name itself (the audit log is kept for good; a name must be erasable)."""
    with store.transaction():
        person = _person_to_change(store, person_id)
        cleaned = None if name is None else _clean_text(name, "name", MAX_NAME,
                                                        empty=" (to remove a group's name, clear it: --clear)")
        now = iso(utcnow())
        store.people.set_name(person.id, cleaned, at=now)
        store.people.pin(person.id)
        store.log(actor=actor, action=AuditAction.PEOPLE_NAME, details={
            "person_id": person.id, "source": person.source, "named": cleaned is not None,
            "had_name": person.name is not None})
    if person.name is not None:
        store.purge_deleted()  # the old name's ciphertext
    return _describe(store, [store.people.get(person.id)])[0]


def merge_people(store: MetadataStore, person_ids: Sequence[int], *, actor: str) -> dict[str, Any]:
    """Merge groups into the first one given: it takes all their faces, pinned; the others go."""
    ids = list(dict.fromkeys(int(i) for i in person_ids))
    if len(ids) < 2:
        raise PeopleError("Merging needs at least two different person ids: the first keeps its id, the others join it.")
    with store.transaction():
        people = [_person_to_change(store, i) for i in ids]
        sources = sorted({p.source for p in people})
        if len(sources) > 1:
            raise PeopleError(
                f"People {', '.join(str(i) for i in ids)} are in different sources ({', '.join(sources)}); grouping "
                "works inside one source, so they cannot be merged. Nothing was changed."
            )
        into, others = people[0], people[1:]
        rows = [f.face_id for f in store.people.members([p.id for p in others])]
        store.people.assign(into.id, rows, pinned=True)
        store.people.pin(into.id)
        now = iso(utcnow())
        name = into.name or next((p.name for p in others if p.name), None)
        if name != into.name:
            store.people.set_name(into.id, name, at=now)
        store.people.delete([p.id for p in others])
        refresh_people(store, [into.id], at=now)
        store.log(actor=actor, action=AuditAction.PEOPLE_MERGE, details={
            "into": into.id, "merged": [p.id for p in others], "source": into.source, "faces_moved": len(rows),
            "names_dropped": sum(1 for p in others if p.name) - (1 if name != into.name else 0)})
    store.purge_deleted()  # the merged groups' names and centroids
    return _describe(store, [store.people.get(into.id)])[0]


def split_person(store: MetadataStore, person_id: int, face_ids: Sequence[int], *, actor: str) -> dict[str, Any]:
    """Split the given faces (each with its whole video appearance) off a group into a new one;
    both are pinned so that no run puts them together again. Returns the new group."""
    wanted = {int(f) for f in face_ids}
    if not wanted:
        raise PeopleError("Name the faces to split off with --faces FACE_ID... (`vultus people show ID` lists them).")
    with store.transaction():
        person = _person_to_change(store, person_id)
        items = [i for i in items_of(store.people.members([person.id])) if not i.restricted]
        owned = {f for i in items for f in i.face_ids}
        strangers = sorted(wanted - owned)
        if strangers:
            raise PeopleError(
                f"Face{'s' if len(strangers) > 1 else ''} {', '.join(map(str, strangers))} "
                f"{'are' if len(strangers) > 1 else 'is'} not among person {person.id}'s faces "
                f"(`vultus people show {person.id}` lists them); nothing was changed."
            )
        leaving = [i for i in items if wanted & set(i.face_ids)]
        if len(leaving) == len(items):
            raise PeopleError(
                f"That is every face of person {person.id}: a split leaves some behind. To drop the group, "
                f"use `vultus people forget {person.id}`; nothing was changed."
            )
        now = iso(utcnow())
        new_id = store.people.create(person.source_id, at=now)
        store.people.assign(new_id, [f for i in leaving for f in i.face_ids], pinned=True)
        store.people.pin(person.id)
        refresh_people(store, [person.id, new_id], at=now)
        store.log(actor=actor, action=AuditAction.PEOPLE_SPLIT, details={
            "person_id": person.id, "new_person_id": new_id, "source": person.source, "faces": len(leaving)})
    return _describe(store, [store.people.get(new_id)])[0]


def forget_person(store: MetadataStore, person_id: int, *, actor: str) -> dict[str, Any]:
    """Drop a group (name and centroid); its faces stay in the gallery, never grouped automatically again."""
    with store.transaction():
        person = _person_to_change(store, person_id)
        rows = [f.face_id for f in store.people.members([person.id])]
        store.people.forget_faces(rows, at=iso(utcnow()))
        store.people.delete([person.id])
        details = {"person_id": person.id, "source": person.source, "faces": len(items_of(
            store.people.faces_of(rows))), "named": person.name is not None}
        store.log(actor=actor, action=AuditAction.PEOPLE_FORGET, details=details)
    store.purge_deleted()  # its name and centroid
    return {"forgotten": person.id, "source": person.source, "faces": details["faces"]}


# -- what the engine hands out -------------------------------------------------------------------


class PeopleDesk:
    """A deployment's people groups (``engine.people``): every call audited as the engine's actor,
    every change under the deployment's writer lock, like every other write."""

    def __init__(self, store: MetadataStore, *, deployment: "Deployment", gallery: "Gallery", actor: Callable[[], str]):
        self._store, self._deployment, self._gallery, self._actor = store, deployment, gallery, actor

    def set_clustering(self, source: str, *, enabled: bool, note: str | None = None) -> dict[str, Any]:
        """Allow (or stop) grouping a source's faces into people; off deletes its people (derived data)."""
        with self._deployment.writing():
            return set_clustering(self._store, actor=self._actor(), source=source, enabled=enabled, note=note)

    def clustering_sources(self) -> list:
        """The sources whose faces are grouped, with who allowed it, when and on what basis (ClusteringRecord)."""
        return self._store.people.clustering()

    def cluster(self, source: str) -> dict[str, Any]:
        """Group a source's faces into people in full, keeping every correction; the run's figures."""
        embedder = self._gallery.embedder
        with self._deployment.writing():
            return cluster_source(self._store, source=source, actor=self._actor(), model_id=embedder.model_id,
                                  distance=embedder.spec.match_distance)

    def list(self, *, source: str | None = None) -> list[dict[str, Any]]:
        """Every person (of ``source``) with ``id``, ``name``, ``count``, ``cover`` and ``faces``; audited."""
        return list_people(self._store, actor=self._actor(), source=source)

    def show(self, person_id: int) -> dict[str, Any]:
        """One person with its faces; audited."""
        return show_person(self._store, person_id, actor=self._actor())

    def name(self, person_id: int, name: str | None) -> dict[str, Any]:
        """Give a person a name (None clears it); the person."""
        with self._deployment.writing():
            return name_person(self._store, person_id, name, actor=self._actor())

    def merge(self, person_ids: Iterable[int]) -> dict[str, Any]:
        """Merge people of one source into the first of ``person_ids``; the merged person."""
        with self._deployment.writing():
            return merge_people(self._store, list(person_ids), actor=self._actor())

    def split(self, person_id: int, face_ids: Iterable[int]) -> dict[str, Any]:
        """Split faces off a person into a new one; the new person."""
        with self._deployment.writing():
            return split_person(self._store, person_id, list(face_ids), actor=self._actor())

    def forget(self, person_id: int) -> dict[str, Any]:
        """Drop a person's grouping and name (its faces stay, never grouped automatically again)."""
        with self._deployment.writing():
            return forget_person(self._store, person_id, actor=self._actor())
