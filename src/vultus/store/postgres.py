"""The metadata store on PostgreSQL, registered for ``postgresql+psycopg://USER[:PASSWORD]@HOST:PORT/DB``.

The reads and writes are :class:`~vultus.store.sqlstore.SQLStore`'s, through the PostgreSQL
dialect's hooks (:mod:`vultus.store.dialects`: savepoints, advisory transaction locks, COPY).
What is PostgreSQL's own is here:

- the schema comes from the same Alembic revisions as SQLite's (their few SQLite-only steps
  have a PostgreSQL branch), run in one transaction under an advisory lock, so that two hosts
  opening a new database at once create it once;
- ids are BIGSERIAL: a sequence never hands out a value twice (a rolled-back insert burns
  its value; deleting rows does not move the sequence back), as SQLite's AUTOINCREMENT;
- the writer lock (:meth:`PostgresStore.hold_writer`) is a session advisory lock on a key
  derived from the database and schema, held on a connection of its own for as long as the
  writer runs, so one writer at a time holds across hosts, and a killed writer's lock goes
  with its connection;
- :meth:`PostgresStore.purge_deleted` VACUUMs the tables that hold personal data, on an
  autocommit connection (VACUUM cannot run in a transaction), so that deleted rows' dead
  tuples and their index entries are removed (README: "Store on PostgreSQL" says what
  PostgreSQL still keeps after that, and why what lingers is ciphertext);
- the database must compare text as bytes (the C collation), as SQLite does: times are
  ISO-8601 strings and sources are listed by name.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from ..errors import DataDirError, DataDirLockedError, SettingsError
from .base import StoreBackend, register_store
from .blobs import Cipher
from .dialects import POSTGRESQL, lock_key
from .migrate import upgrade_locked
from .rows import TableRows, table_named
from .schema import metadata
from .sqlstore import SQLStore

__all__ = ["PostgresStore", "SCHEME", "PERSONAL_TABLES"]

SCHEME = "postgresql+psycopg"

#: The tables whose deleted or overwritten rows held personal or biometric data (templates,
#: photos' hashes and paths, names, centroids, requesters' contacts): VACUUMed by purge_deleted.
PERSONAL_TABLES = ("faces", "images", "people", "person_faces", "forgotten_faces", "clustering_sources",
                   "suppressions", "requests", "public_attempts", "erasures", "search_hits")

#: Seconds to wait for the server before saying it cannot be reached (a URL's own connect_timeout wins).
CONNECT_TIMEOUT = 10


def _label(url: str) -> str:
    """The URL as it may be shown: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "a PostgreSQL URL"


def _engine(url: str, **options: object) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(f"{url!r} is not a store URL; a PostgreSQL one is {SCHEME}://USER@HOST:PORT/DATABASE.") from None
    if not parsed.database:
        raise SettingsError(f"The store URL {_label(url)} names no database: {SCHEME}://USER@HOST:PORT/DATABASE.")
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT}
    try:
        return create_engine(parsed, future=True, connect_args=connect_args, **options)
    except ModuleNotFoundError:
        raise SettingsError(
            "The PostgreSQL store needs the psycopg package: install Vultus with its services extra "
            "(pip install 'vultus[services]', or scripts/setup.sh --services)."
        ) from None


def _unreachable(url: str, exc: DBAPIError) -> DataDirError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if "does not exist" in reason and "database" in reason:
        name = make_url(url).database
        return DataDirError(
            f"The PostgreSQL store {_label(url)} has no database {name!r} ({reason}). Create it, empty, with "
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'; "
            "Vultus makes its tables there."
        )
    return DataDirError(
        f"Cannot reach the PostgreSQL store {_label(url)}: {reason}. Start the server (for a trial one: "
        "scripts/services.sh start postgres) or fix VULTUS_STORE__URL (--store-url); nothing was changed."
    )


