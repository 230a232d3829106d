"""Alembic environment for both tracks.

The shared track (``alembic --name shared ...``) owns the registry schema. The tenant track
(``alembic -x tenant=<slug> ...``) migrates one tenant schema: its tables carry no schema, the
transaction's search_path points at the tenant, and the version table lives in the tenant's own
schema. ``tenantctl`` drives this same file with a connection and schema handed in through
``config.attributes``; plain ``alembic`` resolves the slug through the registry.
"""

import asyncio
from collections.abc import MutableMapping
from typing import Any

from alembic import context
from sqlalchemy import Connection, MetaData, pool, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tenantsvc.db.models import SharedBase, TenantBase
from tenantsvc.settings import get_settings
from tenantsvc.tenancy.models import TenantRow
from tenantsvc.tenancy.slugs import SHARED_SCHEMA, schema_for, validate_slug

config = context.config
IS_SHARED = config.config_ini_section == "shared"


def _metadata() -> MetaData:
    return SharedBase.metadata if IS_SHARED else TenantBase.metadata


def _tenant_slug() -> str:
    slug = context.get_x_argument(as_dictionary=True).get("tenant")
    if not slug:
        raise SystemExit("the tenant track needs -x tenant=<slug> (or use --name shared)")
    return validate_slug(slug)


def _lookup_schema(connection: Connection, slug: str) -> str:
    query = select(TenantRow.schema_name).where(TenantRow.slug == slug)
    found = connection.execute(query).scalar_one_or_none()
    if found is None:
        raise SystemExit(f"unknown tenant {slug!r}: create it with `tenantctl create {slug}`")
    return str(found)


def _version_schema(connection: Connection | None) -> str:
    if IS_SHARED:
        return SHARED_SCHEMA
    handed_in = config.attributes.get("tenant_schema")
    if handed_in:
        return str(handed_in)
    if connection is None:
        return schema_for(_tenant_slug())
    return _lookup_schema(connection, _tenant_slug())


def _compared(name: str | None, type_: str, parent_names: MutableMapping[Any, str | None]) -> bool:
    """What autogenerate (``alembic revision --autogenerate``, ``alembic check``) holds the
    models against: the shared track's schema, which it reflects only when told to (else it
    planned to create every registry table again); the tenant's schema as the search_path
    shows it, without the version table kept there (else it planned to drop it, taking every
    tenant's record of its revision)."""
    if type_ == "schema":
        return name == (SHARED_SCHEMA if IS_SHARED else None)
    return not (type_ == "table" and name == "alembic_version")


def run_with_connection(connection: Connection) -> None:
    schema = _version_schema(connection)
    context.configure(
        connection=connection,
        target_metadata=_metadata(),
        version_table_schema=schema,
        transaction_per_migration=False,
        include_schemas=IS_SHARED,
        include_name=_compared,
    )
    with context.begin_transaction():
        if IS_SHARED:
            # The version table lives in the shared schema, so it must exist first.
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SHARED_SCHEMA}"))
        else:
            # Transaction-local: it ends with this transaction and cannot leak into a pool.
            connection.execute(text("SELECT set_config('search_path', :s, true)"), {"s": schema})
        context.run_migrations()
        if not IS_SHARED:
            connection.execute(_RECORD_REVISION, {"s": schema})


# Keeps the registry's record of the tenant's revision in step, in the same transaction.
_RECORD_REVISION = text(
    "INSERT INTO tenantsvc.tenant_revisions (tenant_id, revision) "
    "SELECT t.id, (SELECT max(version_num) FROM alembic_version) FROM tenantsvc.tenants t "
    "WHERE t.schema_name = :s OR t.archived_schema = :s "
    "ON CONFLICT (tenant_id) DO UPDATE SET revision = excluded.revision, updated_at = now()"
)


def run_offline() -> None:
    schema = _version_schema(None)
    context.configure(
        url=get_settings().database_url or "postgresql://",
        target_metadata=_metadata(),
        version_table_schema=schema,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        if IS_SHARED:
            context.execute(f"CREATE SCHEMA IF NOT EXISTS {SHARED_SCHEMA}")
        else:
            context.execute(f"SELECT set_config('search_path', '{schema}', true)")
        context.run_migrations()


def run_capture() -> None:
    """Schema-agnostic SQL of the tenant track, for tenantctl's fast path: every name is
    unqualified (the caller's transaction-local search_path picks the tenant) and there are
    no transaction statements (the caller owns the transaction)."""
    context.configure(
        dialect_name="postgresql",
        target_metadata=_metadata(),
        literal_binds=True,
        transactional_ddl=False,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online_async() -> None:
    url = get_settings().database_url
    if url is None:
        raise SystemExit("set TENANTSVC_DATABASE_URL to run alembic directly")
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_capture() if config.attributes.get("capture") else run_offline()
elif (handed := config.attributes.get("connection")) is not None:
    run_with_connection(handed)
else:
    asyncio.run(_run_online_async())
