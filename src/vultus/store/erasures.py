"""The erasure log: intents of erasures still to finish, and the signed receipts of those done.

An intent holds what is left to remove once the rows are gone (blob keys and face ids,
never a template or an image) and the fields its receipt will list (sha256s of the
removed photos, the removed videos with the time ranges of their removed appearances,
counts, the request). It is entered in the transaction that deletes the
rows, so either both are stored or neither; the receipt replaces it when the erasure ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import insert, select, update

from ..errors import UnknownReceiptError
from .schema import erasures, faces, images
from .session import Session

__all__ = ["Erasures", "ErasureRecord", "PendingErasure"]


@dataclass(frozen=True)
class PendingErasure:
    """An erasure whose rows are deleted but whose files, index entries or receipt are not done."""

    id: int
    blob_keys: list[str]
    face_ids: list[int]
    #: The receipt's content, signed when the erasure ends (see :func:`vultus.erasures.sign_receipt`).
    fields: dict[str, Any]


@dataclass(frozen=True)
class ErasureRecord:
    """One erasure as it is listed: what kind, for which request, when, how much; done or not."""

    id: int
    kind: str
    request_id: int | None
    started_at: str
    completed_at: str | None
    images_removed: int
    faces_removed: int
    #: Video appearances removed (their time ranges are in the receipt's ``removed_videos``).
    appearances_removed: int = 0

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


class Erasures:
    """Reads and writes of the erasure log, in the metadata store's database."""

    def __init__(self, session: Session):
        self.session = session

    def begin(self, *, kind: str, request_id: int | None, blob_keys: Iterable[str], face_ids: Iterable[int],
              fields: dict[str, Any], at: str) -> int:
        """Enter the intent of an erasure inside the open transaction; return its id."""
        conn = self.session.current()
        pending = {"blob_keys": sorted(set(blob_keys)), "face_ids": sorted(int(f) for f in face_ids)}
        return int(
            conn.execute(
                insert(erasures).values(kind=kind, request_id=request_id, started_at=at,
                                        pending=json.dumps(pending), receipt=json.dumps(fields))
            ).inserted_primary_key[0]
        )

    def has_pending(self) -> bool:
        """Whether any erasure is not finished (cheap: asked by every command at its start)."""
        with self.session.read() as conn:
            return conn.execute(select(erasures.c.id).where(erasures.c.completed_at.is_(None)).limit(1)).first() is not None

    def pending(self) -> list[PendingErasure]:
        """Every unfinished erasure, oldest first."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(erasures.c.id, erasures.c.pending, erasures.c.receipt)
                .where(erasures.c.completed_at.is_(None)).order_by(erasures.c.id)
            ).all()
        found = []
        for row in rows:
            todo = json.loads(row.pending or "{}")
            found.append(PendingErasure(row.id, list(todo.get("blob_keys", [])),
                                        [int(f) for f in todo.get("face_ids", [])], json.loads(row.receipt)))
        return found

    def get_pending(self, erasure_id: int) -> PendingErasure:
        return next(p for p in self.pending() if p.id == erasure_id)

    def complete(self, erasure_id: int, *, receipt: dict[str, Any], at: str) -> None:
        """Keep the signed receipt in place of the intent, and mark the erasure done."""
        with self.session.write() as conn:
            conn.execute(
                update(erasures).where(erasures.c.id == erasure_id)
                .values(receipt=json.dumps(receipt), pending=None, completed_at=at)
            )

    def still_referenced(self, blob_keys: Iterable[str]) -> set[str]:
        """Those of ``blob_keys`` that a stored image or face (its crop, its appearance's still) refers to now."""
        wanted = list(set(blob_keys))
        found: set[str] = set()
        with self.session.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(conn.execute(select(images.c.blob_key).where(images.c.blob_key.in_(chunk))).scalars())
                found.update(conn.execute(select(faces.c.crop_key).where(faces.c.crop_key.in_(chunk))).scalars())
                found.update(conn.execute(select(faces.c.still_key).where(faces.c.still_key.in_(chunk))).scalars())
        return found

    def list(self) -> list[ErasureRecord]:
        """Every erasure, done or not, oldest first."""
        with self.session.read() as conn:
            rows = conn.execute(select(erasures).order_by(erasures.c.id)).all()
        return [_record(row) for row in rows]

    def receipt(self, erasure_id: int) -> dict[str, Any]:
        """The signed receipt of erasure ``erasure_id``, once it is done."""
        with self.session.read() as conn:
            row = conn.execute(select(erasures).where(erasures.c.id == erasure_id)).first()
        if row is None:
            raise UnknownReceiptError(f"There is no erasure {erasure_id}; `vultus receipt list` shows them all.")
        if row.completed_at is None:
            raise UnknownReceiptError(
                f"Erasure {erasure_id} is not finished: another Vultus process is carrying it out, or it "
                "could not finish yet. Its receipt is made when it ends; ask again when no other "
                "Vultus command is running."
            )
        return json.loads(row.receipt)


def _record(row: Any) -> ErasureRecord:
    fields = json.loads(row.receipt)
    return ErasureRecord(
        id=row.id, kind=row.kind, request_id=row.request_id, started_at=row.started_at,
        completed_at=row.completed_at, images_removed=len(fields.get("removed_images", [])),
        faces_removed=int(fields.get("faces_removed", 0)),
        appearances_removed=sum(len(v.get("time_ranges", [])) for v in fields.get("removed_videos", [])),
    )
