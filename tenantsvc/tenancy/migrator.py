"""Alembic driven programmatically through migrations/env.py, one connection at a time.

The connection (and, for the tenant track, the schema) is handed to env.py through
``config.attributes`` as the Alembic cookbook describes, so the caller owns the transaction:
provisioning can create a schema, migrate it and register it in one atomic transaction.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = ROOT / "alembic.ini"


def alembic_config(track: str) -> Config:
    """``track`` is "tenant" (the ini's main section) or "shared"."""
    section = "shared" if track == "shared" else "alembic"
    return Config(str(ALEMBIC_INI), ini_section=section)


def head(track: str) -> str:
    revision = ScriptDirectory.from_config(alembic_config(track)).get_current_head()
    assert revision is not None
    return revision


def upgrade_shared(connection: Connection, target: str = "head") -> None:
    config = alembic_config("shared")
    config.attributes["connection"] = connection
    command.upgrade(config, target)


def upgrade_tenant(connection: Connection, schema: str, target: str = "head") -> None:
    config = alembic_config("tenant")
    config.attributes["connection"] = connection
    config.attributes["tenant_schema"] = schema
    command.upgrade(config, target)


def downgrade_tenant(connection: Connection, schema: str, target: str) -> None:
    config = alembic_config("tenant")
    config.attributes["connection"] = connection
    config.attributes["tenant_schema"] = schema
    command.downgrade(config, target)


def current_revision(connection: Connection, schema: str) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return context.get_current_revision()
