"""``tenantctl doctor``: what is wrong with this deployment before it bites.

The pool check follows the design notes: every worker has its own pool, so the server must
allow ``workers * (pool_size + max_overflow)`` connections, plus the superuser reserve and
headroom for migrations and the CLI.
"""

from dataclasses import dataclass

from sqlalchemy import column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.db.engine import timeouts
from tenantsvc.db.models import TenantBase
from tenantsvc.settings import Settings
from tenantsvc.tenancy.errors import first_line
from tenantsvc.tenancy.migrator import head
from tenantsvc.tenancy.models import TenantRow, TenantStatus
from tenantsvc.tenancy.revisions import read_revisions
from tenantsvc.tenancy.roles import ROLE_STATES, SERVE_GROUP, TENANT_ROLE_PATTERN
from tenantsvc.tenancy.slugs import SHARED_SCHEMA
from tenantsvc.wording import counted, plural

MIN_SERVER_VERSION = 130000
CLI_HEADROOM = 5
TENANT_TABLES = tuple(TenantBase.metadata.tables)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str


async def _setting(conn: AsyncConnection, name: str) -> str:
    return str(await conn.scalar(select(func.current_setting(name))))


async def check_server(conn: AsyncConnection) -> Check:
    version = int(await _setting(conn, "server_version_num"))
    shown = await _setting(conn, "server_version")
    if version < MIN_SERVER_VERSION:
        return Check("server", "fail", f"PostgreSQL {shown}: 13 or newer is needed")
    return Check("server", "ok", f"PostgreSQL {shown}")


async def check_writable(conn: AsyncConnection) -> Check:
    """A standby (``TENANTSVC_DATABASE_URL`` at a replica, or at a primary demoted in a
    failover) serves reads, and answers every write a 503: the service looks half up. So does
    a database switched read-only for maintenance."""
    if await conn.scalar(select(func.pg_is_in_recovery())):
        return Check("writable", "fail", "the database is a standby (in recovery): it takes no "
                     "writes; point TENANTSVC_DATABASE_URL at the primary")  # fmt: skip
    if await _setting(conn, "default_transaction_read_only") == "on":
        return Check("writable", "warn", "default_transaction_read_only is on (maintenance?): "
                     "every write is answered 503 until it is off")  # fmt: skip
    return Check("writable", "ok", "the database takes writes")


