"""The embedded default: a local PostgreSQL (the ``pgserver`` wheel) when no URL is set.

Its data directory survives restarts, so development data does too. It listens on a Unix
socket only, never on a network port.
"""

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tenantsvc.settings import Settings, get_settings

ENV_URL = "TENANTSVC_DATABASE_URL"


def pgserver(data_dir: Path, cleanup_mode: str) -> Any:
    """pgserver's server for ``data_dir``, started or joined."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with _quietly():
        from pgserver.postgres_server import get_server  # heavy; only this path needs it

        server = get_server(data_dir, cleanup_mode=cleanup_mode)
    _forget_the_dead(server)
    return server


@contextmanager
def _quietly() -> Iterator[None]:
    """pgserver keeps its lock in the user's runtime directory. Without XDG_RUNTIME_DIR (a
    root shell, cron, CI) platformdirs warns and falls back to /tmp/runtime-<uid>, which
    serves; the warning's two lines would bury a CLI error's one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR", UserWarning)
        yield


def _forget_the_dead(server: Any) -> None:
    """pgserver stops the server when the last process that joined it exits, and counts them
    in a list in the data directory. One that was killed (SIGKILL, a crash, the OOM killer)
    never leaves the list, and then no exit was ever the last: every later ``make run`` left
    PostgreSQL running when it stopped. Joining drops the processes that no longer exist."""
    import psutil

    with server._lock:
        joined = server.global_process_id_list
        joined.put([pid for pid in joined.get() if psutil.pid_exists(pid)])


def asyncpg_url(server: Any) -> str:
    """The SQLAlchemy asyncpg URL of a pgserver server, over its Unix socket."""
    return _socket_url(server.get_postmaster_info().socket_dir)


def running_url(data_dir: Path) -> str | None:
    """That URL while a server runs on ``data_dir``, read from its postmaster.pid; None when
    none does. Starts nothing (a shell's TAB asks, ``cli/completion.py``)."""
    with _quietly():
        from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
    return None if info is None or info.socket_dir is None else _socket_url(info.socket_dir)


def _socket_url(socket_dir: Any) -> str:
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


def initialised(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a cluster already: pgserver runs initdb where it finds no
    PG_VERSION."""
    return (data_dir / "PG_VERSION").exists()


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server; returns its SQLAlchemy asyncpg URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncpg_url(pgserver(data_dir.resolve(), cleanup_mode="stop"))


def ensure_database_url(settings: Settings) -> Settings:
    """Settings with a database URL, starting the embedded server when none is configured.

    The URL is also exported so uvicorn workers and Alembic subprocesses find the same server.
    """
    if settings.database_url is not None:
        return settings
    url = start_embedded(settings.embedded_data_dir)
    os.environ[ENV_URL] = url
    get_settings.cache_clear()
    return settings.model_copy(update={"database_url": url})
