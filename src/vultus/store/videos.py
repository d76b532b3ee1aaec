"""Rows of videos and their appearances in the SQL store: stored in one transaction, removed by appearance.

A video is one ``images`` row (``media`` 'video', its duration, frame size and container
format; no copy of the video is kept) and, for each appearance of a person in it, one or a
few ``faces`` rows, its templates. The rows of one appearance share its number, time range,
sampled times and still; erasing a person removes their appearances whole and leaves the
video's other appearances, and the video's row, in place until none is left.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .records import NewAppearance, NewFace, RemovedVideo
from .schema import faces, images, sources
from .session import Session

__all__ = ["VideoRows", "face_values"]


def face_values(face: NewFace, seal: Callable[[np.ndarray], bytes]) -> dict[str, Any]:
    """The ``faces`` columns of a new face, its template sealed by ``seal``."""
    return {
        "box_left": face.box[0],
        "box_top": face.box[1],
        "box_right": face.box[2],
        "box_bottom": face.box[3],
        "landmarks": json.dumps([[round(x, 1), round(y, 1)] for x, y in face.landmarks]),
        "det_score": float(face.det_score),
        "embedding": seal(face.embedding),
        "model_id": face.model_id,
        "crop_key": face.crop_key,
    }


def _seconds(value: float) -> float:
    # Millisecond precision is more than sampling at a few frames a second can tell apart.
    return round(float(value), 3)


class VideoRows:
    """The video part of the SQL store (mixed into :class:`~vultus.store.sqlstore.SQLStore`)."""

    session: Session
    _seal: Callable[[np.ndarray], bytes]

    def add_video(
        self,
        *,
        source_id: int,
        sha256: str,
        original_path: str,
        size_bytes: int,
        width: int,
        height: int,
        duration: float,
        format: str,
        ingested_at: str,
        expires_at: str,
        appearances: Sequence[NewAppearance],
    ) -> list[int] | None:
        """Store one video and its appearances in one transaction; return the new face ids.

        Ids come in the order of ``appearances`` and of each one's faces. Returns None,
        storing nothing, when an image or video with that sha256 already exists. A video
        with no appearance is stored too (so that it is skipped when ingested again).
        """
        try:
            with self.session.attempt() as conn:
                image_id = conn.execute(
                    images.insert().values(
                        sha256=sha256, source_id=source_id, original_path=original_path, size_bytes=size_bytes,
                        width=width, height=height, format=format, ingested_at=ingested_at, expires_at=expires_at,
                        face_count=sum(len(a.faces) for a in appearances), blob_key=None, media="video",
                        duration=_seconds(duration),
                    )
                ).inserted_primary_key[0]
                face_ids = []
                for number, appearance in enumerate(appearances):
                    shared = {
                        "image_id": image_id,
                        "appearance": number,
                        "time_start": _seconds(appearance.time_start),
                        "time_end": _seconds(appearance.time_end),
                        "seen_at": json.dumps([_seconds(t) for t in appearance.seen_at]),
                        "still_key": appearance.still_key,
                    }
                    for face, at in zip(appearance.faces, appearance.media_times):
                        values = {**face_values(face, self._seal), **shared, "media_time": _seconds(at)}
                        face_ids.append(conn.execute(faces.insert().values(**values)).inserted_primary_key[0])
        except IntegrityError:
            return None
        return face_ids

    def appearance_faces(self, face_ids: Sequence[int]) -> list[int]:
        """``face_ids`` and every other face of the video appearances they belong to, sorted.

        A photo's face stands for itself. An appearance is one person's: what is done to
        one of its templates (erased, restricted) is done to all of them.
        """
        with self.session.read() as conn:
            return sorted({row.id for row in _rows_of_appearances(conn, face_ids)} | {int(i) for i in face_ids})

    def delete_faces(self, face_ids: Sequence[int]) -> list[RemovedVideo]:
        """Delete the video appearances of ``face_ids`` inside the open transaction; say what went, by video.

        Every face row of each appearance goes, with its still and crops left for the caller
        to delete; the video's row goes once no appearance of it is left. Photos' faces are
        refused (ValueError): a photo is erased whole, with :meth:`delete_images`, since its
        copy shows every face in it.
        """
        conn = self.session.current()
        wanted = [int(i) for i in face_ids]
        photos = conn.execute(
            select(faces.c.id).join(images, images.c.id == faces.c.image_id)
            .where(faces.c.id.in_(wanted), images.c.media != "video")
        ).scalars().all()
        if photos:
            raise ValueError(f"Faces {sorted(photos)} are in photos; erase their photos whole (delete_images).")
        rows = _rows_of_appearances(conn, wanted)
        removed = []
        for image_id in sorted({row.image_id for row in rows}):
            mine = [row for row in rows if row.image_id == image_id]
            ids = [row.id for row in mine]
            conn.execute(faces.delete().where(faces.c.id.in_(ids)))
            video = conn.execute(
                select(images.c.sha256, sources.c.name).join(sources, sources.c.id == images.c.source_id)
                .where(images.c.id == image_id)
            ).one()
            left = conn.execute(select(faces.c.id).where(faces.c.image_id == image_id).limit(1)).first()
            if left is None:
                conn.execute(images.delete().where(images.c.id == image_id))
            else:
                conn.execute(update(images).where(images.c.id == image_id)
                             .values(face_count=images.c.face_count - len(ids)))
            ranges = sorted({(row.appearance, row.time_start, row.time_end) for row in mine})
            removed.append(RemovedVideo(
                image_id=image_id, sha256=video.sha256, source=video.name,
                crop_keys=sorted({row.crop_key for row in mine if row.crop_key}),
                still_keys=sorted({row.still_key for row in mine if row.still_key}),
                face_ids=sorted(ids), ranges=[(start, end) for _, start, end in ranges],
                image_removed=left is None,
            ))
        return removed


def _rows_of_appearances(conn: Connection, face_ids: Sequence[int]) -> list[Any]:
    """Every face row of the video appearances that ``face_ids`` belong to."""
    wanted = [int(i) for i in face_ids]
    keys = set()
    for start in range(0, len(wanted), 500):
        keys.update((row.image_id, row.appearance) for row in conn.execute(
            select(faces.c.image_id, faces.c.appearance)
            .where(faces.c.id.in_(wanted[start : start + 500]), faces.c.appearance.is_not(None))
        ))
    found: list[Any] = []
    keys_list = sorted(keys)
    for start in range(0, len(keys_list), 200):
        chunk = keys_list[start : start + 200]
        found += conn.execute(
            select(faces.c.id, faces.c.image_id, faces.c.appearance, faces.c.time_start, faces.c.time_end,
                   faces.c.crop_key, faces.c.still_key)
            .where(or_(*(and_(faces.c.image_id == i, faces.c.appearance == a) for i, a in chunk)))
            .order_by(faces.c.id)
        ).all()
    return found
