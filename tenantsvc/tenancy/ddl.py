"""Running a compiled tenant-track script inside the caller's transaction."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def run_script(conn: AsyncConnection, schema: str, script: str) -> None:
    """Send ``script`` in one round trip with the tenant's transaction-local search_path.

    The simple-query protocol takes many statements at once; the SQLAlchemy transaction is
    begun first so the script runs inside it, never in autocommit.
    """
    await conn.execute(select(1))  # begins the transaction on the driver connection
    raw = await conn.get_raw_connection()
    header = f"SELECT set_config('search_path', {_literal(schema)}, true);\n"
    await raw.driver_connection.execute(header + script)  # type: ignore[union-attr]