class _SequenceRows(TableRows):
    """Whole tables (`vultus migrate`) on PostgreSQL: the ids each table gave out are its
    BIGSERIAL sequences' (SQLite's ``sqlite_sequence`` is not there)."""

    def _sequences(self, conn: Connection) -> dict[str, str]:
        found = {}
        for name, table in metadata.tables.items():
            if "id" in table.c and table.dialect_options["sqlite"].get("autoincrement"):
                sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": name}).scalar()
                if sequence:
                    found[name] = sequence
        return found

    def id_sequences(self) -> dict[str, int]:
        """For each table whose ids are never reused, the highest id its sequence handed out."""
        with self.session.read() as conn:
            given = {}
            for name, sequence in self._sequences(conn).items():
                last, called = conn.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
                # A sequence not used yet has given out nothing: 0, as in SQLite's sqlite_sequence.
                given[name] = int(last) if called else 0
            return given

    def set_id_sequences(self, values: dict[str, int]) -> None:
        """Each named table's next id above ``values[table]``, above every id it holds, and never
        lower than its sequence is now; inside the open transaction."""
        conn = self.session.current()
        sequences = self._sequences(conn)
        for name, value in values.items():
            table = table_named(name)
            if name not in sequences:
                continue
            top = conn.execute(select(func.max(table.c.id))).scalar() or 0
            last, called = conn.execute(text(f"SELECT last_value, is_called FROM {sequences[name]}")).one()
            wanted = max(int(value), int(top), int(last) if called else 0)
            if wanted > 0:
                conn.execute(text("SELECT setval(:s, :v, true)"), {"s": sequences[name], "v": wanted})
        # Tables whose ids SQLite may reuse (no AUTOINCREMENT, so not in ``values``) were copied with
        # their ids as well: their sequences must pass those ids, or the next insert (a new source
        # after a move) collides with a copied row.
        serial = [table for name, table in metadata.tables.items() if name not in sequences and "id" in table.c
                  and conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": name}).scalar()]
        POSTGRESQL.sync_ids(conn, serial)


class PostgresStore(SQLStore, _SequenceRows):
    """The metadata store on a PostgreSQL database (a :class:`~vultus.store.base.MetadataStore`)."""

    def __init__(self, url: str, cipher: Cipher):
        self.url = url
        self.label = _label(url)
        # pre_ping: a connection the server dropped (a restart) is replaced, not handed out.
        super().__init__(_engine(url, pool_pre_ping=True), cipher, POSTGRESQL)
        try:
            with self.engine.begin() as conn:
                _check_database(conn, self.label)
                where = conn.execute(text("SELECT current_database() || ':' || current_schema()")).scalar_one()
                #: The writer lock's key: one deployment per database and schema.
                self.writer_key = lock_key(f"vultus.writer:{where}")
                # Two hosts opening a new (or older) database at once upgrade it once, in turn.
                POSTGRESQL.serialize(conn, "upgrade")
                upgrade_locked(conn, self.label)
            self._forget_plain_hashes()
        except OperationalError as exc:
            self.engine.dispose()
            raise _unreachable(url, exc) from exc
        except BaseException:
            self.engine.dispose()
            raise
        # The writer lock's connection: its own, never pooled, so the lock leaves with it.
        self._lock_engine = _engine(url, poolclass=NullPool)

    def close(self) -> None:
        super().close()
        self._lock_engine.dispose()

    def hold_writer(self) -> Callable[[], None]:
        """Take the deployment's advisory writer lock on a connection of its own; the returned
        function releases it. Another process, on any host, holding it: DataDirLockedError."""
        try:
            conn = self._lock_engine.connect()
        except OperationalError as exc:
            raise _unreachable(self.url, exc) from exc
        try:
            held = conn.execute(select(func.pg_try_advisory_lock(self.writer_key))).scalar_one()
            conn.commit()  # a session lock: it outlives the statement's transaction
        except BaseException:
            conn.close()
            raise
        if not held:
            conn.close()
            raise DataDirLockedError(
                f"Another Vultus operation is writing to the PostgreSQL store {self.label} (an ingest, erasure, "
                "purge, key rotation or reindex, from this host or another). Wait for it to finish, then run this again."
            )

        def release() -> None:
            try:
                conn.execute(select(func.pg_advisory_unlock(self.writer_key)))
                conn.commit()
            except DBAPIError:
                pass  # the connection is gone, and the lock with it
            finally:
                conn.close()  # NullPool: the server session ends, and any lock it held

        return release

    def purge_deleted(self) -> None:
        """Leave no copy of deleted rows in the store's files, as far as PostgreSQL can.

        VACUUM each table that held personal data, with index cleanup forced (an index entry
        holds its key, a photo's sha256 for one), on an autocommit connection: the deleted rows'
        dead tuples (and, for the rows that were updated, their old versions) are removed from
        the tables, their TOAST tables and their indexes. Run after the deleting transaction has
        committed: VACUUM cannot remove what an open transaction deleted.
        """
        if self.session._joined() is not None:
            raise RuntimeError("purge_deleted() runs after the transaction that deleted the rows has committed.")
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # VACUUM skips, with a mere warning, a table the role may not vacuum: say so instead.
            barred = conn.execute(text(
                "SELECT c.relname FROM pg_class c WHERE c.oid = ANY(CAST(:tables AS regclass[])) "
                "AND NOT pg_has_role(c.relowner, 'USAGE') "
                "AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
                "AND NOT pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')"
            ), {"tables": list(PERSONAL_TABLES)}).scalars().all()
            if barred:
                raise DataDirError(
                    f"The role of {self.label} may not VACUUM {', '.join(sorted(barred))}, so deleted rows would stay "
                    "in the database's files: make it the owner of Vultus's tables (ALTER TABLE ... OWNER TO), then run "
                    "the command again (an unfinished erasure is finished then)."
                )
            for table in PERSONAL_TABLES:
                conn.exec_driver_sql(f'VACUUM (INDEX_CLEANUP ON) "{table}"')


def _check_database(conn: Connection, label: str) -> None:
    """Refuse a database that does not compare text as bytes or does not hold UTF-8."""
    # PostgreSQL 15 can take a database's collation from ICU instead (datlocprovider 'i').
    provider = "'c'" if conn.dialect.server_version_info < (15,) else "datlocprovider"
    collate, encoding, libc = conn.execute(text(
        f"SELECT datcollate, pg_encoding_to_char(encoding), {provider} = 'c' FROM pg_database "
        "WHERE datname = current_database()"
    )).one()
    if not libc:
        collate = "ICU"
    if collate.split(".")[0] not in ("C", "POSIX") or encoding != "UTF8":
        name = conn.execute(text("SELECT current_database()")).scalar_one()
        raise DataDirError(
            f"The PostgreSQL database {name!r} of {label} has collation {collate!r} and encoding {encoding}; Vultus "
            "compares times and names as bytes, as SQLite does, and needs the C collation and UTF-8. Create a "
            f"database for it with CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
            "LC_CTYPE 'C'; and point VULTUS_STORE__URL at it. Nothing was changed."
        )


def _exists(url: str) -> bool:
    """Whether the database already holds a Vultus store (an empty one does not)."""
    engine = _engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except OperationalError as exc:
        raise _unreachable(url, exc) from exc
    finally:
        engine.dispose()
    return bool(tables & {"alembic_version", "meta"})


register_store(SCHEME, StoreBackend(open=PostgresStore, exists=_exists, description="PostgreSQL database"))
