"""Where the tests get PostgreSQL from, in order of preference:

1. ``TENANTSVC_TEST_DATABASE_URL`` (any reachable server; a fresh database is made inside it);
2. a testcontainers ``postgres:15`` when a Docker engine answers;
3. a throwaway embedded server (the ``pgserver`` wheel) in a temporary directory.
"""

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)  # noqa: S607
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextmanager
def _testcontainer() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver="asyncpg") as container:
        yield str(container.get_connection_url())


@contextmanager
def _embedded() -> Iterator[str]:
    from tenantsvc.db.embedded import asyncpg_url, pgserver

    server = pgserver(Path(tempfile.mkdtemp(prefix="tenantsvc-test-pg-")), cleanup_mode="delete")
    try:
        yield asyncpg_url(server)
    finally:
        server.cleanup()


@contextmanager
def postgres_server(configured: str | None) -> Iterator[str]:
    """An admin URL (asyncpg dialect) for a server the session may create databases on."""
    if configured:
        given = make_url(configured).set(drivername="postgresql+asyncpg")
        yield given.render_as_string(hide_password=False)
    elif _docker_engine_answers():
        with _testcontainer() as url:
            yield url
    else:
        with _embedded() as url:
            yield url


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)
