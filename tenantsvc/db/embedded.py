"""The embedded default: a local PostgreSQL (the ``pgserver`` wheel) when no URL is set.

Its data directory survives restarts, so development data does too. It listens on a Unix
socket only, never on a network port.
"""

import logging
import os
import warnings
from pathlib import Path

from tenantsvc.settings import Settings, get_settings

ENV_URL = "TENANTSVC_DATABASE_URL"


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server; returns its SQLAlchemy asyncpg URL."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # pgserver keeps its lock in the user's runtime directory. Without XDG_RUNTIME_DIR
        # (a root shell, cron, CI) platformdirs warns and falls back to /tmp/runtime-<uid>,
        # which serves; the warning's two lines would bury a CLI error's one.
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR", UserWarning)
        from pgserver.postgres_server import get_server  # heavy; only this path needs it

        server = get_server(data_dir.resolve(), cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


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
