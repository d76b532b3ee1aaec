"""Alembic's environment for Vultus: runs the revisions in ``versions/`` on a given connection.

Vultus itself (``vultus.store.migrate``) passes the store's connection, already inside its
``BEGIN IMMEDIATE`` transaction, as ``config.attributes["connection"]``; nothing here
commits, so the caller decides whether the upgrade is kept. Without one, as when a developer
runs ``alembic`` by hand, ``sqlalchemy.url`` names the database.

A new revision is a file ``versions/NNNN_what.py`` with ``revision = "N"`` (the next schema
version) and ``down_revision`` the one before; it updates ``schema.py``'s tables and
``SCHEMA_VERSION`` to match, and sets the ``meta`` row ``schema_version`` to its id.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from vultus.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
elif context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=metadata, transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
