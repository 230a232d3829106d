"""A login role for the service that holds no tenant's data: it reaches a tenant's tables only
by becoming the tenant's role (``SET LOCAL ROLE``, as every tenant transaction does).

The role that provisions tenants owns their tables, so a service connected as it could read any
tenant's rows in a statement that skipped the role: a future code path, an app author's
handler using the engine directly. The service role closes that: ``NOINHERIT``, so its
memberships grant nothing until it switches to one, and a member of the serving group
(``tenantsvc_<8 hex>_serve``, NOLOGIN), to which every tenant's role is granted as it is
created. On its own it may read the registry and write what the workers record, nothing else.

``tenantctl service-role NAME`` creates (or completes) it; the service then connects as it
(``TENANTSVC_DATABASE_URL`` with that user) while ``tenantctl`` and migrations keep the owner.
"""

import base64
import hashlib
import hmac
import os
import re
import unicodedata

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.tenancy.ddl import identifier, literal
from tenantsvc.tenancy.errors import TenancyError
from tenantsvc.tenancy.roles import SERVE_GROUP, create_role_sql, group_sql

# What the service reads and writes in the registry on its own: the tenant snapshot and its
# version (tenancy/registry.py), the shared track's revision (/readyz), the workers' activity.
READS = ("tenants", "api_keys", "registry_state", "alembic_version")
WRITES = ("api_key_usage", "tenant_requests", "activity_flushes")
# What it may not touch: the audit trail, and each tenant's migration history (tenantctl's).
# Every registry table is in one of the three lists; a test fails on a new one in none.
WITHHELD = ("tenant_events", "tenant_revisions")

_GROUP_AND_ROLES = text(
    f"SELECT {SERVE_GROUP}, "  # noqa: S608 (a constant)
    "coalesce(array_remove(array_agg(role_name), NULL), '{}') FROM tenantsvc.tenants"
)
_REFUSED = text("SELECT rolsuper OR rolname = current_user FROM pg_roles WHERE rolname = :name")


def _rights_sql(name: str, group: str, tenant_roles: list[str], verifier: str | None) -> str:
    n = identifier(name)
    password = f" PASSWORD {literal(verifier)}" if verifier else ""
    reads = ", ".join(f"tenantsvc.{identifier(t)}" for t in READS)
    writes = ", ".join(f"tenantsvc.{identifier(t)}" for t in WRITES)
    return (
        group_sql(group, tenant_roles)
        + create_role_sql(name, "LOGIN NOINHERIT")
        + f"""
ALTER ROLE {n} LOGIN NOINHERIT{password};
GRANT {identifier(group)} TO {n};
GRANT USAGE ON SCHEMA tenantsvc TO {n};
GRANT SELECT ON TABLE {reads} TO {n};
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {writes} TO {n};
"""
    )


_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The roles tenantsvc makes itself, in any database of the cluster (``roles.role_prefix``): a
# tenant's, or a serving group. Made the service's, a tenant's role would log in and reach
# every tenant through the group; PostgreSQL refuses only the circular grants, with a traceback.
_OWN_ROLE = re.compile(r"tenantsvc_[0-9a-f]{8}_([0-9]+|serve)")
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677), made here
    as psql's ``\\password`` makes it, so the password itself never reaches the server, where
    ``ALTER ROLE ... PASSWORD 'clear'`` could land in its logs. Normalised with NFKC, the core
    of SASLprep, which PostgreSQL applies."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac(
        "sha256", unicodedata.normalize("NFKC", password).encode(), salt, SCRAM_ITERATIONS
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt).decode()}"
            f"${b64(stored_key).decode()}:{b64(server_key).decode()}")  # fmt: skip


async def create_service_role(engine: AsyncEngine, name: str, password: str | None = None) -> int:
    """Create or complete the service role ``name``, and set its password when one is given
    (sent as a SCRAM verifier); returns how many tenant roles it may become. Refuses a
    superuser (it would bypass every right) and the role running this."""
    if not _NAME.fullmatch(name):
        raise TenancyError(f"role name {name!r}: use a-z, 0-9 and _, up to 63, not a digit first")
    if _OWN_ROLE.fullmatch(name):
        raise TenancyError(
            f"role {name!r} is one tenantsvc made (a tenant's, or the serving group): the "
            "service role must be a role of its own"
        )
    if password == "":
        raise TenancyError("the service role's password is empty")
    verifier = None if password is None else scram_verifier(password)  # before the transaction
    async with engine.begin() as conn:
        if (await conn.execute(_REFUSED, {"name": name})).scalar():
            raise TenancyError(
                f"role {name!r} is a superuser or the role running tenantctl: the service "
                "role must be a role of its own"
            )
        group, roles = (await conn.execute(_GROUP_AND_ROLES)).one()
        raw = await conn.get_raw_connection()
        try:
            sql = _rights_sql(name, group, list(roles), verifier)
            await raw.driver_connection.execute(sql)  # type: ignore[union-attr]
        except asyncpg.InsufficientPrivilegeError as exc:
            raise TenancyError(f"{exc}: creating the service role needs CREATEROLE") from exc
    return len(roles)
