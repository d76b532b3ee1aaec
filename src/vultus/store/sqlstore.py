"""The SQL store's reads and writes, the same SQLAlchemy Core for every database it runs on.

:class:`SQLStore` is a :class:`~vultus.store.base.MetadataStore` over one SQLAlchemy engine:
sources, images and faces (templates sealed), the audit chain, the registers, accounts, the
erasure log and people groups, in short transactions or the caller's ``store.transaction()``.
What differs between databases goes through the session's dialect (:mod:`vultus.store.dialects`)
or is a backend's own: :class:`~vultus.store.repository.SQLiteStore` (the embedded default) and
:class:`~vultus.store.postgres.PostgresStore` make the engine, bring the schema to the newest
revision, and say how deleted rows leave the database's files (:meth:`SQLStore.purge_deleted`)
and how one writer at a time is kept (:meth:`SQLStore.hold_writer`).
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..errors import SourceExistsError, UnknownSourceError
from .accounts import Accounts
from .audit import AuditAction, AuditLog
from .blobs import Cipher
from .dialects import Dialect
from .erasures import Erasures
from .people import People
from .purposes import PurposeRows, write_purposes
from .records import FaceHit, NewFace, RemovedImage, SourceRecord, iso, utcnow
from .registers import Registers
from .schema import audit, faces, images, meta, requests, search_hits, sources
from .session import Session
from .videos import VideoRows, face_values

__all__ = ["SQLStore"]


class SQLStore(VideoRows, PurposeRows):
    """The metadata store on one SQL database, written in short transactions.

    Videos' rows are written and removed by :class:`~vultus.store.videos.VideoRows`, sources'
    search categories by :class:`~vultus.store.purposes.PurposeRows`. A backend's subclass makes
    the engine and the schema, then calls :meth:`_forget_plain_hashes`.
    """

    def __init__(self, engine: Engine, cipher: Cipher, dialect: Dialect):
        self.cipher = cipher
        self.audit = AuditLog(cipher.mac)
        self.engine = engine
        self.session = Session(self.engine, dialect)
        self.registers = Registers(self.session, cipher)
        self.accounts = Accounts(self.session)
        self.erasures = Erasures(self.session)
        self.people = People(self.session, cipher)

    def _forget_plain_hashes(self) -> None:
        """Clear the unkeyed sha256 hashes of requesters' addresses that older versions kept."""
        with self.session.write() as conn:
            plain = requests.c.contact_hash.is_not(None) | requests.c.client_hash.is_not(None)
            if conn.execute(select(requests.c.id).where(plain).limit(1)).first() is not None:
                conn.execute(update(requests).where(plain).values(contact_hash=None, client_hash=None))

    def hold_writer(self) -> Callable[[], None]:
        """Take the store's own writer lock, held until the returned function is called.

        The deployment's lock file keeps one writer per data directory; a store that several
        hosts share adds a lock of its own here (raising DataDirLockedError when another holds
        it). A store in the data directory needs nothing more.
        """
        return lambda: None

    def close(self) -> None:
        self.engine.dispose()

    # -- sources ---------------------------------------------------------------------------

    def add_source(
        self,
        *,
        name: str,
        controller: str,
        legal_basis: str,
        purpose: str,
        retention_days: int,
        consent_ref: str | None,
        purposes: Sequence[str] = (),
    ) -> SourceRecord:
        """Register a source and the search categories it allows (``purposes``), in one transaction."""
        created = iso(utcnow())
        try:
            with self.session.attempt() as conn:
                source_id = conn.execute(
                    sources.insert().values(
                        name=name,
                        controller=controller,
                        legal_basis=legal_basis,
                        purpose=purpose,
                        retention_days=retention_days,
                        consent_ref=consent_ref,
                        created_at=created,
                    )
                ).inserted_primary_key[0]
                write_purposes(conn, source_id, purposes)
        except IntegrityError:
            raise SourceExistsError(
                f"A source named {name!r} already exists; pick another name, or ingest into it "
                f"with --source {name}."
            ) from None
        return self.get_source(name)

    def get_source(self, name: str) -> SourceRecord:
        with self.session.read() as conn:
            row = conn.execute(select(sources).where(sources.c.name == name)).mappings().first()
        if row is None:
            known = ", ".join(s.name for s in self.list_sources()) or "none yet"
            raise UnknownSourceError(
                f"No source is named {name!r} (registered: {known}). Register it first with "
                f"`vultus source add {name} --basis ... --purpose ... --retention ...`; "
                "nothing was stored."
            )
        return SourceRecord(**row, purposes=self.source_purposes().get(row["id"], ()))

    def list_sources(self) -> list[SourceRecord]:
        image_counts = (
            select(images.c.source_id, func.count().label("n"), func.sum(images.c.face_count).label("f"))
            .group_by(images.c.source_id)
            .subquery()
        )
        query = (
            select(sources, image_counts.c.n, image_counts.c.f)
            .outerjoin(image_counts, image_counts.c.source_id == sources.c.id)
            .order_by(sources.c.name)
        )
        with self.session.read() as conn:
            rows = conn.execute(query).mappings().all()
        purposes = self.source_purposes()
        return [
            SourceRecord(
                **{k: row[k] for k in sources.c.keys()},
                image_count=row["n"] or 0,
                face_count=row["f"] or 0,
                purposes=purposes.get(row["id"], ()),
            )
            for row in rows
        ]

    # -- images and faces ------------------------------------------------------------------

    def known_sha256(self, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` are already stored."""
        wanted = list(digests)
        found: set[str] = set()
        with self.session.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(conn.execute(select(images.c.sha256).where(images.c.sha256.in_(chunk))).scalars())
        return found

    def add_image(
        self,
        *,
        source_id: int,
        sha256: str,
        original_path: str,
        size_bytes: int,
        width: int,
        height: int,
        format: str,
        ingested_at: str,
        expires_at: str,
        blob_key: str | None,
        new_faces: Sequence[NewFace],
    ) -> list[int] | None:
        """Store one image and its faces in one transaction; return the new face ids.

        Returns None, storing nothing, when an image with that sha256 already exists.
        """
        try:
            with self.session.attempt() as conn:
                image_id = conn.execute(
                    images.insert().values(
                        sha256=sha256,
                        source_id=source_id,
                        original_path=original_path,
                        size_bytes=size_bytes,
                        width=width,
                        height=height,
                        format=format,
                        ingested_at=ingested_at,
                        expires_at=expires_at,
                        face_count=len(new_faces),
                        blob_key=blob_key,
                    )
                ).inserted_primary_key[0]
                # One executemany with RETURNING, the ids in the faces' order: on PostgreSQL a third
                # to a half of a round trip per face less than an INSERT each (bench/store_cost.py).
                face_ids = list(conn.execute(
                    faces.insert().returning(faces.c.id, sort_by_parameter_order=True),
                    [{"image_id": image_id, **face_values(face, self._seal)} for face in new_faces],
                ).scalars()) if new_faces else []
        except IntegrityError:
            return None
        return face_ids

    def searchable_face_ids(self) -> np.ndarray:
        """Ids of every face that search may return (all but restricted ones), as int64."""
        with self.session.read() as conn:
            ids = conn.execute(select(faces.c.id).where(faces.c.restricted == 0)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def face_vectors(self, ids: Iterable[int] | None = None, *, chunk: int = 5000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) in chunks, for all faces or for the given ids."""
        wanted = None if ids is None else [int(i) for i in ids]
        with self.session.read() as conn:
            if wanted is None:
                # Streamed by the statement's option, never the connection's: a read joined to an
                # open transaction would otherwise stream every later statement of it.
                result = conn.execute(
                    select(faces.c.id, faces.c.embedding).order_by(faces.c.id).execution_options(yield_per=chunk)
                )
                for part in result.partitions(chunk):
                    yield self._unpack(part)
                return
            for start in range(0, len(wanted), chunk):
                rows = conn.execute(
                    select(faces.c.id, faces.c.embedding).where(faces.c.id.in_(wanted[start : start + chunk]))
                ).all()
                if rows:
                    yield self._unpack(rows)

    def open_one_template(self) -> None:
        """Decrypt the oldest and the newest stored template: raises when the keys are wrong.

        Cheap (two rows) and enough: every template is sealed under the key file's keys,
        so keys that open these two are this deployment's.
        """
        with self.session.read() as conn:
            for order in (faces.c.id.asc(), faces.c.id.desc()):
                sealed = conn.execute(select(faces.c.embedding).order_by(order).limit(1)).scalar()
                if sealed is not None:
                    self.cipher.decrypt(sealed, b"embedding")

    def _seal(self, vector: np.ndarray) -> bytes:
        return self.cipher.encrypt(np.asarray(vector, dtype="<f4").tobytes(), b"embedding")

    def _unpack(self, rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.stack(
            [np.frombuffer(self.cipher.decrypt(r[1], b"embedding"), dtype="<f4") for r in rows]
        ).astype(np.float32)
        return ids, vectors

    def reseal_embeddings(self, is_current: Callable[[bytes], bool], *, chunk: int = 2000) -> int:
        """Re-encrypt every embedding not sealed under the current key; return how many."""
        done = 0
        last = 0
        while True:
            with self.session.write() as conn:
                rows = conn.execute(
                    select(faces.c.id, faces.c.embedding).where(faces.c.id > last).order_by(faces.c.id).limit(chunk)
                ).all()
                if not rows:
                    return done
                for face_id, sealed in rows:
                    if not is_current(sealed):
                        vector = np.frombuffer(self.cipher.decrypt(sealed, b"embedding"), dtype="<f4")
                        conn.execute(update(faces).where(faces.c.id == face_id).values(embedding=self._seal(vector)))
                        done += 1
                last = rows[-1][0]

    def faces_to_reembed(self, model_id: str, *, limit: int = 256) -> list[tuple[int, str | None, list[tuple]]]:
        """Up to about ``limit`` faces not yet embedded by ``model_id``, grouped by image.

        Each item is (image id, blob key, [(face id, (left, top, right, bottom), score)]).
        Images are never split between calls, so each image is decoded once. A video's
        appearances come one by one, each with its still's key: no copy of the video is kept,
        so a video face is re-embedded from its best frame (its template becomes that frame's).
        """
        with self.session.read() as conn:
            image_ids = conn.execute(
                select(faces.c.image_id).where(faces.c.model_id != model_id)
                .group_by(faces.c.image_id).order_by(faces.c.image_id).limit(max(1, limit // 4))
            ).scalars().all()
            if not image_ids:
                return []
            rows = conn.execute(
                select(faces.c.image_id, images.c.blob_key, faces.c.still_key, faces.c.id, faces.c.box_left,
                       faces.c.box_top, faces.c.box_right, faces.c.box_bottom, faces.c.det_score)
                .join(images, images.c.id == faces.c.image_id)
                .where(faces.c.image_id.in_(image_ids), faces.c.model_id != model_id)
                .order_by(faces.c.image_id, faces.c.id)
            ).all()
        grouped: dict[tuple, tuple[int, str | None, list[tuple]]] = {}
        for row in rows:
            picture = row.blob_key or row.still_key
            entry = grouped.setdefault((row.image_id, picture), (row.image_id, picture, []))
            entry[2].append((row.id, (row.box_left, row.box_top, row.box_right, row.box_bottom), row.det_score))
        return list(grouped.values())

    def replace_templates(
        self, updates: Sequence[tuple[int, np.ndarray, Sequence[tuple[float, float]]]], model_id: str
    ) -> None:
        """Store new templates (and the landmarks they were aligned on) under ``model_id``, in one transaction."""
        with self.session.write() as conn:
            for face_id, vector, marks in updates:
                conn.execute(
                    update(faces).where(faces.c.id == int(face_id)).values(
                        embedding=self._seal(vector),
                        model_id=model_id,
                        landmarks=json.dumps([[round(x, 1), round(y, 1)] for x, y in marks]),
                    )
                )

    def face_signature(self) -> tuple[int, int, int]:
        """Count, highest id and sum of ids of the searchable faces.

        Changes whenever a face is added, removed, restricted or released (ids are never
        reused), so a cached index can tell cheaply that it is stale.
        """
        with self.session.read() as conn:
            count, top, total = conn.execute(
                select(func.count(), func.max(faces.c.id), func.sum(faces.c.id)).where(faces.c.restricted == 0)
            ).one()
        return int(count), int(top or 0), int(total or 0)

    def face_models(self) -> dict[str, int]:
        """Faces held, counted by the model that made their templates."""
        with self.session.read() as conn:
            rows = conn.execute(select(faces.c.model_id, func.count()).group_by(faces.c.model_id)).all()
        return {str(model): int(count) for model, count in rows}

    def model_ids(self) -> set[str]:
        """The embedders whose templates the gallery holds."""
        with self.session.read() as conn:
            return set(conn.execute(select(faces.c.model_id).distinct()).scalars())

    def hydrate(self, face_ids: Sequence[int]) -> dict[int, FaceHit]:
        """Stored faces with their image's (or video's) provenance, by face id."""
        if not face_ids:
            return {}
        query = (
            select(
                faces.c.id, faces.c.image_id, faces.c.box_left, faces.c.box_top, faces.c.box_right,
                faces.c.box_bottom, faces.c.crop_key, faces.c.restricted, faces.c.appearance, faces.c.media_time,
                faces.c.time_start, faces.c.time_end, faces.c.seen_at, faces.c.still_key,
                images.c.sha256, images.c.original_path, images.c.ingested_at, images.c.expires_at,
                images.c.blob_key, images.c.media, images.c.duration,
                sources.c.name, sources.c.legal_basis, sources.c.purpose, sources.c.controller,
            )
            .join(images, images.c.id == faces.c.image_id)
            .join(sources, sources.c.id == images.c.source_id)
            .where(faces.c.id.in_([int(i) for i in face_ids]))
        )
        with self.session.read() as conn:
            rows = conn.execute(query).all()
        return {
            row.id: FaceHit(
                face_id=row.id, image_id=row.image_id, sha256=row.sha256, original_path=row.original_path,
                box=(row.box_left, row.box_top, row.box_right, row.box_bottom), source=row.name,
                legal_basis=row.legal_basis, purpose=row.purpose, controller=row.controller,
                ingested_at=row.ingested_at, expires_at=row.expires_at, crop_key=row.crop_key,
                blob_key=row.blob_key, restricted=bool(row.restricted), media=row.media, duration=row.duration,
                appearance=row.appearance, media_time=row.media_time, time_start=row.time_start,
                time_end=row.time_end, seen_at=tuple(json.loads(row.seen_at)) if row.seen_at else (),
                still_key=row.still_key,
            )
            for row in rows
        }

    def counts(self) -> dict[str, int]:
        """Numbers of sources, images (videos included), images with faces, faces, and videos
        and their appearances (each video appearance is one of the faces)."""
        with self.session.read() as conn:
            return {
                "sources": conn.execute(select(func.count()).select_from(sources)).scalar_one(),
                "images": conn.execute(select(func.count()).select_from(images)).scalar_one(),
                "images_with_faces": conn.execute(
                    select(func.count()).select_from(images).where(images.c.face_count > 0)
                ).scalar_one(),
                "faces": conn.execute(select(func.count()).select_from(faces)).scalar_one(),
                "videos": conn.execute(
                    select(func.count()).select_from(images).where(images.c.media == "video")
                ).scalar_one(),
                "appearances": conn.execute(
                    select(func.count()).select_from(faces).where(faces.c.time_start.is_not(None))
                ).scalar_one(),
            }

    def blob_keys(self) -> set[str]:
        """Every blob key the store refers to (image copies, crops and videos' stills)."""
        with self.session.read() as conn:
            keys = set(conn.execute(select(images.c.blob_key).where(images.c.blob_key.is_not(None))).scalars())
            keys.update(conn.execute(select(faces.c.crop_key).where(faces.c.crop_key.is_not(None))).scalars())
            keys.update(conn.execute(select(faces.c.still_key).where(faces.c.still_key.is_not(None))).scalars())
        return keys

    # -- rights, retention and audit -------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction: every store call in the block (audit entries included)
        commits with the others or not at all."""
        return self.session.transaction()

    def log(self, *, actor: str, action: AuditAction, details: dict) -> int:
        """Append an audit entry (inside the open transaction, if any); return its id."""
        with self.session.write() as conn:
            return self.audit.append(conn, at=iso(utcnow()), actor=actor, action=action, details=details)

    def restricted_face_ids(self) -> np.ndarray:
        with self.session.read() as conn:
            ids = conn.execute(select(faces.c.id).where(faces.c.restricted != 0)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def set_restricted(self, face_ids: Sequence[int], flag: bool) -> int:
        """Flag faces as restricted (or lift it); return how many changed."""
        conn = self.session.current()
        if not face_ids:
            return 0
        return conn.execute(
            update(faces)
            .where(faces.c.id.in_([int(i) for i in face_ids]), faces.c.restricted != int(flag))
            .values(restricted=int(flag))
        ).rowcount

    def images_of_faces(self, face_ids: Sequence[int]) -> list[int]:
        with self.session.read() as conn:
            return sorted(
                set(conn.execute(select(faces.c.image_id).where(faces.c.id.in_([int(i) for i in face_ids]))).scalars())
            )

    def expired_images(self, now: str) -> list[int]:
        """Ids of images whose expiry is at or before ``now`` (ISO-8601 UTC)."""
        with self.session.read() as conn:
            return list(conn.execute(select(images.c.id).where(images.c.expires_at <= now).order_by(images.c.id)).scalars())

    def delete_images(self, image_ids: Sequence[int]) -> list[RemovedImage]:
        """Delete images (photos, or videos with every appearance) and their faces inside the open transaction; say what went."""
        conn = self.session.current()
        removed = []
        for image_id in image_ids:
            row = conn.execute(
                select(images.c.id, images.c.sha256, images.c.blob_key, images.c.media, sources.c.name)
                .join(sources, sources.c.id == images.c.source_id)
                .where(images.c.id == int(image_id))
            ).first()
            if row is None:
                continue
            face_rows = conn.execute(
                select(faces.c.id, faces.c.crop_key, faces.c.still_key, faces.c.appearance, faces.c.time_start,
                       faces.c.time_end).where(faces.c.image_id == row.id)
            ).all()
            conn.execute(faces.delete().where(faces.c.image_id == row.id))
            conn.execute(images.delete().where(images.c.id == row.id))
            ranges = sorted({(f.appearance, f.time_start, f.time_end) for f in face_rows if f.appearance is not None})
            removed.append(
                RemovedImage(
                    image_id=row.id, sha256=row.sha256, source=row.name, blob_key=row.blob_key,
                    crop_keys=[f.crop_key for f in face_rows if f.crop_key], face_ids=[f.id for f in face_rows],
                    media=row.media, still_keys=sorted({f.still_key for f in face_rows if f.still_key}),
                    ranges=[(start, end) for _, start, end in ranges],
                )
            )
        return removed

    def searches_hitting(self, image_sha256s: Iterable[str]) -> list:
        """Logged searches whose candidates included any of these images, oldest first."""
        wanted = list(set(image_sha256s))
        if not wanted:
            return []
        with self.session.read() as conn:
            ids = set()
            for start in range(0, len(wanted), 500):
                ids.update(
                    conn.execute(
                        select(search_hits.c.audit_id).where(search_hits.c.image_sha256.in_(wanted[start : start + 500]))
                    ).scalars()
                )
            return [e for e in self.audit.entries(conn, action=AuditAction.SEARCH) if e.id in ids]

    def audit_count(self) -> int:
        with self.session.read() as conn:
            return conn.execute(select(func.count()).select_from(audit)).scalar_one()

    def audit_entries(self, *, since: str | None = None, until: str | None = None, action: str | None = None) -> list:
        """Audit entries in order, optionally in [since, until) and of one action."""
        with self.session.read() as conn:
            return list(self.audit.entries(conn, since=since, until=until, action=action))

    def verify_audit(self):  # noqa: ANN201 - the audit log's Verification
        """Check the whole audit chain and its signed head."""
        with self.session.read() as conn:
            return self.audit.verify(conn)

    def purge_deleted(self) -> None:
        """Leave no copy of deleted rows in the store's files, as far as the backend can."""
        raise NotImplementedError

    def get_meta(self, key: str) -> str | None:
        with self.session.read() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        upsert = self.session.dialect.insert(meta).values(key=key, value=value)
        with self.session.write() as conn:
            conn.execute(upsert.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))
