"""Suite-wide test settings: Hypothesis profiles, the scriptable next hop, a private
PostgreSQL server and a private OpenLDAP server.

Local runs draw new random examples every time (that is how the decoder property tests
found their bugs). CI sets ``HYPOTHESIS_PROFILE=ci`` (``.ci/run``): the examples are
derived from each test's name instead, so a landing is judged on the same inputs every
time and a failure there can be re-run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink
from tests.pgserver import PgServer, postgresql_missing, private_postgresql

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A scriptable next hop (``scanner.testing.sink``) on a free loopback port."""
    s = Sink(free_port()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A private throw-away PostgreSQL server (tests/pgserver.py; skipped without psycopg
    or the server binaries: apt-get install postgresql); database postgres, user scanner."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    why = postgresql_missing()
    if why:
        pytest.skip(why)
    with private_postgresql() as server:
        yield server


@pytest.fixture
def slapd() -> Iterator[Any]:
    """A private OpenLDAP server (tests/slapd.py) with the project's amavisAccount schema,
    ``ou=people,dc=example,dc=test`` empty; killed at teardown."""
    from tests.slapd import private_slapd, slapd_missing

    why = slapd_missing()
    if why:
        pytest.skip(why)
    with private_slapd() as server:
        yield server

@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A private throw-away MariaDB server (tests/mariadb.py), database ``test``; skipped
    without the server or PyMySQL."""
    from tests.mariadb import mariadb_missing, private_mariadb

    why = mariadb_missing()
    if why:
        pytest.skip(why)
    with private_mariadb() as url:
        yield url


@pytest.fixture(scope="module")
def pg_url(pg_server: PgServer) -> str:
    """The URL of :func:`pg_server`."""
    return pg_server.url
