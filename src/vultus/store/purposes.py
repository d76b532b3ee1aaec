"""Sources' search categories in the SQL store (``source_purposes``, revision 5), and the faces of a set of sources.

A source allows one or more categories (vultus.categories.SearchCategory); a search covers
the faces of the sources that allow its category, which :meth:`PurposeRows.source_face_ids`
lists for the index's id filter.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..categories import SearchCategory
from .schema import faces, images, source_purposes
from .session import Session

__all__ = ["PurposeRows", "write_purposes"]


def write_purposes(conn: Connection, source_id: int, purposes: Sequence[str]) -> None:
    """Insert the rows of a source's categories (once each) in the open transaction."""
    rows = [{"source_id": int(source_id), "category": str(category)} for category in dict.fromkeys(purposes)]
    if rows:
        conn.execute(source_purposes.insert(), rows)


def _in_vocabulary_order(categories: Sequence[str]) -> tuple[str, ...]:
    """Known categories in the vocabulary's order, then any other (from a newer Vultus) by name."""
    order = {category.value: n for n, category in enumerate(SearchCategory)}
    return tuple(sorted(categories, key=lambda c: (order.get(c, len(order)), c)))


class PurposeRows:
    """The purposes part of the SQL store (mixed into :class:`~vultus.store.sqlstore.SQLStore`)."""

    session: Session
    get_source: Callable[[str], Any]

    def set_source_purposes(self, name: str, purposes: Sequence[str]) -> Any:
        """Replace the search categories source ``name`` allows; the source as it is then (a SourceRecord)."""
        record = self.get_source(name)
        with self.session.write() as conn:
            conn.execute(source_purposes.delete().where(source_purposes.c.source_id == record.id))
            write_purposes(conn, record.id, purposes)
        return self.get_source(name)

    def source_face_ids(self, source_ids: Sequence[int]) -> np.ndarray:
        """Ids of the searchable (not restricted) faces of these sources, as int64."""
        if not source_ids:
            return np.zeros(0, dtype=np.int64)
        query = (select(faces.c.id).join(images, images.c.id == faces.c.image_id)
                 .where(images.c.source_id.in_([int(i) for i in source_ids]), faces.c.restricted == 0))
        with self.session.read() as conn:
            return np.fromiter(conn.execute(query).scalars(), dtype=np.int64)

    def source_purposes(self) -> dict[int, tuple[str, ...]]:
        """Every source's categories, by source id."""
        with self.session.read() as conn:
            rows = conn.execute(select(source_purposes.c.source_id, source_purposes.c.category)).all()
        found: dict[int, list[str]] = {}
        for source_id, category in rows:
            found.setdefault(source_id, []).append(category)
        return {source_id: _in_vocabulary_order(categories) for source_id, categories in found.items()}
