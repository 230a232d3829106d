"""``tenantctl history``: what happened to a tenant (or the fleet), newest first.

The trail is written by triggers on the registry tables (shared migration s0006), so it holds
every change however it was made: created, status changes (suspend, read-only, resume,
archive, restore), renames, keys created and revoked, migrations, purges.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantsvc.tenancy.models import TenantEventRow
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
    ``since`` of now by the database's clock."""
    e = TenantEventRow
    query = select(e.id, e.tenant_id, e.slug, e.at, e.action, e.detail, e.actor, e.db_user)
    if slug is not None:
        validate_slug(slug)
        query = query.where(e.slug == slug)
    if since is not None:
        query = query.where(e.at >= func.now() - since)
    rows = await conn.execute(query.order_by(e.id.desc()).limit(limit))
    return [Event(*row) for row in rows]
