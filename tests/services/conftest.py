"""The local services' addresses, as `eval "$(scripts/services.sh start)"` exports them.

A test that needs a service fails (never skips) when its variable is missing, so a run that
forgot to start the services cannot pass for one that tested them.
"""

from __future__ import annotations

import os

import pytest

from vultus.testing.milvus import TEST_INDEX_ENV
from vultus.testing.postgres import TEST_STORE_ENV

#: The Ray head's address, exported by scripts/services/ray.sh.
TEST_RAY_ENV = "VULTUS_TEST_RAY_ADDRESS"


def service_url(variable: str, service: str) -> str:
    """The address in ``variable``, or the test fails saying which service to start."""
    url = os.environ.get(variable)
    if not url:
        pytest.fail(f"{variable} is not set: start the services with `eval \"$(scripts/services.sh start {service})\"` "
                    "(it prints the variable), then run these tests again.", pytrace=False)
    return url


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL (each test makes its own database on it)."""
    return service_url(TEST_STORE_ENV, "postgres")


@pytest.fixture(scope="session")
def milvus_server() -> str:
    """The Milvus server's ``milvus://`` URL (each test uses a collection prefix of its own)."""
    return service_url(TEST_INDEX_ENV, "milvus")


@pytest.fixture(scope="session")
def ray_head() -> str:
    """The local Ray head's address."""
    return service_url(TEST_RAY_ENV, "ray")
