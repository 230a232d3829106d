"""``tenantctl history``: what happened to a tenant (or the fleet), newest first.

The trail is written by triggers on the registry tables (shared migration s0006), so it holds
every change however it was made: created, status changes (suspend, read-only, resume,
archive, restore), renames, keys created and revoked, migrations, purges.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.errors import TenantNotFoundError
from tenantsvc.tenancy.models import TenantEventRow, TenantRow
from tenantsvc.tenancy.records import as_json
from tenantsvc.tenancy.slugs import validate_slug


@dataclass(frozen=True)
class Event:
    id: int
    tenant_id: int
    slug: str
    at: datetime
    action: str
    detail: dict[str, Any]
    actor: str
    db_user: str

    def summary(self) -> str:
        """The detail in a few words: ``active -> suspended``, ``key 7 (tsk_ab12)``."""
        d = self.detail
        if "key_id" in d:
            key = f"key {d['key_id']} ({d['prefix']})"
            ends = d.get("to") or d.get("expires_at")
            return f"{key}, ends {ends[:16]}" if ends else key
        if "from" in d:
            return f"{d['from']} -> {d['to']}"
        return ", ".join(f"{k} {v}" for k, v in d.items())

    def as_json(self) -> dict[str, Any]:
        return as_json(self)


async def events(
    conn: AsyncConnection, slug: str | None = None, limit: int = 50, since: timedelta | None = None
) -> list[Event]:
    """The latest ``limit`` events, of one slug (every tenant that has had it) or all, within
    ``since`` of now by the database's clock. A slug no tenant has ever had is an error, as
    in every other command, not an empty trail: a typo should not read as "nothing happened"."""
    e = TenantEventRow
    query = select(e.id, e.tenant_id, e.slug, e.at, e.action, e.detail, e.actor, e.db_user)
    if slug is not None:
        validate_slug(slug)
        query = query.where(e.slug == slug)
    if since is not None:
        query = query.where(e.at >= func.now() - since)
    rows = await conn.execute(query.order_by(e.id.desc()).limit(limit))
    found = [Event(*row) for row in rows]
    if slug is not None and not found and not await _ever_had(conn, slug):
        raise TenantNotFoundError(slug)
    return found


async def _ever_had(conn: AsyncConnection, slug: str) -> bool:
    """A tenant has the slug, or had it: its events outlive a purge."""
    had = or_(exists().where(TenantEventRow.slug == slug), exists().where(TenantRow.slug == slug))
    return bool((await conn.execute(select(had))).scalar_one())
