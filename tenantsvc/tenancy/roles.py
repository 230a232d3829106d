"""Each tenant's own database role: the second wall between tenants, kept by PostgreSQL.

The search_path decides which tenant's tables a statement's unqualified names mean; a statement
that names a schema (``tenant_other.orders``: a bug, a hand-written report, a query built from
the wrong tenant) would go past it. So every tenant transaction also runs as the tenant's role
(``SET LOCAL ROLE``, in the same round trip as the search_path, transaction-local like it),
and that role holds privileges on its own schema's tables and nothing else: PostgreSQL refuses
any other tenant's table ("permission denied"), and the registry's.

- A role is named for the database and the tenant's id (``tenantsvc_<8 hex of the database
  name's md5>_<id>``): roles belong to the whole cluster, where several databases may each hold
  a tenant with the same id. It cannot log in; the role that provisions is made a member, so
  the service running as that role may ``SET ROLE`` to it.
- Its rights: ``USAGE`` on the schema, read and write on its tables (and the tables later
  migrations add there, through default privileges), nothing on ``alembic_version``.
- Creating one takes ``CREATEROLE`` (or a superuser). ``TENANTSVC_TENANT_ROLES=false`` creates
  tenants without one; they run as the service's role, as every tenant did before.
- Purging a tenant drops its role; archiving keeps it (the rights follow the renamed schema).
- A copy of the database on the same cluster (a staging copy: ``CREATE DATABASE ... TEMPLATE``,
  or a dump restored there) comes with its tenants' rights granted to the original's roles,
  which it then uses too. Purging a tenant there tried to drop the original's role, and
  failed ("cannot be dropped because some objects depend on it"), as did a purge in the
  original while the copy held rights. Now a purge drops only a role named for its own
  database and held nowhere else (else it revokes the role's rights here and keeps it), and
  ``isolate --all`` gives the copy's tenants roles of their own, revoking the original's.
"""

import hashlib
from collections.abc import Iterable

import asyncpg
from sqlalchemy import Executable, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantsvc.db.models import TenantBase
from tenantsvc.tenancy.ddl import identifier, literal
from tenantsvc.tenancy.errors import TenancyError, TenantNotFoundError
from tenantsvc.tenancy.models import TenantRow
from tenantsvc.tenancy.slugs import validate_slug

# What the names of this database's roles begin with, in SQL (``role_prefix`` in Python): a
# tenant's role ends with its id, the serving group (``service_role.py``) with ``serve``.
_PREFIX = "'tenantsvc_' || left(md5(current_database()), 8) || '_'"
SERVE_GROUP = f"{_PREFIX} || 'serve'"  # SQL
TENANT_ROLE_PATTERN = f"'^' || {_PREFIX} || '[0-9]+$'"  # SQL: a regular expression
# The tenant's role name, where its tables are (an archived tenant's schema was moved), the
# serving group its role joins, and the role it has now (another database's, in a copy).
_NAME_SCHEMA_GROUP = text(
    f"SELECT {_PREFIX} || id, coalesce(archived_schema, schema_name), "  # noqa: S608 (constants)
    f"{SERVE_GROUP}, role_name FROM tenantsvc.tenants WHERE id = :id"
)


def _named_here(name: str) -> str:
    """SQL: whether the role name ``name`` (an SQL expression) is one of this database's."""
    return f"left({name}, length({_PREFIX})) = {_PREFIX}"


# Whether a role exists, is named for this database, and holds anything in another one.
_ROLE_HOLDS = text(f"""
SELECT r.oid IS NOT NULL, {_named_here(":role")}, EXISTS (
    SELECT FROM pg_shdepend d
    WHERE d.refobjid = r.oid AND d.refclassid = 'pg_authid'::regclass AND d.dbid <> 0
      AND d.dbid <> (SELECT oid FROM pg_database WHERE datname = current_database()))
FROM (SELECT) AS one LEFT JOIN pg_roles r ON r.rolname = :role
""")  # noqa: S608 (constants)


# Each tenant's role as it stands: none yet (``unset``), recorded but not in the cluster (a
# dropped role, a database restored into another cluster), not one this role may act as, or
# short of a right on one of its tables. ``doctor`` reports them; ``isolate --all`` repairs them.
ROLE_STATES = f"""
SELECT t.id, t.slug, current_user AS me, t.role_name IS NULL AS unset,
       t.role_name IS NOT NULL AND r.oid IS NULL AS missing,
       r.oid IS NOT NULL AND NOT pg_has_role(current_user, r.oid, 'MEMBER') AS foreign_role,
       NOT {_named_here("t.role_name")} AS other_database,
       r.oid IS NOT NULL AND EXISTS (
           SELECT FROM pg_tables p, unnest('{{SELECT,INSERT,UPDATE,DELETE}}'::text[]) AS right_
           WHERE p.schemaname = coalesce(t.archived_schema, t.schema_name)
             AND p.tablename <> 'alembic_version'
             AND NOT has_table_privilege(r.oid, format('%I.%I', p.schemaname, p.tablename),
                                         right_)  -- each: a list is true if any one is held
       ) AS short
FROM tenantsvc.tenants t LEFT JOIN pg_roles r ON r.rolname = t.role_name
"""  # noqa: S608 (constants)
_NEEDING_ROLES = text(
    f"SELECT id, slug FROM ({ROLE_STATES}) s "  # noqa: S608 (constants)
    "WHERE unset OR missing OR foreign_role OR short OR other_database ORDER BY id"
)


