"""Empty PostgreSQL databases for tests: one per test, made on a running server and dropped after.

``VULTUS_TEST_STORE_URL`` (``scripts/services.sh start postgres`` prints it) names a database on
the test server; :func:`fresh_database` makes another, empty one beside it, with the collation
the store asks for, and returns its URL; :func:`drop_database` drops it, ending any connection
a test left open. The role of the URL needs CREATEDB (the trial server's ``vultus`` is superuser).
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["TEST_STORE_ENV", "fresh_database", "drop_database"]

#: The environment variable naming the test server (a database on it, e.g. its ``vultus``); the tests
#: read it (vultus.config is the only module of the package that reads the environment).
TEST_STORE_ENV = "VULTUS_TEST_STORE_URL"


def _admin(url: str):  # noqa: ANN202 - an Engine
    return create_engine(make_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")


def fresh_database(server_url: str, name: str) -> str:
    """Make the database ``name`` (dropped first if it is there) on ``server_url``'s server; its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"{name!r} is not a plain database name (lower-case letters, digits, _).")
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
                              "LC_COLLATE 'C' LC_CTYPE 'C'"))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, *, server_url: str) -> None:
    """Drop the database ``url`` names, from ``server_url``'s database (never the one dropped)."""
    name = make_url(url).database
    if name == make_url(server_url).database:
        raise ValueError("drop_database drops a test's own database, not the server's.")
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
