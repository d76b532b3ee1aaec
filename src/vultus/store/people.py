"""People groups in the SQL store: sources that allow clustering, people, their faces, forgotten faces.

A person is a group of one source's faces (derived data). Its name, given by a user, is
sealed under the deployment's key (personal data of the person named); its centroid, the
mean template of its faces, is sealed like a face's template (biometric data). The rows of
a person's faces go with the faces (foreign keys with ON DELETE CASCADE), so an erasure
takes them out of every group in its own transaction; :func:`vultus.grouping.settle_people`
then makes each touched group's centroid again, or deletes a group left with no face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update

from ..errors import UnknownPersonError
from .blobs import Cipher
from .schema import clustering_sources, faces, forgotten_faces, images, people, person_faces, sources
from .session import Session

__all__ = ["People", "ClusteringRecord", "PersonRecord", "GroupFace"]

_NAME = b"person-name"
_CENTROID = b"person-centroid"


@dataclass(frozen=True)
class ClusteringRecord:
    """A source whose registration allows grouping its faces: who turned it on, when, on what basis."""

    source_id: int
    source: str
    enabled_at: str
    enabled_by: str
    legal_basis: str
    note: str | None


@dataclass(frozen=True)
class PersonRecord:
    """One person group as stored: its source, its name (decrypted) and its cover face."""

    id: int
    source_id: int
    source: str
    name: str | None
    cover_face_id: int | None
    size: int
    model_id: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class GroupFace:
    """One face row as grouping sees it: where it is, whether it may be processed, and its group.

    ``appearance`` is the video appearance's number (its rows go together), None for a photo's face.
    """

    face_id: int
    image_id: int
    appearance: int | None
    restricted: bool
    model_id: str
    person_id: int | None
    pinned: bool
    forgotten: bool


_PERSON_COLUMNS = (people.c.id, people.c.source_id, sources.c.name.label("source"), people.c.name, people.c.cover_face_id,
                   people.c.size, people.c.model_id, people.c.created_at, people.c.updated_at)


class People:
    """Reads and writes of the people groups, in the metadata store's database (joining its transaction)."""

    def __init__(self, session: Session, cipher: Cipher):
        self.session = session
        self.cipher = cipher

    # -- which sources allow clustering -------------------------------------------------------

    def enable(self, source_id: int, *, at: str, by: str, legal_basis: str, note: str | None) -> bool:
        """Record that a source allows clustering; False (nothing changed) when it already did."""
        with self.session.write() as conn:
            if conn.execute(select(clustering_sources.c.source_id)
                            .where(clustering_sources.c.source_id == source_id)).first() is not None:
                return False
            conn.execute(insert(clustering_sources).values(source_id=source_id, enabled_at=at, enabled_by=by,
                                                           legal_basis=legal_basis, note=note))
        return True

    def disable(self, source_id: int) -> dict[str, int]:
        """Turn clustering off for a source: its people (names, centroids, corrections) and its
        forgotten marks are deleted. Returns what was deleted, counted."""
        conn = self.session.current()
        of_source = select(faces.c.id).join(images, images.c.id == faces.c.image_id).where(images.c.source_id == source_id)
        counts = {
            "people": conn.execute(select(func.count()).select_from(people).where(people.c.source_id == source_id)).scalar_one(),
            "named": conn.execute(select(func.count()).select_from(people)
                                  .where(people.c.source_id == source_id, people.c.name.is_not(None))).scalar_one(),
            "forgotten_faces": conn.execute(select(func.count()).select_from(forgotten_faces)
                                            .where(forgotten_faces.c.face_id.in_(of_source))).scalar_one(),
        }
        conn.execute(delete(forgotten_faces).where(forgotten_faces.c.face_id.in_(of_source)))
        # person_faces rows go with their people (ON DELETE CASCADE).
        conn.execute(delete(people).where(people.c.source_id == source_id))
        conn.execute(delete(clustering_sources).where(clustering_sources.c.source_id == source_id))
        return counts

    def clustering(self, source_id: int | None = None) -> list[ClusteringRecord]:
        """The sources that allow clustering (or that one, if it does), by name."""
        query = (select(clustering_sources, sources.c.name)
                 .join(sources, sources.c.id == clustering_sources.c.source_id).order_by(sources.c.name))
        if source_id is not None:
            query = query.where(clustering_sources.c.source_id == source_id)
        with self.session.read() as conn:
            rows = conn.execute(query).all()
        return [ClusteringRecord(r.source_id, r.name, r.enabled_at, r.enabled_by, r.legal_basis, r.note) for r in rows]

    # -- people -------------------------------------------------------------------------------

    def get(self, person_id: int) -> PersonRecord:
        """One person; :class:`UnknownPersonError` when there is none with that id."""
        with self.session.read() as conn:
            row = conn.execute(select(*_PERSON_COLUMNS).join(sources, sources.c.id == people.c.source_id)
                               .where(people.c.id == int(person_id))).first()
        if row is None:
            raise UnknownPersonError(
                f"There is no person {person_id}; `vultus people list` shows the people of each source "
                "(a person's id goes when it is merged into another, forgotten, or loses all its faces)."
            )
        return self._record(row)

    def list(self, source_id: int | None = None) -> list[PersonRecord]:
        """Every person (of one source), largest first, then by id."""
        query = (select(*_PERSON_COLUMNS).join(sources, sources.c.id == people.c.source_id)
                 .order_by(people.c.size.desc(), people.c.id))
        if source_id is not None:
            query = query.where(people.c.source_id == source_id)
        with self.session.read() as conn:
            return [self._record(row) for row in conn.execute(query).all()]

    def _record(self, row) -> PersonRecord:  # noqa: ANN001 - a result row
        name = None if row.name is None else self.cipher.decrypt(row.name, _NAME).decode()
        return PersonRecord(row.id, row.source_id, row.source, name, row.cover_face_id, row.size, row.model_id,
                            row.created_at, row.updated_at)

    def covers(self, person_ids: Iterable[int]) -> dict[int, int | None]:
        """person id -> its cover face id, for those of ``person_ids`` that exist."""
        wanted = sorted({int(i) for i in person_ids})
        found: dict[int, int | None] = {}
        with self.session.read() as conn:
            for start in range(0, len(wanted), 500):
                found.update((int(r.id), r.cover_face_id) for r in conn.execute(
                    select(people.c.id, people.c.cover_face_id).where(people.c.id.in_(wanted[start : start + 500]))))
        return found

    def create(self, source_id: int, *, at: str) -> int:
        """A new, empty person of ``source_id``; its id (ids are never reused)."""
        with self.session.write() as conn:
            return int(conn.execute(insert(people).values(source_id=source_id, created_at=at, updated_at=at,
                                                          dirty=1)).inserted_primary_key[0])

    def delete(self, person_ids: Iterable[int]) -> int:
        """Delete people (their names and centroids; their faces become ungrouped); how many."""
        wanted = [int(i) for i in person_ids]
        if not wanted:
            return 0
        with self.session.write() as conn:
            return conn.execute(delete(people).where(people.c.id.in_(wanted))).rowcount

    def set_name(self, person_id: int, name: str | None, *, at: str) -> None:
        """Give a person a name (sealed), or clear it with None."""
        sealed = None if name is None else self.cipher.encrypt(name.encode(), _NAME)
        with self.session.write() as conn:
            conn.execute(update(people).where(people.c.id == int(person_id)).values(name=sealed, updated_at=at))

    def assign(self, person_id: int, face_ids: Sequence[int], *, pinned: bool) -> None:
        """Put faces into a person (moving them from any other), pinned or not."""
        wanted = sorted({int(i) for i in face_ids})
        if not wanted:
            return
        with self.session.write() as conn:
            touched = self._people_of(conn, wanted) | {int(person_id)}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                conn.execute(delete(person_faces).where(person_faces.c.face_id.in_(chunk)))
                conn.execute(insert(person_faces), [{"face_id": f, "person_id": int(person_id), "pinned": int(pinned)}
                                                    for f in chunk])
            self._mark(conn, touched)

    def unassign(self, face_ids: Sequence[int]) -> None:
        """Take faces out of whatever person they are in."""
        wanted = sorted({int(i) for i in face_ids})
        if not wanted:
            return
        with self.session.write() as conn:
            touched = self._people_of(conn, wanted)
            for start in range(0, len(wanted), 500):
                conn.execute(delete(person_faces).where(person_faces.c.face_id.in_(wanted[start : start + 500])))
            self._mark(conn, touched)

    @staticmethod
    def _mark(conn, person_ids: Iterable[int]) -> None:  # noqa: ANN001 - a connection
        """Mark people dirty: their centroids must be made again."""
        touched = sorted(person_ids)
        for start in range(0, len(touched), 500):
            conn.execute(update(people).where(people.c.id.in_(touched[start : start + 500])).values(dirty=1))

    def pin(self, person_id: int) -> None:
        """Pin every face of a person where it is (a user's correction keeps it there)."""
        with self.session.write() as conn:
            conn.execute(update(person_faces).where(person_faces.c.person_id == int(person_id)).values(pinned=1))

    def forget_faces(self, face_ids: Sequence[int], *, at: str) -> None:
        """Mark faces as never to be grouped automatically again."""
        wanted = sorted({int(i) for i in face_ids})
        with self.session.write() as conn:
            known = set(conn.execute(select(forgotten_faces.c.face_id)
                                     .where(forgotten_faces.c.face_id.in_(wanted))).scalars())
            rows = [{"face_id": f, "forgotten_at": at} for f in wanted if f not in known]
            if rows:
                conn.execute(insert(forgotten_faces), rows)

    @staticmethod
    def _people_of(conn, face_ids: Sequence[int]) -> set[int]:  # noqa: ANN001 - a connection
        found: set[int] = set()
        for start in range(0, len(face_ids), 500):
            found.update(conn.execute(select(person_faces.c.person_id).where(
                person_faces.c.face_id.in_(face_ids[start : start + 500]))).scalars())
        return found

    # -- faces, as grouping sees them -------------------------------------------------------------

    def source_faces(self, source_id: int) -> list[GroupFace]:
        """Every face row of a source with its group (if any), pinned and forgotten flags."""
        return self._faces(images.c.source_id == source_id)

    def members(self, person_ids: Iterable[int]) -> list[GroupFace]:
        """Every face row of the given people."""
        wanted = sorted({int(i) for i in person_ids})
        return [f for start in range(0, len(wanted), 500)
                for f in self._faces(person_faces.c.person_id.in_(wanted[start : start + 500]))]

    def faces_of(self, face_ids: Iterable[int]) -> list[GroupFace]:
        """The given face rows (those that exist)."""
        wanted = sorted({int(i) for i in face_ids})
        return [f for start in range(0, len(wanted), 500)
                for f in self._faces(faces.c.id.in_(wanted[start : start + 500]))]

    def _faces(self, where) -> list[GroupFace]:  # noqa: ANN001 - a SQL condition
        query = (
            select(faces.c.id, faces.c.image_id, faces.c.appearance, faces.c.restricted, faces.c.model_id,
                   person_faces.c.person_id, person_faces.c.pinned, forgotten_faces.c.face_id.label("forgotten"))
            .join(images, images.c.id == faces.c.image_id)
            .outerjoin(person_faces, person_faces.c.face_id == faces.c.id)
            .outerjoin(forgotten_faces, forgotten_faces.c.face_id == faces.c.id)
            .where(where).order_by(faces.c.id)
        )
        with self.session.read() as conn:
            return [GroupFace(r.id, r.image_id, r.appearance, bool(r.restricted), r.model_id, r.person_id,
                              bool(r.pinned), r.forgotten is not None) for r in conn.execute(query).all()]

    def people_of_faces(self, face_ids: Iterable[int]) -> dict[int, int]:
        """face id -> the person it is in, for those of ``face_ids`` that are grouped."""
        wanted = [int(i) for i in face_ids]
        found: dict[int, int] = {}
        with self.session.read() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(select(person_faces.c.face_id, person_faces.c.person_id)
                                    .where(person_faces.c.face_id.in_(wanted[start : start + 500]))).all()
                found.update((int(face), int(person)) for face, person in rows)
        return found

    # -- centroids ------------------------------------------------------------------------------

    def save_centroid(self, person_id: int, centroid: np.ndarray | None, *, model_id: str | None, size: int,
                      cover_face_id: int | None, at: str | None = None) -> None:
        """Store a person's centroid (sealed), the model that made it, its size and cover face, and
        the count and sum of its face ids now, which tell later whether its faces changed."""
        sealed = None if centroid is None else self.cipher.encrypt(np.asarray(centroid, dtype="<f4").tobytes(), _CENTROID)
        with self.session.write() as conn:
            count, total = conn.execute(select(func.count(), func.coalesce(func.sum(person_faces.c.face_id), 0))
                                        .where(person_faces.c.person_id == int(person_id))).one()
            values = {"centroid": sealed, "model_id": model_id, "size": int(size), "cover_face_id": cover_face_id,
                      "face_count": int(count), "face_sum": int(total), "dirty": 0}
            if at is not None:
                values["updated_at"] = at
            conn.execute(update(people).where(people.c.id == int(person_id)).values(**values))

    def centroids(self, source_id: int, model_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(person ids, centroids as rows, sizes) of a source's people whose centroid ``model_id`` made."""
        with self.session.read() as conn:
            rows = conn.execute(select(people.c.id, people.c.centroid, people.c.size).where(
                people.c.source_id == source_id, people.c.model_id == model_id, people.c.centroid.is_not(None))
                .order_by(people.c.id)).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        vectors = np.stack([np.frombuffer(self.cipher.decrypt(r.centroid, _CENTROID), dtype="<f4") for r in rows])
        return (np.asarray([r.id for r in rows], dtype=np.int64), vectors.astype(np.float32),
                np.asarray([r.size for r in rows], dtype=np.int64))

    def stale(self) -> list[tuple[int, int, int]]:
        """People whose centroid no longer stands for their faces: (id, faces then, faces now).

        Marked dirty, or whose face rows changed since (an erasure's cascade removed some).
        """
        counts = (select(person_faces.c.person_id, func.count().label("n"), func.sum(person_faces.c.face_id).label("s"))
                  .group_by(person_faces.c.person_id).subquery())
        now = func.coalesce(counts.c.n, 0)
        query = (select(people.c.id, people.c.face_count, now.label("now"))
                 .outerjoin(counts, counts.c.person_id == people.c.id)
                 .where(or_(people.c.dirty != 0, people.c.face_count != now,
                            people.c.face_sum != func.coalesce(counts.c.s, 0)))
                 .order_by(people.c.id))
        with self.session.read() as conn:
            return [(r.id, r.face_count, r.now) for r in conn.execute(query).all()]

    def mark_dirty(self, *, face_ids: Iterable[int] | None = None) -> None:
        """Mark the people of ``face_ids`` (every person, when None) for their centroids to be made again."""
        with self.session.write() as conn:
            if face_ids is None:
                conn.execute(update(people).values(dirty=1))
                return
            self._mark(conn, self._people_of(conn, sorted({int(i) for i in face_ids})))

    def reseal(self, is_current: Callable[[bytes], bool]) -> int:
        """Re-encrypt names and centroids not sealed under the current key; return how many people changed."""
        done = 0
        with self.session.write() as conn:
            for row in conn.execute(select(people.c.id, people.c.name, people.c.centroid)).all():
                values = {}
                for column, context in (("name", _NAME), ("centroid", _CENTROID)):
                    sealed = getattr(row, column)
                    if sealed is not None and not is_current(sealed):
                        values[column] = self.cipher.encrypt(self.cipher.decrypt(sealed, context), context)
                if values:
                    conn.execute(update(people).where(people.c.id == row.id).values(**values))
                    done += 1
        return done
