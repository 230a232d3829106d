"""The database's own ceiling for each workload, on the same cluster: the SQL the service
sends, through pgbench -M prepared (W3, W4) and psql (W1, W2)."""

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from tenantsvc.db.session import HOT_SETTINGS, local_search_path_sql, tenant_search_path
from tenantsvc.db.statements import tenant_prefix
from tenantsvc.orders.queries import PLACE
from tenantsvc.products.queries import LIVE_PAGE
from tenantsvc.tenancy.ddl import literal
from tenantsvc.tenancy.roles import TABLES, grants_sql

# A tenant as the service's transactions name it: its schema, and its role (None: it has none).
Tenant = tuple[str, str | None]


def _tenant_script(tenant: Tenant, body: str) -> str:
    """One transaction as the service sends it: BEGIN, the tenant's search_path and role (one
    round trip in the service, two here: pgbench -M prepared sends one statement per command,
    so the search_path and the role go as one), the tenant's own text of the statement, then
    COMMIT. The service's planner settings come from PGOPTIONS."""
    return f"BEGIN;\n{_enter(*tenant)}\n{tenant_prefix(tenant[0])}{body};\nCOMMIT;\n"


def _enter(schema: str, role: str | None) -> str:
    if role is None:
        return local_search_path_sql(schema)
    return (
        f"SELECT set_config('search_path', {literal(tenant_search_path(schema))}, true), "
        f"set_config('role', {literal(role)}, true);"
    )


def w3_scripts(tenants: list[Tenant], products: int) -> list[str]:
    """GET /products: the service's own keyset statement, one script per tenant; pgbench picks a
    script at random for each transaction, so each transaction is a random tenant."""
    body = LIVE_PAGE.replace("$1", ":a").replace("$2", "21")
    return [f"\\set a random(0, {products} - 20)\n" + _tenant_script(t, body) for t in tenants]


def w4_scripts(tenants: list[Tenant], products: int, users: int) -> list[str]:
    """POST /orders: the service's order statement (one item, quantity 1, a live product)."""
    body = (PLACE.replace("$1", ":u").replace("$2::bigint[]", "ARRAY[:p]::bigint[]")
            .replace("$3::int[]", "ARRAY[1]::int[]").replace("$4", "1"))  # fmt: skip
    variables = (f"\\set u random(1, {users})\n\\set g random(0, {products} / 10 - 1)\n"
                 "\\set o random(1, 9)\n\\set p 10 * :g + :o\n")  # fmt: skip
    return [variables + _tenant_script(t, body.strip()) for t in tenants]


def pgbench(libpq_url: str, scripts: list[str], connections: int, seconds: int) -> float:
    files = []
    for script in scripts:
        path = Path(tempfile.mkstemp(prefix="tenantsvc-pgbench-", suffix=".sql")[1])
        path.write_text(script)
        files += ["-f", str(path)]
    options = " ".join(f"-c {name}={value}" for name, value in HOT_SETTINGS.items())
    env = {**os.environ, "PGOPTIONS": options}
    done = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(connections), "-j", "2",
         "-T", str(seconds), *files, libpq_url],
        capture_output=True, text=True, timeout=seconds + 120, env=env,
    )  # fmt: skip
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
    return float(found.group(1))


def psql_seconds(libpq_url: str, sql: str) -> float:
    started = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq_url], input=sql,
                   text=True, capture_output=True, check=True)  # fmt: skip
    return time.perf_counter() - started


def provision_sql(schemas: list[str], head_script: str) -> str:
    """What ``tenantctl create`` sends, each schema with its tables and its own role, which
    joins the serving group."""
    return "\n".join(
        f"BEGIN; CREATE SCHEMA {s}; SELECT set_config('search_path', '{s}', true);\n"
        f"{head_script}\n{grants_sql(f'{s}_role', s, TABLES, 'ceiling_serve')}\nCOMMIT;"
        for s in schemas
    )


def drop_sql(schemas: list[str]) -> str:
    return "\n".join(
        f"DROP SCHEMA {s} CASCADE; DROP OWNED BY {s}_role; DROP ROLE {s}_role;" for s in schemas
    )


def migration_sql(schemas: list[str], script: str) -> str:
    return "\n".join(
        f"BEGIN; SELECT set_config('search_path', '{s}', true);\n{script}\nCOMMIT;" for s in schemas
    )
