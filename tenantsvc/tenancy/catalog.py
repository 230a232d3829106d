"""Schema catalogs, normalised so two tenants' schemas compare equal when built alike.

Tables, columns (type, nullability, default, identity), constraints, indexes and sequences,
with the schema's own name stripped from definitions. Used to prove provisioning equals a
step-by-step migration, and by ``tenantctl status`` to find drift.
"""

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.ddl import run_script
from tenantsvc.tenancy.migrator import build_script

_OBJECTS = """
SELECT n.nspname AS schema, 'relation' AS kind, c.relname AS object,
       c.relkind::text AS definition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i')
UNION ALL
SELECT n.nspname, 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p') AND a.attnum > 0
  AND NOT a.attisdropped
UNION ALL
SELECT n.nspname, 'constraint', c.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(:schemas)
UNION ALL
SELECT n.nspname, 'index', i.relname, pg_get_indexdef(i.oid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = ANY(:schemas)
UNION ALL
SELECT n.nspname, 'sequence', c.relname,
       concat_ws(' ', format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax,
                 s.seqstart, s.seqcache, s.seqcycle)
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(:schemas)
"""

# Composed from the constant above only; schemas are bound parameters.
_DESCRIBE = text(
    "SELECT schema, kind, object, replace(definition, schema || '.', '') AS definition "  # noqa: S608
    f"FROM ({_OBJECTS}) o ORDER BY kind, object"
)
_FINGERPRINTS = text(
    "SELECT schema, md5(string_agg("  # noqa: S608
    "kind || ' ' || object || ' ' || replace(definition, schema || '.', ''), "
    f"E'\\n' ORDER BY kind, object)) FROM ({_OBJECTS}) o GROUP BY schema"
)


def describe(connection: Connection, schema: str) -> list[tuple[str, str, str]]:
    """The schema's normalised catalog: (kind, object, definition) rows."""
    rows = connection.execute(_DESCRIBE, {"schemas": [schema]})
    return [(r.kind, r.object, r.definition) for r in rows]


async def fingerprints(conn: AsyncConnection, schemas: list[str]) -> dict[str, str]:
    """One digest per schema, all schemas in one query."""
    rows = await conn.execute(_FINGERPRINTS, {"schemas": schemas})
    return {str(schema): str(digest) for schema, digest in rows}


async def reference_fingerprint(conn: AsyncConnection, revision: str) -> str:
    """The digest of a schema built from scratch at ``revision``, in a transaction that is
    always rolled back, so nothing of it remains."""
    schema = "tenantsvc_reference"
    transaction = await conn.begin_nested() if conn.in_transaction() else await conn.begin()
    try:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await run_script(conn, schema, await build_script(revision))
        return (await fingerprints(conn, [schema]))[schema]
    finally:
        await transaction.rollback()
