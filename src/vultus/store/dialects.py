"""What differs between the SQL databases the store runs on, behind a few hooks.

The store's reads and writes are SQLAlchemy Core, the same for every database. What is
not the same goes through the :class:`Dialect` of the store's :class:`~vultus.store.session.Session`:

- ``insert(table)``: the database's INSERT, which has ``on_conflict_do_nothing`` and
  ``on_conflict_do_update`` (SQLite's and PostgreSQL's both do, with the same arguments);
- ``guarded(conn)``: a statement that may fail on a constraint (a duplicate photo) inside a
  joined transaction runs in a savepoint where a failed statement spoils the transaction
  (PostgreSQL); SQLite undoes the failed statement alone;
- ``serialize(conn, name)``: a check-then-write that must not interleave with another
  (the public page's daily limit) holds a lock until its transaction ends. SQLite runs a
  writing statement under the database's write lock already; PostgreSQL takes an advisory
  transaction lock;
- ``bulk_insert(conn, table, rows)``: many rows with their ids given (a migration's copy):
  one executemany, or COPY on PostgreSQL; ``sync_ids(conn, tables)`` then moves each table's
  id sequence past the ids written, so that no id is handed out twice.

The rest (PRAGMAs, the WAL checkpoint, VACUUM, the writer lock) belongs to each backend's
store class, :class:`~vultus.store.repository.SQLiteStore` and
:class:`~vultus.store.postgres.PostgresStore`.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

__all__ = ["Dialect", "SQLITE", "POSTGRESQL", "lock_key"]


def lock_key(name: str) -> int:
    """A signed 64-bit key for a PostgreSQL advisory lock, stable for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Dialect:
    """The embedded default's ways (SQLite); :data:`POSTGRESQL` overrides what differs."""

    name = "sqlite"

    def insert(self, table: Table) -> Insert:
        """An INSERT into ``table`` that can say what to do on a conflict."""
        return sqlite.insert(table)

    def guarded(self, conn: Connection) -> AbstractContextManager[Any]:
        """Where a statement that may fail on a constraint runs, so that the open transaction survives it."""
        return nullcontext()

    def serialize(self, conn: Connection, name: str) -> None:
        """Hold a lock named ``name`` until ``conn``'s transaction ends (nothing to do on SQLite)."""

    def bulk_insert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert many rows (every column given, ids included) in the open transaction."""
        if rows:
            conn.execute(table.insert(), list(rows))

    def sync_ids(self, conn: Connection, tables: Iterable[Table]) -> None:
        """After rows were inserted with their ids given, hand out only higher ids (SQLite's
        AUTOINCREMENT counter follows explicit ids by itself)."""


class _PostgreSQL(Dialect):
    name = "postgresql"

    def insert(self, table: Table) -> Insert:
        return postgresql.insert(table)

    def guarded(self, conn: Connection) -> AbstractContextManager[Any]:
        # A failed statement aborts a PostgreSQL transaction; rolling back to the savepoint
        # leaves what the caller's block did before it intact.
        return conn.begin_nested()

    def serialize(self, conn: Connection, name: str) -> None:
        conn.execute(select(func.pg_advisory_xact_lock(lock_key(f"vultus.{name}"))))

    def bulk_insert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """COPY the rows in (PostgreSQL's bulk load: one stream instead of a statement per row)."""
        if not rows:
            return
        columns = list(rows[0])
        quoted = ", ".join(f'"{c}"' for c in columns)
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        finally:
            cursor.close()

    def sync_ids(self, conn: Connection, tables: Iterable[Table]) -> None:
        for table in tables:
            if "id" not in table.c:
                continue
            top = conn.execute(select(func.max(table.c.id))).scalar()
            if not top:
                continue
            sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}).scalar_one()
            # Never moves a sequence back: ids it handed out before stay behind it.
            conn.execute(text(f"SELECT setval(:s, GREATEST(:top, (SELECT last_value FROM {sequence})), true)"),
                         {"s": sequence, "top": int(top)})


SQLITE = Dialect()
POSTGRESQL = _PostgreSQL()
