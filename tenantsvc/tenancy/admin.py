"""Registry administration shared by the CLI and tests: list, show, status and keys."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy import keys
from tenantsvc.tenancy.errors import KeyNotFoundError, TenancyError, TenantNotFoundError
from tenantsvc.tenancy.models import ApiKeyRow, ApiKeyUsageRow, TenantRow, TenantStatus
from tenantsvc.tenancy.records import as_json
from tenantsvc.tenancy.revisions import schema_revision
from tenantsvc.tenancy.slugs import validate_slug

# The expiry in the database's clock, which the registry compares keys against.
_ISSUE_KEY = text(
    "INSERT INTO tenantsvc.api_keys (tenant_id, key_hash, prefix, expires_at) "
    "VALUES (:tenant_id, :key_hash, :prefix, "
    "now() + make_interval(secs => CAST(:expires_in AS double precision))) RETURNING id"
)


async def issue_key(
    conn: AsyncConnection, tenant_id: int, expires_in: timedelta | None = None
) -> tuple[int, str]:
    """A new API key for the tenant: (key id, the key itself, shown once). With
    ``expires_in`` it stops working that long from now."""
    key, params = keys.new_key_row()
    seconds = None if expires_in is None else expires_in.total_seconds()
    key_id = await conn.scalar(
        _ISSUE_KEY, {"tenant_id": tenant_id, "expires_in": seconds, **params}
    )
    assert key_id is not None
    return int(key_id), key


@dataclass(frozen=True)
class TenantInfo:
    id: int
    slug: str
    name: str
    schema: str
    status: str
    created_at: datetime
    archived_schema: str | None = None
    role: str | None = None  # the database role its transactions run as (roles.py)

    @property
    def location(self) -> str:
        """Where its tables are now: the archived schema while archived."""
        return self.archived_schema or self.schema

    def as_json(self) -> dict[str, Any]:
        return as_json(self)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None  # to within a worker's flush interval (activity.py)

    @property
    def live(self) -> bool:
        """Accepted now: not revoked, not expired (a rotated key, until its grace ends)."""
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > datetime.now(UTC)
        )

    def as_json(self) -> dict[str, Any]:
        return as_json(self)


_TENANT_COLUMNS = (
    TenantRow.id,
    TenantRow.slug,
    TenantRow.name,
    TenantRow.schema_name,
    TenantRow.status,
    TenantRow.created_at,
    TenantRow.archived_schema,
    TenantRow.role_name,
)


_KEY_COLUMNS = (
    ApiKeyRow.id,
    ApiKeyRow.prefix,
    ApiKeyRow.created_at,
    ApiKeyRow.revoked_at,
    ApiKeyRow.expires_at,
    ApiKeyUsageRow.last_used_at,
)


async def list_tenants(conn: AsyncConnection, status: str | None = None) -> list[TenantInfo]:
    query = select(*_TENANT_COLUMNS).order_by(TenantRow.slug)
    if status is not None:
        query = query.where(TenantRow.status == TenantStatus.parse(status))
    return [TenantInfo(*row) for row in await conn.execute(query)]


async def get_tenant(conn: AsyncConnection, slug: str) -> TenantInfo:
    validate_slug(slug)
    row = (await conn.execute(select(*_TENANT_COLUMNS).where(TenantRow.slug == slug))).first()
    if row is None:
        raise TenantNotFoundError(slug)
    return TenantInfo(*row)


async def set_status(conn: AsyncConnection, slug: str, status: TenantStatus) -> TenantInfo:
    tenant = await get_tenant(conn, slug)
    if tenant.status == TenantStatus.ARCHIVED:
        raise TenancyError(f"tenant {slug!r} is archived: `tenantctl restore {slug}` first")
    if tenant.status == TenantStatus.PROVISIONING:
        await _at_head(conn, tenant)
    await conn.execute(update(TenantRow).where(TenantRow.id == tenant.id).values(status=status))
    return await get_tenant(conn, slug)


async def revision_and_head(conn: AsyncConnection, schema: str) -> tuple[str | None, str]:
    """The schema's revision, and the tenant track's head: a tenant is served only there."""
    from tenantsvc.tenancy.migrator import head  # Alembic: not for every registry command

    return await schema_revision(conn, schema), head("tenant")


async def _at_head(conn: AsyncConnection, tenant: TenantInfo) -> None:
    """A tenant held back while it is brought to head (restored from an archive, imported
    from an older export) is not served before it gets there: `resume` right after a failed
    migration would have served it at a revision the code was not written for."""
    revision, head = await revision_and_head(conn, tenant.schema)
    if revision != head:
        raise TenancyError(
            f"tenant {tenant.slug!r} is at {revision}, not at head {head}: "
            f"`tenantctl migrate {tenant.slug}` first"
        )


async def create_key(
    conn: AsyncConnection, slug: str, expires_in: timedelta | None = None
) -> tuple[int, str]:
    tenant = await get_tenant(conn, slug)
    return await issue_key(conn, tenant.id, expires_in)


async def rotate_keys(
    conn: AsyncConnection, slug: str, grace: timedelta, expires_in: timedelta | None = None
) -> tuple[int, str, list[int], datetime]:
    """A new key, and every other live key set to stop working ``grace`` from now (or sooner,
    if it already would): clients move over meanwhile, and no key is cut off mid-move. Returns
    (new key id, the key, the ids of the keys now ending, when they end)."""
    tenant = await get_tenant(conn, slug)
    key_id, key = await issue_key(conn, tenant.id, expires_in)
    at = await conn.scalar(select(func.now() + grace))  # the database's clock, as for expiry
    assert isinstance(at, datetime)
    ending = await conn.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.tenant_id == tenant.id, ApiKeyRow.id != key_id,
               ApiKeyRow.revoked_at.is_(None),
               or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > at))
        .values(expires_at=at)
        .returning(ApiKeyRow.id)
    )  # fmt: skip
    return key_id, key, sorted(ending.scalars()), at


async def list_keys(conn: AsyncConnection, slug: str) -> list[KeyInfo]:
    tenant = await get_tenant(conn, slug)
    query = (
        select(*_KEY_COLUMNS)
        .outerjoin(ApiKeyUsageRow, ApiKeyUsageRow.key_id == ApiKeyRow.id)
        .where(ApiKeyRow.tenant_id == tenant.id)
        .order_by(ApiKeyRow.id)
    )
    return [KeyInfo(*row) for row in await conn.execute(query)]


async def revoke_key(conn: AsyncConnection, slug: str, key_id: int) -> datetime | None:
    """None if this call revoked the key; when it was revoked before, then."""
    tenant = await get_tenant(conn, slug)
    revoked = await conn.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.tenant_id == tenant.id)
        .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, func.now()))
        .returning(ApiKeyRow.revoked_at, ApiKeyRow.revoked_at == func.now())
    )
    found = revoked.one_or_none()
    if found is None:
        raise KeyNotFoundError(slug, key_id)
    at, now = found
    return None if now else at