def role_prefix(database: str) -> str:
    """What the names of ``database``'s roles begin with, as ``_PREFIX`` makes them."""
    return f"tenantsvc_{hashlib.md5(database.encode()).hexdigest()[:8]}_"  # noqa: S324


def create_role_sql(role: str, attributes: str) -> str:
    """``role`` with ``attributes`` unless it exists: roles belong to the cluster."""
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal(role)}) THEN
        CREATE ROLE {identifier(role)} {attributes};
    END IF;
END $$;
"""


def group_sql(group: str, tenant_roles: list[str]) -> str:
    """The serving group (created when missing), with ``tenant_roles`` granted to it."""
    g = identifier(group)
    return create_role_sql(group, "NOLOGIN") + "".join(
        f"GRANT {identifier(r)} TO {g};\n" for r in tenant_roles
    )


RIGHTS = "SELECT, INSERT, UPDATE, DELETE"
TABLES = tuple(TenantBase.metadata.tables)  # at head; alembic_version is not among them
# Those the schema holds (one behind head may lack some), each found through pg_class's index
# by name and schema.
_PRESENT = text(
    "SELECT t FROM unnest(CAST(:names AS text[])) AS t "
    "WHERE to_regclass(format('%I.%I', CAST(:schema AS text), t)) IS NOT NULL"
)


def grants_sql(role: str, schema: str, tables: Iterable[str], group: str) -> str:
    """The role (created when missing) and its rights on ``schema`` and its ``tables``; the
    provisioning role becomes a member, to act as it, and so does the serving ``group``, for a
    service role (``service_role.py``).

    The tables are named, not ``ON ALL TABLES IN SCHEMA``: that reads the whole of pg_class,
    which has no index by schema: 220,000 rows at 10,000 tenants, about 30 ms for every new
    tenant (provisioning's median went from 27 to 57 ms over a fleet of 10,000). Tables added
    later come through the default privileges."""
    r, s = identifier(role), identifier(schema)
    named = ", ".join(f"{s}.{identifier(t)}" for t in tables)
    on_tables = f"GRANT {RIGHTS} ON TABLE {named} TO {r};" if named else ""
    return f"""{create_role_sql(role, "NOLOGIN")}
GRANT {r} TO CURRENT_USER;
GRANT USAGE ON SCHEMA {s} TO {r};
{on_tables}
ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {RIGHTS} ON TABLES TO {r};
{group_sql(group, [role])}"""


async def give_role(conn: AsyncConnection, tenant_id: int) -> str:
    """Create (or complete) the tenant's role and record it; returns its name. Inside the
    caller's transaction: the role, its rights and the registry row commit together."""
    row = (await conn.execute(_NAME_SCHEMA_GROUP, {"id": tenant_id})).one()
    role, schema, group, recorded = str(row[0]), str(row[1]), str(row[2]), row[3]
    found = await conn.execute(_PRESENT, {"schema": schema, "names": list(TABLES)})
    raw = await conn.get_raw_connection()
    try:
        script = grants_sql(role, schema, found.scalars(), group)
        await raw.driver_connection.execute(script)  # type: ignore[union-attr]
    except asyncpg.InsufficientPrivilegeError as exc:
        raise TenancyError(
            f"{exc}: a tenant's own role needs CREATEROLE for the database user (ALTER ROLE "
            "... CREATEROLE), or set TENANTSVC_TENANT_ROLES=false to go without"
        ) from exc
    if recorded is not None and recorded != role:  # another database's (this is a copy)
        await drop_role(conn, recorded)  # its rights here go; it stays if it is not ours
    await conn.execute(update(TenantRow).where(TenantRow.id == tenant_id).values(role_name=role))
    return role


async def drop_role(conn: AsyncConnection, role: str | None) -> str | None:
    """With the tenant's schema: its rights in this database are revoked, and the role dropped
    if it is this database's and holds nothing in another (a copy of this one on the cluster
    may use it too). Returns the role when it is kept."""
    if role is None:
        return None
    exists, ours, held_elsewhere = (await conn.execute(_ROLE_HOLDS, {"role": role})).one()
    if not exists:
        return None
    await conn.execute(text(f"DROP OWNED BY {identifier(role)}"))
    if not ours or held_elsewhere:
        return role
    await conn.execute(text(f"DROP ROLE {identifier(role)}"))
    return None


async def isolate(engine: AsyncEngine, slug: str | None = None) -> list[str]:
    """Give ``slug`` (or every tenant whose role is not as it should be: none yet, dropped,
    short of a right) its role, completing the rights of one that has it; each tenant in its
    own transaction, so a long run keeps what it did. Returns the slugs. ``--all`` took only
    the tenants without a role: a database restored into a new cluster (roles are the
    cluster's, not in its dump) had to be repaired tenant by tenant."""
    async with engine.connect() as conn:
        query: Executable = _NEEDING_ROLES
        if slug is not None:
            validate_slug(slug)
            query = select(TenantRow.id, TenantRow.slug).where(TenantRow.slug == slug)
        tenants = [(row.id, row.slug) for row in await conn.execute(query)]
    if slug is not None and not tenants:
        raise TenantNotFoundError(slug)
    for tenant_id, _ in tenants:
        async with engine.begin() as conn:
            await give_role(conn, tenant_id)
    return [name for _, name in tenants]
