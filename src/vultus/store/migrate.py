"""Brings a data directory's database to the schema this Vultus writes, through Alembic.

The revisions live in ``migrations/versions`` inside the package; their ids are schema
versions ("3" is the baseline, the schema before migrations). Opening a store calls
:func:`upgrade_database`, which is cheap when the database is already at the newest revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from ..errors import DataDirError, storage_error
from .schema import SCHEMA_VERSION

__all__ = ["MIGRATIONS", "BASELINE", "current_revisions", "upgrade_database", "upgrade_locked"]

#: The folder of Alembic's environment and revisions, shipped with the package.
MIGRATIONS = Path(__file__).with_name("migrations")

#: The revision that stands for a database made before migrations (its schema version).
BASELINE = "3"


def current_revisions(conn: Connection) -> set[str] | None:
    """The revisions stamped in the database, or None when it has no ``alembic_version`` table."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def upgrade_database(
    path: Path,
    on_connect: Callable[[object, object], None],
    *,
    migrations: Path = MIGRATIONS,
    head: str = SCHEMA_VERSION,
) -> None:
    """Bring the SQLite database at ``path`` to the newest revision, in one transaction.

    A new (empty) database gets every revision; one made before migrations, at schema version
    3 and with that version's tables, is stamped as the baseline, then upgraded. Raises
    :class:`DataDirError`, leaving the database as it was, when it is newer than this Vultus
    (an unknown revision), at another old schema version, not a Vultus database, or when a
    revision fails. ``on_connect`` sets the store's PRAGMAs on each new DB-API connection;
    ``migrations`` and ``head`` are for tests.
    """
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)

    def connect(dbapi_connection, record) -> None:  # noqa: ANN001 - DB-API connection
        on_connect(dbapi_connection, record)
        # The driver's implicit transactions are off: the BEGIN IMMEDIATE below is the one
        # transaction of the whole upgrade, DDL included, and only it commits or rolls back.
        dbapi_connection.isolation_level = None

    event.listen(engine, "connect", connect)
    try:
        with engine.connect() as conn:
            if current_revisions(conn) == {head}:
                return
            conn.commit()
            # IMMEDIATE: two processes opening an old database at once upgrade it once, in turn.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                _upgrade(conn, path, migrations)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
    finally:
        engine.dispose()


def upgrade_locked(conn: Connection, where: str, *, migrations: Path = MIGRATIONS, head: str = SCHEMA_VERSION) -> None:
    """Bring the database of ``conn`` to the newest revision inside ``conn``'s open transaction.

    For a server database (PostgreSQL): the caller holds a lock that keeps a concurrent upgrade
    out, and commits (PostgreSQL's DDL is transactional, so a failed revision leaves nothing).
    ``where`` names the database in messages. Refuses what :func:`upgrade_database` refuses.
    """
    if current_revisions(conn) != {head}:
        _upgrade(conn, where, migrations)


def _upgrade(conn: Connection, path: Path | str, migrations: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(migrations).replace("%", "%%"))
    config.attributes["connection"] = conn
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    found = current_revisions(conn)
    if found is None:
        if inspect(conn).get_table_names():
            _check_baseline(conn, path, script.get_revision(BASELINE).module)
            MigrationContext.configure(conn).stamp(script, BASELINE)
    else:
        for revision in sorted(found):
            try:
                script.get_revision(revision)
            except CommandError:
                raise DataDirError(
                    f"{path} was written by a newer Vultus: its database is at revision {revision}, "
                    f"and this Vultus knows revisions up to {head}. Upgrade Vultus to open it; "
                    "nothing was changed."
                ) from None
    if found == {head}:
        return
    try:
        command.upgrade(config, "head")
    except Exception as exc:
        if (isinstance(exc, OperationalError) and isinstance(path, Path)
                and (known := storage_error(exc, path.parent)) is not None):
            raise known from exc
        raise DataDirError(
            f"Upgrading the database {path} to revision {head} failed ({type(exc).__name__}: {exc}). "
            "It was left as it was. Fix the cause and run the command again, or keep using the "
            "Vultus version that wrote it; a copy of the data directory helps whoever looks into it."
        ) from exc


def _check_baseline(conn: Connection, path: Path | str, baseline) -> None:  # noqa: ANN001 - a revision module
    """Make sure a database without revisions is one that schema version 3 wrote, or refuse it.

    Tables that version 3 added along the way are created when missing, as Vultus did on open.
    """
    names = set(inspect(conn).get_table_names())
    version = None
    if "meta" in names:
        version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    if version is None:
        raise DataDirError(
            f"{path} is not a Vultus database (it has tables but no schema version); nothing was "
            "changed. Point --data at a Vultus data directory, or at an empty folder for a new one."
        )
    if version != BASELINE:
        raise DataDirError(
            f"{path} has schema version {version}; this Vultus expects {BASELINE} or a migrated "
            "database, and has no migration from it. Use the Vultus version that created it."
        )
    wanted = baseline.tables.tables
    inspector = inspect(conn)
    lacking = [f"table {name}" for name in sorted(set(wanted) - names - set(baseline.ADDED_AT_VERSION_3))]
    for name in sorted(set(wanted) & names):
        present = {column["name"] for column in inspector.get_columns(name)}
        lacking += [f"column {name}.{column.name}" for column in wanted[name].columns if column.name not in present]
    if lacking:
        raise DataDirError(
            f"{path} says schema version {version} but lacks {', '.join(lacking)}; nothing was changed. "
            "It was not written by a released Vultus, or was altered since: restore it from a backup."
        )
    for name in baseline.ADDED_AT_VERSION_3:
        if name not in names:
            wanted[name].create(conn)
