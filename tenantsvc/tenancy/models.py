"""The registry tables, in the shared schema (never in a tenant's)."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from tenantsvc.db.base import CreatedAtMixin, SharedBase
from tenantsvc.tenancy.errors import TenancyError


class TenantStatus(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    READ_ONLY = "read_only"  # reads served, writes refused (503): maintenance, a move
    SUSPENDED = "suspended"
    ARCHIVED = "archived"

    @classmethod
    def parse(cls, value: str) -> "TenantStatus":
        """An operator's spelling, or an error naming the choices: a misspelt filter must
        not pass for "no tenant has it"."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(cls)
            raise TenancyError(f"unknown status {value!r}: use one of {choices}") from None


# The statuses whose tenant requests and jobs reach (a suspended one is answered 403, and its
# jobs still run); provisioning and archived tenants are not there for them.
SERVED = (TenantStatus.ACTIVE, TenantStatus.READ_ONLY, TenantStatus.SUSPENDED)


class TenantRow(CreatedAtMixin, SharedBase):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    schema_name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    # Set while archived: the schema was renamed here, out of the way of request routing.
    archived_schema: Mapped[str | None] = mapped_column(String(63))
    # The database role its transactions run as, which may use only its schema (roles.py).
    role_name: Mapped[str | None] = mapped_column(String(63))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ApiKeyRow(CreatedAtMixin, SharedBase):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKeyUsageRow(SharedBase):
    """When a key was last accepted, to within a flush interval (``activity.py``)."""

    __tablename__ = "api_key_usage"

    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TenantRequestsRow(SharedBase):
    """A tenant's requests served per UTC day, reads and writes (``activity.py``)."""

    __tablename__ = "tenant_requests"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reads: Mapped[int] = mapped_column(BigInteger)
    writes: Mapped[int] = mapped_column(BigInteger)


class ActivityFlushRow(SharedBase):
    """A flush that committed, so that its retry counts nothing twice (``activity.py``)."""

    __tablename__ = "activity_flushes"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    flushed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class TenantEventRow(SharedBase):
    """The audit trail, written by triggers (shared migration s0006, ``history.py``)."""

    __tablename__ = "tenant_events"
    __table_args__ = (Index("tenant_events_slug_id_idx", "slug", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigInteger)
    slug: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actor: Mapped[str] = mapped_column(Text)
    db_user: Mapped[str] = mapped_column(Text)


class RegistryStateRow(SharedBase):
    """A version counter bumped by triggers on every registry change, polled by each worker."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class TenantRevisionRow(SharedBase):
    """The tenant-track revision recorded with each migration, so planning a fleet run reads
    one table; the tenant's own alembic_version stays the truth, re-read under its lock."""

    __tablename__ = "tenant_revisions"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
