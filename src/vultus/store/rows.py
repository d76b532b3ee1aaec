"""Whole tables as rows, for moving a deployment into another store (`vultus migrate`).

Rows travel as stored: sealed templates, names and contacts as their ciphertext (the target
uses the same key file), audit entries with their hashes, token hashes as hashes, ids as they
are. Reads take a connection of their own; writes join the open transaction and refuse to run
outside one, so that a copy cut short leaves nothing behind. Mixed into
:class:`~vultus.store.repository.SQLiteStore` (and so the in-memory store).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from sqlalchemy import Table, func, select

from .schema import metadata
from .session import Session

__all__ = ["TableRows", "table_named"]


def table_named(name: str) -> Table:
    """The schema's table ``name``; a ValueError for a name the schema does not hold."""
    try:
        return metadata.tables[name]
    except KeyError:
        raise ValueError(f"The store has no table {name!r}; its tables are {', '.join(sorted(metadata.tables))}.") from None


class TableRows:
    """Bulk reads and writes of whole tables (the rows part of the SQL store)."""

    session: Session

    def row_counts(self) -> dict[str, int]:
        """Rows in every table of the schema, by table name."""
        with self.session.read() as conn:
            return {name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                    for name, table in metadata.tables.items()}

    def export_rows(self, table: str, *, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Every row of ``table`` as {column: value} (values as stored), ordered by its primary key
        (by every column where it has none), ``chunk`` rows at a time."""
        found = table_named(table)
        order = list(found.primary_key.columns) or list(found.columns)
        with self.session.read() as conn:
            # On the statement, not the connection: Connection.execution_options() changes the
            # connection itself, and a read joined to the open transaction would then send every
            # later statement of that transaction through a server-side cursor (PostgreSQL refuses
            # an UPDATE there).
            result = conn.execute(select(found).order_by(*order).execution_options(yield_per=chunk))
            for part in result.mappings().partitions(chunk):
                yield [dict(row) for row in part]

    def import_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert ``rows`` (as :meth:`export_rows` gives them, ids included) into ``table`` inside the
        open transaction; return how many. Defaults apply to columns a row leaves out."""
        conn = self.session.current()
        found = table_named(table)
        if not rows:
            return 0
        columns = set(found.columns.keys())
        for row in rows:
            unknown = set(row) - columns
            if unknown:
                raise ValueError(f"Table {table} has no column {', '.join(sorted(unknown))}.")
        conn.execute(found.insert(), [dict(row) for row in rows])
        return len(rows)

    def id_sequences(self) -> dict[str, int]:
        """For each table whose ids are never reused, the highest id it ever gave out (SQLite's
        ``sqlite_sequence``), which can be above the highest id left after deletions."""
        with self.session.read() as conn:
            rows = conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all()
        return {str(name): int(seq) for name, seq in rows if name in metadata.tables}

    def set_id_sequences(self, values: Mapping[str, int]) -> None:
        """Make each table's next id higher than ``values[table]`` (never lower than now), inside
        the open transaction: a copied table then never reuses an id its source gave out."""
        conn = self.session.current()
        for name, value in values.items():
            table_named(name)
            changed = conn.exec_driver_sql("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?",
                                           (int(value), name)).rowcount
            if not changed:
                conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, int(value)))
