"""Keeping people groups true to their faces: what a face counts as, and each group's centroid and cover.

Rules, no storage of their own: every function works through the store it is given, inside
the caller's transaction when there is one.

- **What is grouped.** A photo's face is one item; a video appearance is one item whatever
  its number of face rows (one per template): its rows join, leave and move together, its
  vector is the mean of its templates, and it counts once. Restricted faces (GDPR Art. 18:
  kept, not processed) and faces a user forgot are never placed or clustered; a restricted
  face keeps the row of the group it was in, but counts in neither the group's centroid nor
  its size, and is not listed, until the restriction is lifted.
- **Centroids.** A group's centroid is the mean (:func:`vultus.faces.clustering.centroid`) of
  its items' vectors, made by one model, sealed in the store. It is made again whenever the
  group's faces change (the store tells which: :meth:`~vultus.store.people.People.stale`).
- **Erasure** (:func:`settle_people`, run in every erasure's transaction): a group left with
  no face is deleted, name and centroid with it; after a person's erasure or objection, a
  named group that lost at least half of its faces loses its name too (the name most likely
  named the person erased), and keeps it otherwise (a stray face of theirs taken out of
  someone else's group). A purge only deletes the groups it empties.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .faces.clustering import centroid
from .store import MetadataStore, iso, utcnow

__all__ = ["Item", "items_of", "item_vectors", "refresh_people", "settle_people"]


@dataclass(frozen=True)
class Item:
    """One face as grouping counts it: a photo's face, or a video appearance with all its rows."""

    face_ids: tuple[int, ...]
    person_id: int | None
    pinned: bool
    forgotten: bool
    restricted: bool
    model_id: str

    @property
    def first(self) -> int:
        """The face id that stands for the item (its lowest): a cover face, a listed face."""
        return self.face_ids[0]


def items_of(rows: Iterable[Any]) -> list[Item]:
    """The items of face rows (:class:`~vultus.store.people.GroupFace`), in the order of their first row."""
    groups: dict[tuple, list[Any]] = {}
    for row in rows:
        key = ("face", row.face_id) if row.appearance is None else ("appearance", row.image_id, row.appearance)
        groups.setdefault(key, []).append(row)
    items = []
    for members in groups.values():
        members.sort(key=lambda r: r.face_id)
        people = Counter(r.person_id for r in members if r.person_id is not None)
        items.append(Item(
            face_ids=tuple(r.face_id for r in members),
            person_id=people.most_common(1)[0][0] if people else None,
            pinned=any(r.pinned for r in members),
            forgotten=any(r.forgotten for r in members),
            restricted=any(r.restricted for r in members),
            model_id=Counter(r.model_id for r in members).most_common(1)[0][0],
        ))
    return sorted(items, key=lambda item: item.first)


def item_vectors(store: MetadataStore, items: Sequence[Item]) -> np.ndarray:
    """One vector per item (n x d): a photo face's template, an appearance's mean template."""
    wanted = [f for item in items for f in item.face_ids]
    found: dict[int, np.ndarray] = {}
    for ids, vectors in store.face_vectors(wanted) if wanted else ():
        found.update(zip((int(i) for i in ids), vectors))
    if not items:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([centroid(np.stack([found[f] for f in item.face_ids])) for item in items]).astype(np.float32)


def refresh_people(store: MetadataStore, person_ids: Iterable[int], *, at: str | None = None) -> list[int]:
    """Make the centroid, size and cover of each person again from its faces now; delete those with
    no face row left. Returns the ids deleted. ``at``: the time to record as its last change, if any."""
    wanted = sorted({int(i) for i in person_ids})
    if not wanted:
        return []
    by_person: dict[int, list[Item]] = {p: [] for p in wanted}
    for item in items_of(store.people.members(wanted)):
        if item.person_id in by_person:
            by_person[item.person_id].append(item)
    gone = [p for p, items in by_person.items() if not items]
    store.people.delete(gone)
    covers = store.people.covers(wanted)
    used: dict[int, list[Item]] = {}
    for person_id, items in by_person.items():
        visible = [i for i in items if not i.restricted]
        if visible:
            model = Counter(i.model_id for i in visible).most_common(1)[0][0]
            used[person_id] = [i for i in visible if i.model_id == model]
    # Every template needed, read in one pass.
    vectors = item_vectors(store, [i for items in used.values() for i in items])
    start = 0
    for person_id, items in by_person.items():
        if not items:
            continue
        if person_id not in used:
            store.people.save_centroid(person_id, None, model_id=None, size=0, cover_face_id=None, at=at)
            continue
        mine = vectors[start : start + len(used[person_id])]
        start += len(used[person_id])
        middle = centroid(mine)
        cover = covers.get(person_id)
        if cover not in {f for i in items if not i.restricted for f in i.face_ids}:
            # The face nearest the group's centroid: its most typical face.
            cover = used[person_id][int(np.argmin(np.linalg.norm(mine - middle, axis=1)))].first
        store.people.save_centroid(person_id, middle, model_id=used[person_id][0].model_id,
                                   size=sum(1 for i in items if not i.restricted), cover_face_id=cover, at=at)
    return gone


def settle_people(store: MetadataStore, *, erasure: bool = False) -> dict[str, int]:
    """Bring every group whose faces changed back in step: centroid, size and cover made again,
    groups with no face left deleted (names and centroids with them). With ``erasure`` (a
    person's erasure or objection), a named group that lost half of its faces or more also
    loses its name. Returns the counts (``updated``, ``deleted``, ``names_erased``)."""
    stale = store.people.stale()
    if not stale:
        return {"updated": 0, "deleted": 0, "names_erased": 0}
    names_erased = 0
    now = iso(utcnow())
    for person_id, before, after in stale:
        if after == 0:
            if store.people.get(person_id).name is not None:
                names_erased += 1
        elif erasure and before > 0 and 2 * (before - after) >= before and store.people.get(person_id).name is not None:
            store.people.set_name(person_id, None, at=now)
            names_erased += 1
    gone = refresh_people(store, [p for p, _, _ in stale], at=now)
    return {"updated": len(stale) - len(gone), "deleted": len(gone), "names_erased": names_erased}