def pool_check(settings: Settings, max_connections: int, reserved: int) -> Check:
    per_worker = settings.pool_size + settings.max_overflow
    needed = settings.workers * per_worker + CLI_HEADROOM
    usable = max_connections - reserved
    detail = (
        f"{counted(settings.workers, 'worker')} x ({settings.pool_size} pool + "
        f"{settings.max_overflow} overflow) + {CLI_HEADROOM} for tools = {needed}; server "
        f"allows {usable} (max_connections {max_connections} - {reserved} reserved)"
    )
    if settings.pgbouncer:  # its settings are not readable through it: what they must be
        bounds = (f"; behind PgBouncer, set its max_client_conn to {needed} or more, and keep "
                  "its default_pool_size + reserve_pool_size for this database and user (with "
                  f"other clients' pools) within {usable}")  # fmt: skip
        return Check("pool", "ok", detail + bounds)
    if needed <= usable:
        return Check("pool", "ok", detail)
    fitting = max(1, (usable - CLI_HEADROOM) // settings.workers - settings.max_overflow)
    advice = (
        f"; set TENANTSVC_POOL_SIZE={fitting} (or fewer workers), or put PgBouncer in "
        "transaction mode in front of PostgreSQL and set TENANTSVC_PGBOUNCER=true"
    )
    return Check("pool", "fail", detail + advice)


def tenant_cap_check(settings: Settings) -> Check:
    """One tenant must not be able to take a worker's whole pool (``db/fairness.py``)."""
    per_worker, cap = settings.max_connections_per_worker, settings.tenant_connection_cap
    if 0 < cap < per_worker:
        detail = f"a tenant may hold {cap} of a worker's {per_worker} connections"
        return Check("tenant cap", "ok", f"{detail}; {per_worker - cap} stay for the others")
    advice = f"set TENANTSVC_TENANT_MAX_CONNECTIONS below {per_worker} (unset: 3/4 of them)"
    detail = f"one tenant may hold all {per_worker} of a worker's connections while its "
    return Check("tenant cap", "warn", f"{detail}requests hang, and starve the others: {advice}")


def metrics_check(settings: Settings) -> Check:
    """Not a failure either way: a deployment may watch the service some other way."""
    if settings.metrics_token is None:
        return Check("metrics", "warn", "/metrics is off: set TENANTSVC_METRICS_TOKEN, and "
                     "have the scraper send it as a bearer token")  # fmt: skip
    return Check("metrics", "ok", "/metrics answers a scraper that sends TENANTSVC_METRICS_TOKEN")


async def check_pool(conn: AsyncConnection, settings: Settings) -> Check:
    max_connections = int(await _setting(conn, "max_connections"))
    reserved = int(await _setting(conn, "superuser_reserved_connections"))
    return pool_check(settings, max_connections, reserved)


def timeouts_check(settings: Settings, in_effect: dict[str, int], user: str) -> Check:
    """The service sets its timeouts when it connects; PgBouncer drops them, so behind it a
    connection has what the role or database says: none at all unless someone set them there.
    ``in_effect``: each timeout (ms) on a connection made as the service makes one."""
    wanted = timeouts(settings)
    missing = [name for name in sorted(wanted) if wanted[name] and not in_effect[name]]
    shown = ", ".join(f"{name} {ms} ms" for name, ms in in_effect.items())
    if not missing:
        return Check("timeouts", "ok", shown)
    fix = "; ".join(f"ALTER ROLE {user} SET {name} = '{wanted[name]}ms'" for name in missing)
    detail = (f"{shown}: behind PgBouncer the service cannot set {' or '.join(missing)} when "
              f"it connects, and none is set for {user}: {fix}")  # fmt: skip
    return Check("timeouts", "warn", detail)


async def check_timeouts(conn: AsyncConnection, settings: Settings) -> Check:
    found = await conn.execute(
        text("SELECT name, setting::int FROM pg_settings WHERE name = ANY(:names) ORDER BY name"),
        {"names": list(timeouts(settings))},
    )
    user = await conn.scalar(text("SELECT quote_ident(current_user)"))
    return timeouts_check(settings, dict(found.all()), str(user))


async def check_search_path(conn: AsyncConnection) -> Check:
    """A fresh connection's search_path must find no tenant table: SQL that runs outside a
    tenant transaction then fails instead of reading somebody's rows."""
    path = await _setting(conn, "search_path")
    found = await conn.scalar(
        text(
            "SELECT string_agg(n.nspname || '.' || c.relname, ', ') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(current_schemas(false)) AND c.relname = ANY(:tables)"
        ),
        {"tables": list(TENANT_TABLES)},
    )
    if found:
        return Check("search_path", "fail", f"default search_path {path!r} reaches {found}")
    return Check("search_path", "ok", f"default search_path {path!r} holds no tenant tables")


async def check_migrations(conn: AsyncConnection) -> list[Check]:
    version_table = table("alembic_version", column("version_num"), schema=SHARED_SCHEMA)
    shared = await conn.scalar(select(func.max(version_table.c.version_num)))
    shared_head = head("shared")
    checks = [
        Check("shared track", "ok" if shared == shared_head else "fail",
              f"at {shared}, head {shared_head}")
    ]  # fmt: skip
    served = select(TenantRow.schema_name).where(TenantRow.status != TenantStatus.ARCHIVED)
    schemas = list((await conn.execute(served)).scalars())
    revisions = await conn.run_sync(read_revisions, schemas)
    tenant_head = head("tenant")
    behind = sum(1 for r in revisions.values() if r != tenant_head)
    checks.append(
        Check("tenant track", "warn" if behind else "ok",
              f"{len(schemas) - behind} of {counted(len(schemas), 'tenant')} at head {tenant_head}"
              + (": run `tenantctl migrate-all`" if behind else ""))
    )  # fmt: skip
    return checks


async def check_held_back(conn: AsyncConnection) -> Check:
    """Tenants kept from service until they reach head (restored from an archive, imported
    from an older export) whose migration failed: their customers get 503s until someone
    acts, and nothing else says so."""
    held = select(TenantRow.slug).where(TenantRow.status == TenantStatus.PROVISIONING)
    slugs = list((await conn.execute(held.order_by(TenantRow.slug))).scalars())
    if not slugs:
        return Check("held back", "ok", "every tenant not archived is served")
    return Check("held back", "warn", f"{len(slugs)} not served until migrated to head: "
                 f"{_first_few(slugs)}: `tenantctl migrate <slug>`, then "
                 "`tenantctl resume <slug>`")  # fmt: skip


# Schemas and roles named as tenantctl names a tenant's that no tenant has: left by a hand, a
# script, a restore of another database's dump. (A create or a purge that fails leaves none.)
# EXCEPT, not NOT EXISTS: matching either of a tenant's two schema names planned as a nested
# loop, a fleet's tenants times its schemas.
_STRAYS = text(f"""
SELECT array(SELECT nspname::text FROM pg_namespace
             WHERE nspname LIKE 'tenant\\_%' OR nspname LIKE 'archived\\_%'
             EXCEPT SELECT schema_name::text FROM tenantsvc.tenants
             EXCEPT SELECT archived_schema::text FROM tenantsvc.tenants
             ORDER BY 1) AS schemas,
       array(SELECT rolname::text FROM pg_roles WHERE rolname ~ ({TENANT_ROLE_PATTERN})
             EXCEPT SELECT role_name::text FROM tenantsvc.tenants
             ORDER BY 1) AS roles
""")  # noqa: S608 (a constant)


async def check_strays(conn: AsyncConnection) -> Check:
    """A stray schema holds rows no tenant owns, possibly a customer's who was meant to be
    gone, and takes the name ``create`` would give; a stray role may still log in or own
    objects. Nothing in tenantctl shows them otherwise."""
    schemas, roles = (await conn.execute(_STRAYS)).one()
    if not schemas and not roles:
        return Check("strays", "ok", "every tenant_* and archived_* schema and tenant role "
                     "belongs to a tenant")  # fmt: skip
    found = [f"schemas {_first_few(schemas)}"] if schemas else []
    found += [f"roles {_first_few(roles)}"] if roles else []
    return Check("strays", "warn", f"no tenant owns {'; '.join(found)}: look at what they "
                 "hold, then DROP SCHEMA ... CASCADE or DROP ROLE (`tenantctl psql` cannot "
                 "reach them)")  # fmt: skip


_INVALID_INDEXES = text(
    "SELECT n.nspname || '.' || c.relname FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN tenantsvc.tenants t ON t.schema_name = n.nspname WHERE NOT i.indisvalid ORDER BY 1"
)


async def check_indexes(conn: AsyncConnection) -> Check:
    """An invalid index (a concurrent build that failed or was killed) answers no query but
    slows every write to its table."""
    invalid = list((await conn.execute(_INVALID_INDEXES)).scalars())
    if not invalid:
        return Check("indexes", "ok", "no invalid index in any tenant")
    return Check("indexes", "warn", f"{len(invalid)} invalid (a concurrent build failed, was "
                 f"killed, or is running): {_first_few(invalid)}; `tenantctl migrate-all` "
                 "rebuilds those its revisions create, drop others with DROP INDEX "
                 "CONCURRENTLY")  # fmt: skip


KEY_WARNING_DAYS = 14
_EXPIRING_KEYS = text(
    "SELECT t.slug, k.id, ceil(extract(epoch FROM k.expires_at - now()) / 86400)::int "
    "FROM tenantsvc.api_keys k JOIN tenantsvc.tenants t ON t.id = k.tenant_id "
    "WHERE k.revoked_at IS NULL AND k.expires_at > now() "
    "AND k.expires_at <= now() + make_interval(days => :days) ORDER BY k.expires_at"
)


async def check_keys(conn: AsyncConnection) -> Check:
    """Keys about to expire, while there is time to hand their clients new ones."""
    soon = (await conn.execute(_EXPIRING_KEYS, {"days": KEY_WARNING_DAYS})).all()
    if not soon:
        return Check("api keys", "ok", f"none expires within {KEY_WARNING_DAYS} days")
    named = [f"{slug} key {key_id} in {days} d" for slug, key_id, days in soon]
    return Check("api keys", "warn", f"{len(soon)} expire within {KEY_WARNING_DAYS} days: "
                 f"{_first_few(named)}; `tenantctl keys create` a successor")  # fmt: skip


AUDITED = ("tenants", "api_keys", "tenant_revisions")  # shared migration s0006
_AUDIT_TRIGGERS = text(
    "SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
    "WHERE c.relnamespace = 'tenantsvc'::regnamespace AND g.tgname = 'record_event' "
    "AND g.tgenabled <> 'D'"
)


async def check_audit(conn: AsyncConnection) -> Check:
    """The audit trail (``tenantctl history``) is written by triggers, which a table owner
    can disable or drop; changes made meanwhile would leave no trace."""
    recording = set((await conn.execute(_AUDIT_TRIGGERS)).scalars())
    missing = [t for t in AUDITED if t not in recording]
    if not missing:
        return Check("audit trail", "ok", "changes to tenants, keys and revisions are recorded")
    return Check("audit trail", "fail", f"changes to {', '.join(missing)} are not recorded "
                 "(trigger record_event disabled or dropped): ALTER TABLE tenantsvc.<table> "
                 "ENABLE TRIGGER record_event")  # fmt: skip


# Per tenant with a role: is it there, may this role (the service's) act as it, and does it
# hold its rights on every table of its schema?
_ROLES = text(f"{ROLE_STATES} WHERE t.status <> 'provisioning' ORDER BY t.id")


async def check_roles(conn: AsyncConnection) -> Check:
    """Each tenant's own role (``roles.py``): a missing one, or one this role may not act
    as, fails every request of its tenant; one short of rights fails some."""
    rows = (await conn.execute(_ROLES)).all()
    broken = [r.slug for r in rows if r.missing or r.foreign_role or r.short]
    if broken:
        return Check("tenant roles", "fail", f"roles missing, not granted to {rows[0].me} or "
                     f"short of rights, of {counted(len(broken), 'tenant')}: "
                     f"{_first_few(broken)}; `tenantctl isolate --all` repairs them")  # fmt: skip
    copied = [r.slug for r in rows if r.other_database]
    if copied:  # served, but a purge in either database is held up by the other
        use = plural(len(copied), "uses", "use")
        detail = (f"{counted(len(copied), 'tenant')} of this database (a copy of another on the "
                  f"cluster, or renamed) {use} the other's roles: {_first_few(copied)}; "
                  "`tenantctl isolate --all` gives them theirs")  # fmt: skip
        return Check("tenant roles", "warn", detail)
    unset = [r.slug for r in rows if r.unset]
    if not rows:
        return Check("tenant roles", "ok", "no tenants yet")
    if not unset:
        detail = f"every tenant runs as its own role ({counted(len(rows), 'tenant')})"
        return Check("tenant roles", "ok", detail)
    run = plural(len(unset), "runs", "run")
    return Check("tenant roles", "warn", f"{counted(len(unset), 'tenant')} {run} as the service's "
                 f"role, which may use every tenant's tables: {_first_few(unset)}; "
                 "`tenantctl isolate --all`")  # fmt: skip


_SERVICE_ROLES = text(f"""
SELECT array(SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
             WHERE a.roleid = g.oid AND m.rolcanlogin ORDER BY 1) AS services,
       array(SELECT t.slug FROM tenantsvc.tenants t LEFT JOIN pg_roles r ON r.rolname = t.role_name
             WHERE t.status <> 'provisioning'
               AND (r.oid IS NULL OR NOT pg_has_role(g.oid, r.oid, 'MEMBER'))
             ORDER BY t.id) AS unreachable
FROM pg_roles g WHERE g.rolname = {SERVE_GROUP}
""")  # noqa: S608 (a constant)


async def check_service_role(conn: AsyncConnection) -> Check:
    """The service role (``service_role.py``) reaches a tenant only through the tenant's role
    in the serving group: a tenant without one would fail every request."""
    found = (await conn.execute(_SERVICE_ROLES)).one_or_none()
    if found is None or not found.services:
        return Check("service role", "ok", "none: the service connects as the tables' "
                     "owner (`tenantctl service-role NAME` makes one that holds no tenant's "
                     "data)")  # fmt: skip
    names = ", ".join(found.services)
    if found.unreachable:
        return Check("service role", "fail", f"{names} cannot serve {len(found.unreachable)} "
                     f"tenants, which have no role in the serving group: "
                     f"{_first_few(found.unreachable)}; `tenantctl isolate --all` gives "
                     "those without one theirs, `tenantctl service-role NAME` adds the "
                     "others")  # fmt: skip
    return Check("service role", "ok", f"{names} may serve every tenant, as the tenant's role")


def _first_few(items: list[str], shown: int = 5) -> str:
    """A warning names a few and counts the rest: a fleet may have thousands."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


async def run_checks(conn: AsyncConnection, settings: Settings) -> list[Check]:
    checks = [
        await check_server(conn),
        await check_writable(conn),
        await check_pool(conn, settings),
    ]
    checks.append(tenant_cap_check(settings))
    checks.append(metrics_check(settings))
    checks.append(await check_timeouts(conn, settings))
    checks.append(await check_search_path(conn))
    try:
        checks += await check_migrations(conn)
        checks.append(await check_held_back(conn))
        checks.append(await check_indexes(conn))
        checks.append(await check_keys(conn))
        checks.append(await check_audit(conn))
        checks.append(await check_roles(conn))
        checks.append(await check_strays(conn))
        checks.append(await check_service_role(conn))
    except Exception as exc:  # no shared schema yet: say so rather than crash
        detail = f"{first_line(exc)}: run `tenantctl migrate-all`"
        checks.append(Check("shared track", "fail", detail))
    return checks
