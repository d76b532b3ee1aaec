"""Milvus collections for tests: each test names a prefix of its own and drops it after.

``VULTUS_TEST_INDEX_URL`` (``scripts/services.sh start milvus`` prints it) names the test server;
a test's index URL adds a prefix (``milvus://HOST:PORT/tPREFIX``), so its collections are its own,
and :func:`drop_prefix` drops every collection (and alias) under that prefix.
"""

from __future__ import annotations

__all__ = ["TEST_INDEX_ENV", "drop_prefix", "collections_under"]

#: The environment variable naming the test server; the tests read it (vultus.config is the only
#: module of the package that reads the environment).
TEST_INDEX_ENV = "VULTUS_TEST_INDEX_URL"


def collections_under(url: str) -> list[str]:
    """The collections on the server of the ``milvus://`` URL whose names start with its prefix."""
    from pymilvus import utility

    from ..index.milvus_index import _connect, parse_url

    where = parse_url(url)
    using = _connect(where)
    return sorted(n for n in utility.list_collections(using=using) if n.startswith(where.prefix + "_"))


def drop_prefix(url: str) -> None:
    """Drop every collection, with its aliases, under the URL's prefix."""
    from pymilvus import utility

    from ..index.milvus_index import _connect, parse_url

    using = _connect(parse_url(url))
    for name in collections_under(url):
        for alias in utility.list_aliases(name, using=using):
            utility.drop_alias(alias, using=using)
        utility.drop_collection(name, using=using)
