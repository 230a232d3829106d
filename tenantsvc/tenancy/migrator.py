"""Alembic, driven programmatically through migrations/env.py.

Two ways to move a tenant schema between revisions:

- compiled (the fast path): Alembic renders the tenant track from one revision to another as
  schema-agnostic SQL once per process and revision pair; each tenant then gets that script
  in one round trip, inside its own transaction, under its transaction-local search_path.
  Per tenant, no Python migration code runs, so a fleet of thousands costs about what the SQL
  costs. Scripts are rendered by Alembic's own offline mode from the same revision files.
  A revision that builds an index ``CONCURRENTLY`` is a step of its own, outside the
  transaction (``steps.py``).
- online: ``command.upgrade`` with the connection handed to env.py through
  ``config.attributes`` (the Alembic cookbook's way), for revisions that cannot be rendered
  offline (ones that read data through ``op.get_bind()``).
"""

import asyncio
import io
import os
from functools import cache, lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection

from tenantsvc.tenancy.errors import UnknownRevisionError
from tenantsvc.tenancy.revisions import read_revisions
from tenantsvc.tenancy.steps import Step, fresh_build, split

ROOT = Path(__file__).resolve().parents[2]
# A checkout (or editable install) finds alembic.ini beside the package; an image that installs
# the package into site-packages says where it put the file.
ALEMBIC_INI = Path(os.environ.get("TENANTSVC_ALEMBIC_INI", ROOT / "alembic.ini"))
EXTRA_VERSIONS_ENV = "TENANTSVC_EXTRA_TENANT_VERSION_DIRS"


def _extra_tenant_dirs() -> list[str]:
    """Extra tenant-track version directories (os.pathsep-separated), e.g. site-specific or
    benchmark-only revisions that chain onto the repository's head."""
    return [d for d in os.environ.get(EXTRA_VERSIONS_ENV, "").split(os.pathsep) if d]


def alembic_config(track: str, output_buffer: io.StringIO | None = None) -> Config:
    """``track`` is "tenant" (the ini's main section) or "shared"."""
    section = "shared" if track == "shared" else "alembic"
    config = Config(str(ALEMBIC_INI), ini_section=section, output_buffer=output_buffer)
    if track == "tenant" and (extra := _extra_tenant_dirs()):
        locations = config.get_main_option("version_locations") or ""
        config.set_main_option("version_locations", os.pathsep.join([locations, *extra]))
    return config


@cache
def _scripts(track: str, extra: tuple[str, ...]) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(track))


def scripts(track: str) -> ScriptDirectory:
    return _scripts(track, tuple(_extra_tenant_dirs()))


def head(track: str) -> str:
    revision = scripts(track).get_current_head()
    assert revision is not None
    return revision


def resolve(track: str, target: str) -> str | None:
    """A revision id for ``target`` ("head", "base", a full or partial id); None is base."""
    if target == "base":
        return None
    try:
        found = scripts(track).get_revision(target)
    except CommandError:
        raise UnknownRevisionError(track, target) from None
    assert found is not None
    return found.revision


def is_downgrade(current: str | None, target: str | None) -> bool:
    if current is None or current == target:
        return False
    if target is None:
        return True
    ancestors = {r.revision for r in scripts("tenant").iterate_revisions(current, "base")}
    return target in ancestors


_VERSION_TABLE = "CREATE TABLE alembic_version"


@cache
def _compiled(current: str | None, target: str | None, extra: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    config = alembic_config("tenant", output_buffer=buffer)
    config.attributes["capture"] = True
    if is_downgrade(current, target):
        command.downgrade(config, f"{current}:{target or 'base'}", sql=True)
    else:
        command.upgrade(config, f"{current}:{target}" if current else str(target), sql=True)
    # From base, Alembic's offline script creates the version table. A tenant migrated down to
    # base still has it (empty: Alembic's downgrade deletes the row, not the table), and the
    # way back up would fail on "relation alembic_version already exists".
    return buffer.getvalue().replace(
        _VERSION_TABLE, "CREATE TABLE IF NOT EXISTS alembic_version", 1
    )


def compiled_script(current: str | None, target: str | None) -> str:
    """The tenant track's SQL from ``current`` to ``target`` (revision ids, None for base)."""
    return _compiled(current, target, tuple(_extra_tenant_dirs()))


# Alembic's ``context`` and ``op`` are module-global proxies, set for the length of a command
# and cleared after it. An online command awaits inside (``run_sync``), so any command started
# meanwhile, an offline compile included, would replace or clear its context: in one process,
# Alembic commands take turns.
ALEMBIC_TURN = asyncio.Lock()


async def tenant_script(current: str | None, target: str | None) -> str:
    """``compiled_script`` for async callers, in turn with online commands (a cached script
    runs no Alembic at all)."""
    async with ALEMBIC_TURN:
        return compiled_script(current, target)


async def tenant_steps(current: str | None, target: str | None) -> tuple[Step, ...]:
    """The script from ``current`` to ``target`` as a tenant runs it (``steps.py``)."""
    return _split(await tenant_script(current, target))


async def build_script(target: str | None) -> str:
    """The script that builds a new, empty schema at ``target`` in one transaction."""
    return fresh_build(await tenant_script(None, target))


@lru_cache(maxsize=64)
def _split(script: str) -> tuple[Step, ...]:
    return tuple(split(script))


def upgrade_shared(connection: Connection, target: str = "head") -> None:
    config = alembic_config("shared")
    config.attributes["connection"] = connection
    command.upgrade(config, target)


def _tenant_config(connection: Connection, schema: str) -> Config:
    config = alembic_config("tenant")
    config.attributes["connection"] = connection
    config.attributes["tenant_schema"] = schema
    return config


def migrate_tenant_online(connection: Connection, schema: str, target: str | None) -> None:
    """Step by step through Alembic (the reference the compiled path is tested against)."""
    config = _tenant_config(connection, schema)
    current = current_revision(connection, schema)
    if is_downgrade(current, target):
        command.downgrade(config, target or "base")
    else:
        command.upgrade(config, target or "head")


def current_revision(connection: Connection, schema: str) -> str | None:
    return read_revisions(connection, [schema])[schema]
