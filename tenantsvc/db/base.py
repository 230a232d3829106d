"""Declarative bases: one for the shared registry schema, one for tenant tables.

Tenant tables carry no schema: which tenant they belong to is decided per transaction by the
search_path, so the same mapped classes serve every tenant.
"""

from datetime import datetime

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tenantsvc.tenancy.slugs import SHARED_SCHEMA

NAMING = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class TenantBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SharedBase(DeclarativeBase):
    metadata = MetaData(schema=SHARED_SCHEMA, naming_convention=NAMING)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
