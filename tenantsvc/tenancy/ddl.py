"""SQL sent to a tenant schema as one script, inside the caller's transaction."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def search_path_sql(schema: str) -> str:
    """Transaction-local: it ends with the transaction and cannot leak into a pool."""
    return f"SELECT set_config('search_path', {literal(schema)}, true);\n"


def session_search_path_sql(schema: str) -> str:
    """For the session: only for statements PostgreSQL refuses inside a transaction, on a
    connection reset or closed afterwards (``tenant_migration.py``)."""
    return f"SET search_path TO {identifier(schema)};\n"


def revision_sql(schema: str) -> str:
    """The revision the tenant's own version table holds: the truth."""
    return f"SELECT max(version_num) FROM {identifier(schema)}.alembic_version"  # noqa: S608


def record_revision_sql(tenant_id: int, revision: str | None) -> str:
    value = "NULL" if revision is None else literal(revision)
    return (
        "INSERT INTO tenantsvc.tenant_revisions (tenant_id, revision) "  # noqa: S608
        f"VALUES ({int(tenant_id)}, {value}) ON CONFLICT (tenant_id) "
        "DO UPDATE SET revision = excluded.revision, updated_at = now();\n"
    )


async def run_script(conn: AsyncConnection, schema: str, script: str) -> None:
    """Send ``script`` in one round trip under the tenant's search_path.

    The simple-query protocol takes many statements at once; the SQLAlchemy transaction is
    begun first so the script runs inside it, never in autocommit.
    """
    await conn.execute(select(1))  # begins the transaction on the driver connection
    raw = await conn.get_raw_connection()
    await raw.driver_connection.execute(search_path_sql(schema) + script)  # type: ignore[union-attr]
